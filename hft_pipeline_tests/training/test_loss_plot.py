"""The loss curve chart shown in the Dagster UI: one point per epoch and series, inside the
picture, lower losses drawn higher."""

from __future__ import annotations

import base64
import math
import xml.etree.ElementTree as ET

from hft_pipeline.training.loss_plot import HEIGHT, WIDTH, loss_curve_markdown, loss_curve_svg

HISTORY = [
    {"epoch": 1, "train_loss": 1.2, "val_loss": 1.3},
    {"epoch": 2, "train_loss": 0.9, "val_loss": 1.1},
    {"epoch": 3, "train_loss": 0.6, "val_loss": 1.0},
]


def series_points(svg: str) -> dict[str, list[tuple[float, float]]]:
    root = ET.fromstring(svg)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    return {
        line.get("data-series"): [
            tuple(float(v) for v in pair.split(",")) for pair in line.get("points").split()
        ]
        for line in lines
    }


def test_loss_curve_svg_one_point_per_epoch_inside_the_picture_lower_loss_higher():
    points = series_points(loss_curve_svg(HISTORY))

    train, validation = points["train_loss"], points["val_loss"]
    assert len(train) == len(validation) == 3
    assert all(0 <= x <= WIDTH and 0 <= y <= HEIGHT for x, y in train + validation)
    assert [x for x, _ in train] == sorted(x for x, _ in train)
    assert train[0][1] < train[1][1] < train[2][1]  # SVG y grows downwards
    assert validation[2][1] < train[2][1]  # validation 1.0 sits above train 0.6


def test_loss_curve_svg_single_epoch_and_missing_loss_draw_without_nan():
    svg = loss_curve_svg([{"epoch": 1, "train_loss": 0.5, "val_loss": math.nan}])

    points = series_points(svg)

    assert len(points["train_loss"]) == 1
    assert points["val_loss"] == []
    assert "nan" not in svg.lower()


def test_loss_curve_markdown_is_an_image_of_the_svg():
    markdown = loss_curve_markdown(HISTORY, "ES 2024-01-02..2024-02-13")

    prefix = "![ES 2024-01-02..2024-02-13](data:image/svg+xml;base64,"
    encoded = markdown.removeprefix(prefix).removesuffix(")")

    assert markdown.startswith(prefix)
    assert base64.b64decode(encoded).decode() == loss_curve_svg(
        HISTORY, "ES 2024-01-02..2024-02-13"
    )
