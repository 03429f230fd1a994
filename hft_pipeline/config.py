"""Typed settings: the one place for defaults.

Settings are read when the code location loads, in this order of precedence:
environment variable ``HFT_<FIELD>`` > config file > default. The config file is
``$HFT_CONFIG`` if set, else ``$HFT_HOME/hft_pipeline.toml`` if it exists; it has one table per
section (``[data]``, ``[features]``, ``[training]``) whose keys are the field names below.
Field names are unique across sections so that each has exactly one environment variable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints

CONFIG_FILE_NAME = "hft_pipeline.toml"

# A Databento-style bucket: raw/<yyyy>/<yyyymmdd>/[<SYMBOL>/]<anything>.zip. An archive
# without a symbol folder holds every configured symbol (Databento's unsplit batch files).
DEFAULT_RAW_KEY_PATTERN = (
    r"^raw/(?P<year>\d{4})/(?P<date>\d{8})/(?:(?P<symbol>[A-Z][A-Z0-9]*)/)?[^/]+\.zip$"
)


@dataclasses.dataclass(frozen=True)
class DataSettings:
    # Exchange calendar name from pandas-market-calendars, or "24/7" for venues that never close.
    calendar: str = "CME_Equity"
    # First trading day of history; partitions start here.
    start: dt.date = dt.date(2024, 1, 2)
    # Last trading day of history; None means "up to today" (partitions grow daily).
    end: dt.date | None = None
    # Root symbols; each is one value of the `symbol` partition dimension.
    symbols: tuple[str, ...] = ("ES", "ZN")
    # file:///path (a local folder laid out like the bucket) or s3://bucket[/prefix].
    # Empty means file://$HFT_HOME/bucket, the demo's sample bucket.
    raw_url: str = ""
    # Regex with named groups `date` (yyyymmdd) and optionally `symbol`, matched on object keys.
    raw_key_pattern: str = DEFAULT_RAW_KEY_PATTERN
    # Where one UTC day's archives are listed; its text before the first "{" is what the
    # sensor lists. Placeholders: {yyyy}, {yyyymmdd}.
    raw_day_prefix: str = "raw/{yyyy}/{yyyymmdd}/"
    # Also copy each SLIM file to <bucket>/slim/... (raw/ itself is never written).
    upload_slim: bool = False
    # "eth": the whole electronic session (CME: 17:00 CT the day before to 16:00 CT);
    # "rth": regular trading hours only (rth_open..rth_close, exchange local time).
    trading_hours: str = "eth"
    rth_open: str = "08:30"
    rth_close: str = "15:00"
    # How a root symbol's contract is chosen per day: "previous_day_volume" (the most traded
    # contract on the previous trading day, never the same day's) or "nearest_expiry".
    front_contract_rule: str = "previous_day_volume"
    # Bound on a SLIM build's peak memory (MiB), whatever the archive's size; at least 640: 384
    # for the interpreter, a decoded chunk and a row group, the rest for an out-of-order sort.
    ingest_memory_mb: int = 640
    # Zip-bomb caps: total uncompressed bytes of an archive, and uncompressed/compressed ratio
    # of any member (ZIP deflate or the zstd stream inside a .dbn.zst).
    archive_max_uncompressed_gb: float = 200.0
    archive_max_compression_ratio: float = 200.0
    # A gap between consecutive records longer than this inside a session fails a SLIM check.
    max_gap_seconds: float = 300.0


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    # Bar length in seconds that the models train on; one of bar_intervals. Bars are
    # right-closed and stamped at their close.
    bar_seconds: int = 5
    # Every interval the features asset writes a features + labels file pair for (seed 001
    # uses 5 s, seed 002 1 s). Each must divide 60 so 1-min and 5-min bars are whole groups.
    bar_intervals: tuple[int, ...] = (1, 5)
    # Primary label horizon in bars, the one the default model trains on; one of horizons_bars
    # (seed 001: 12 bars of 5 s = 1 minute).
    horizon_bars: int = 12
    # Every horizon the labels files hold (seed 001).
    horizons_bars: tuple[int, ...] = (12, 24, 36, 60)
    # "ticks": a move of at least direction_threshold_ticks is "up"/"down", else "flat";
    # "spread": the threshold is the trailing median spread (ticks) plus cost_ticks, so "up"
    # means a move that would have paid for crossing the spread and the costs.
    direction_threshold_mode: str = "ticks"
    direction_threshold_ticks: float = 1.0
    # Fees and slippage per round trip in ticks, added to the spread in "spread" mode.
    cost_ticks: float = 0.0
    # "session": long look-backs (EMA 200, 5-min volatility, 1-/5-min features) restart at
    # every open, NULL until warmed up; "previous_day": they start in the previous trading
    # day's tail, so a session's first bars are defined.
    warmup: str = "session"


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    # Trading days per rolling window; paths keep the name `roll30` whatever this is.
    window_days: int = 30
    model_kind: str = "lstm_multitask"
    # Bars of history per sequence (seed 001: 120 bars).
    context: int = 120
    # lstm_multitask: LSTM width and stacked layers.
    hidden_size: int = 64
    num_layers: int = 2
    # lob_transformer: token width (a multiple of attention_heads), heads, encoder layers.
    d_model: int = 64
    attention_heads: int = 4
    transformer_layers: int = 2
    # lob_transformer's auxiliary book forecast: bars ahead, and the weights of its MSE and of
    # seed 001's structural penalty (crossed book, levels out of order; seed 001: 0.01). 0 off.
    book_forecast_bars: int = 1
    book_forecast_weight: float = 0.1
    structural_loss_weight: float = 0.01
    dropout: float = 0.1
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # Share of the window's bars, taken from its end, used for validation.
    validation_fraction: float = 0.2
    # Extra bars dropped after the purge, between training and validation.
    embargo_bars: int = 12
    # Weights of the regression losses next to the direction cross-entropy.
    return_loss_weight: float = 0.5
    volatility_loss_weight: float = 0.5
    # Caps sequences per epoch (random subset, fixed by seed); 0 means use all.
    max_train_sequences: int = 0
    seed: int = 7
    # "auto" picks CUDA when present, else CPU.
    device: str = "auto"
    # The training matrix (seed 001's pairs x horizons, plus model kinds): each entry trains
    # on one symbol's rows and one label horizon, under <window>/matrix/<model>_<SYM>_h<H>/.
    # An empty axis keeps the primary model's value: model_kind, every symbol together, or
    # features.horizon_bars; all three empty = the primary model alone.
    matrix_models: tuple[str, ...] = ()
    matrix_symbols: tuple[str, ...] = ()
    matrix_horizons: tuple[int, ...] = ()
    # Label horizons in bars forecast by the same network next to the primary one (seed 001
    # forecasts several at once): more heads, one shared encoder. Every one must be in
    # features.horizons_bars; the purge then spans the longest. Empty: the primary alone.
    extra_horizons: tuple[int, ...] = ()


SECTIONS: dict[str, type] = {
    "data": DataSettings,
    "features": FeatureSettings,
    "training": TrainingSettings,
}


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    home: Path
    data: DataSettings = dataclasses.field(default_factory=DataSettings)
    features: FeatureSettings = dataclasses.field(default_factory=FeatureSettings)
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)

    @property
    def raw_url(self) -> str:
        return self.data.raw_url or (self.home / "bucket").resolve().as_uri()

    def with_overrides(self, **sections: Mapping[str, Any]) -> PipelineSettings:
        """Returns a copy with fields replaced, e.g. ``with_overrides(training={"epochs": 2})``."""
        replaced = {
            name: dataclasses.replace(getattr(self, name), **_coerce_all(SECTIONS[name], values))
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **replaced)

    def as_metadata(self) -> dict[str, Any]:
        """Plain JSON-able view, written into every output's metadata."""
        return {
            "home": str(self.home),
            "raw_url": self.raw_url,
            **{name: _jsonable(dataclasses.asdict(getattr(self, name))) for name in SECTIONS},
        }

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> PipelineSettings:
        environ = os.environ if environ is None else environ
        home = Path(environ.get("HFT_HOME", "~/HFT_forecast")).expanduser()
        file_values = _read_config_file(environ, home)
        sections = {}
        for name, section_type in SECTIONS.items():
            values = dict(file_values.get(name, {}))
            for field in dataclasses.fields(section_type):
                env_name = f"HFT_{field.name.upper()}"
                if env_name in environ:
                    values[field.name] = environ[env_name]
            unknown = set(values) - {f.name for f in dataclasses.fields(section_type)}
            if unknown:
                raise ValueError(
                    f"unknown setting(s) {sorted(unknown)} in section [{name}]; "
                    f"known: {[f.name for f in dataclasses.fields(section_type)]}"
                )
            sections[name] = section_type(**_coerce_all(section_type, values))
        return cls(home=home, **sections)


def write_config_file(settings: PipelineSettings, path: Path) -> Path:
    """Writes the settings as TOML so another process (the UI) loads the same definitions."""
    lines = []
    for name in SECTIONS:
        lines.append(f"[{name}]")
        for key, value in _jsonable(dataclasses.asdict(getattr(settings, name))).items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _read_config_file(environ: Mapping[str, str], home: Path) -> dict[str, Any]:
    explicit = environ.get("HFT_CONFIG")
    path = Path(explicit).expanduser() if explicit else home / CONFIG_FILE_NAME
    if not path.exists():
        if explicit:
            raise FileNotFoundError(f"HFT_CONFIG points at {path}, which does not exist")
        return {}
    with path.open("rb") as handle:
        parsed = tomllib.load(handle)
    unknown = set(parsed) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; known: {list(SECTIONS)}")
    return parsed


def _coerce_all(section_type: type, values: Mapping[str, Any]) -> dict[str, Any]:
    hints = get_type_hints(section_type)
    return {key: _coerce(hints[key], value, key) for key, value in values.items()}


def _coerce(hint: Any, value: Any, name: str) -> Any:
    """Parses a value from the environment (str) or TOML into the field's declared type."""
    if hint in (dt.date, dt.date | None):
        if value in (None, ""):
            if hint is dt.date:
                raise ValueError(f"setting {name} needs a date (YYYY-MM-DD)")
            return None
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    if hint in (tuple[str, ...], tuple[int, ...]):
        items = value.split(",") if isinstance(value, str) else list(value)
        texts = [str(item).strip() for item in items if str(item).strip()]
        if hint == tuple[int, ...]:
            try:
                return tuple(int(text) for text in texts)
            except ValueError as error:
                raise ValueError(f"setting {name}={value!r} needs integers") from error
        # Symbols are upper case by convention (ES, ZN); other lists keep their case.
        return tuple(text.upper() if name.endswith("symbols") else text for text in texts)
    if hint is bool:
        return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}
    try:
        return hint(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"setting {name}={value!r} is not a valid {hint.__name__}") from error


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    converted = {}
    for key, value in values.items():
        if isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        converted[key] = value
    return converted


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
