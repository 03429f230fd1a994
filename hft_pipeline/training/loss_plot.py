"""A training run's loss curve as a small SVG line chart, for the Dagster UI.

Dagster's Plots tab graphs one value per partition (the highest or latest an event reported),
so the per-epoch curve of one window cannot come from its numeric metadata; a markdown image
can, and the UI's markdown accepts ``data:`` image sources. Written by hand because no
plotting library is a dependency: two polylines (train, validation loss) over the epochs.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 480, 240  # px
# Space for the axis labels: left (loss values), bottom (epochs), top (legend), right.
LEFT, BOTTOM, TOP, RIGHT = 56, 28, 24, 12
# history key, legend label, colour
SERIES = (("train_loss", "train", "#1f77b4"), ("val_loss", "validation", "#d62728"))


def loss_curve_svg(history: Sequence[dict[str, float]], title: str = "loss") -> str:
    """An SVG chart of ``train_loss`` and ``val_loss`` per epoch.

    Parameters
    ----------
    history : Sequence[dict]
        Rows of ``training_history.json`` (``epoch``, ``train_loss``, ``val_loss``); a
        non-finite loss leaves a gap-free line through the other epochs.
    title : str
        Shown top left, beside the legend.

    Returns
    -------
    str
        A standalone SVG document, WIDTH x HEIGHT px.
    """
    epochs = [float(row["epoch"]) for row in history]
    points = {
        key: [(float(row["epoch"]), float(row[key])) for row in history if finite(row, key)]
        for key, _, _ in SERIES
    }
    values = [value for series in points.values() for _, value in series]
    x_range = padded_range(epochs or [1.0])
    y_range = padded_range(values or [0.0])

    def place(epoch: float, value: float) -> str:
        x = LEFT + (epoch - x_range[0]) / (x_range[1] - x_range[0]) * (WIDTH - LEFT - RIGHT)
        y = (
            HEIGHT
            - BOTTOM
            - (value - y_range[0]) / (y_range[1] - y_range[0]) * (HEIGHT - BOTTOM - TOP)
        )
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="14">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#888"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#888"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{y_range[1]:.4g}</text>',
        f'<text x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" text-anchor="end">{y_range[0]:.4g}</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 8}">epoch {x_range[0]:.3g}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end">{x_range[1]:.3g}</text>',
    ]
    for position, (key, label, colour) in enumerate(SERIES):
        legend_x = WIDTH - RIGHT - 170 + 90 * position
        parts.append(
            f'<line x1="{legend_x}" y1="10" x2="{legend_x + 16}" y2="10" stroke="{colour}" '
            f'stroke-width="2"/><text x="{legend_x + 20}" y="14">{label}</text>'
        )
        coordinates = " ".join(place(epoch, value) for epoch, value in points[key])
        parts.append(
            f'<polyline data-series="{key}" points="{coordinates}" fill="none" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def loss_curve_markdown(history: Sequence[dict[str, float]], title: str = "loss") -> str:
    """``loss_curve_svg`` as a markdown image with a base64 ``data:`` source."""
    encoded = base64.b64encode(loss_curve_svg(history, title).encode()).decode()
    return f"![{title}](data:image/svg+xml;base64,{encoded})"


def finite(row: dict[str, float], key: str) -> bool:
    value = row.get(key)
    return isinstance(value, int | float) and math.isfinite(value)


def padded_range(values: Sequence[float]) -> tuple[float, float]:
    """(low, high) of ``values``, widened around a single value so the scale never divides
    by zero."""
    low, high = min(values), max(values)
    if high - low < 1e-12:
        return low - 0.5, high + 0.5
    return low, high
