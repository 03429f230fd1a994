"""Trains one rolling window's model, of any kind, and writes its folder (DESIGN section 6).

``train_window`` reads top to bottom: rows and sequences, the leak-free split, the scaler,
the model of ``settings.model_kind`` (model.py), the loop (loop.py: AdamW, warm-up then cosine
decay, clipping, early stopping), the validation metrics and baselines, and finally the files,
written atomically. With ``settings.extra_horizons`` one network forecasts those horizons next
to the primary one, and metrics.json scores each under ``horizons``. The loop checkpoints
every epoch (see checkpoint.py), so a killed run started again resumes and ends identically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hft_pipeline.config import TrainingSettings
from hft_pipeline.evaluation.metrics import information_coefficient, score_predictions
from hft_pipeline.features.schema import DIRECTION_CLASSES, label_columns
from hft_pipeline.layout import atomic_directory
from hft_pipeline.training.baselines import apply_baselines, fit_baselines
from hft_pipeline.training.checkpoint import Checkpoint, checkpoint_path, run_fingerprint
from hft_pipeline.training.dataset import (
    Scaler,
    SequenceTensors,
    Split,
    WindowArrays,
    build_window_arrays,
    chronological_split,
    fit_scaler,
    horizon_class_weights,
    predict_sequences,
    to_tensors,
)
from hft_pipeline.training.lob_transformer import MODEL_KIND as LOB_TRANSFORMER
from hft_pipeline.training.lob_transformer import LobTransformerConfig, book_layout
from hft_pipeline.training.loop import (
    LoopConfig,
    deterministic,
    device_name,
    fit,
    resolve_device,
)
from hft_pipeline.training.model import MODEL_KIND as LSTM_MULTITASK
from hft_pipeline.training.model import (
    AnyModel,
    AnyModelConfig,
    ModelConfig,
    build_model,
    check_kind,
    save_model_config,
)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    metrics: dict[str, Any]  # as in metrics.json: validation metrics of the restored model
    history: list[dict[str, float]]  # as in training_history.json: one dict per epoch run
    n_train: int
    n_val: int
    device: str
    wall_seconds: float


def train_window(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    feature_columns: Sequence[str],
    settings: TrainingSettings,
    horizon: int,
    out_dir: Path,
    logger: logging.Logger | None = None,
    loop: LoopConfig | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Trains the window's model (of ``settings.model_kind``) and writes its folder.

    Parameters
    ----------
    features, labels : pd.DataFrame
        The window's frames: key columns (ts, session_date, symbol, bar_index), one row per
        bar per symbol per session, sorted by symbol, ts; ``labels`` holds the three label
        columns of ``horizon`` and of each of ``settings.extra_horizons``.
    feature_columns : Sequence[str]
        Model inputs, in order.
    settings : TrainingSettings
        Model size, loop, split and device settings; all are recorded in model_config.json.
    horizon : int
        Primary label horizon in bars (``settings.extra_horizons`` other than it are added).
    out_dir : Path
        The window folder; replaced as a whole once every file is written. The loop's
        checkpoint lives beside it in ``.<name>.checkpoint.pt`` until then: a run that finds
        one written for the same settings and data resumes from it; one for other settings
        or data is ignored with a warning and overwritten.
    logger : logging.Logger, optional
        Receives one line per epoch; defaults to this module's logger.
    loop : LoopConfig, optional
        Warm-up, patience, clipping and evaluation batch size; ``LoopConfig()`` by default.
    on_epoch_end : Callable[[dict], None], optional
        Called with the epoch's row of ``training_history.json`` (epoch, losses, learning rate,
        time) once the epoch's checkpoint is written: progress reporting; tests raise from it
        to kill a run at a known point.

    Returns
    -------
    TrainResult
    """
    started = time.perf_counter()
    logger = logger or logging.getLogger(__name__)
    loop = loop or LoopConfig()
    check_settings(settings)
    device = resolve_device(settings.device)
    extra_horizons = extra_horizons_of(settings, horizon)

    # 1. Rows, sequences, and the chronological split with purge and embargo.
    arrays = build_window_arrays(
        features, labels, feature_columns, horizon, settings.context, extra_horizons
    )
    split = chronological_split(arrays, settings.validation_fraction, settings.embargo_bars)
    check_split(arrays, split)
    logger.info(
        "window %s..%s, %d symbols, %d rows: %d train / %d validation sequences "
        "(%d purged, %d embargoed), device %s",
        arrays.session_dates[0], arrays.session_dates[-1], len(arrays.symbols),
        len(arrays.ts), len(split.train_ends), len(split.val_ends), split.n_purged,
        split.n_embargoed, device_name(device),
    )  # fmt: skip

    # 2. Scaler from the training part; scaled rows and targets go onto the device once.
    scaler = fit_scaler(arrays, split)
    scaled = scaler.transform(arrays.features)  # (n_rows, n_features) float32
    tensors = to_tensors(arrays, scaled, scaler, device)
    weights = horizon_class_weights(arrays, split)  # (n_horizons, 3)

    # 3. The loop, seeded and checkpointed each epoch; the best epoch's weights come back.
    checkpoint = Checkpoint(
        checkpoint_path(out_dir), run_fingerprint(arrays, split, settings, loop)
    )
    config = model_config(settings, feature_columns, arrays.horizons, scaler)
    with deterministic(device):
        torch.manual_seed(settings.seed)  # initial weights and dropout masks (CPU and CUDA)
        model = build_model(settings.model_kind, config).to(device)
        history = fit(
            model, tensors, split, weights, settings, loop, logger, checkpoint, on_epoch_end
        )

    # 4. Validation metrics of the restored model, and the baselines on the same split.
    metrics = validation_metrics(model, tensors, arrays, split, scaler, loop)
    metrics.update(best_epoch_summary(history))
    baselines = baseline_document(arrays, split, scaled, settings.seed, loop)
    metrics.update(baseline_comparison(metrics, baselines["validation"]))
    logger.info(
        "validation: accuracy %.4f (naive %.4f, logistic %.4f: margin %+.4f), macro-F1 %.4f, "
        "IC %.4f (ridge %.4f)",
        metrics["accuracy"], metrics["baseline_naive_accuracy"],
        metrics["baseline_logistic_accuracy"], metrics["accuracy_margin_over_logistic"],
        metrics["macro_f1"], metrics["ic"], metrics["baseline_logistic_ic"],
    )  # fmt: skip

    # 5. The folder, all files or none.
    with atomic_directory(Path(out_dir)) as folder:
        state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        torch.save(state, folder / "model.pt")
        save_model_config(
            config, folder / "model_config.json",
            **run_description(arrays, split, settings, weights, device),
        )  # fmt: skip
        scaler.save(folder / "scaler.json")
        write_json(folder / "metrics.json", metrics)
        write_json(folder / "training_history.json", history)
        write_json(folder / "baselines.json", baselines)
    checkpoint.remove()
    return TrainResult(
        out_dir=Path(out_dir),
        metrics=metrics,
        history=history,
        n_train=len(split.train_ends),
        n_val=len(split.val_ends),
        device=device_name(device),
        wall_seconds=time.perf_counter() - started,
    )


def validation_metrics(
    model: AnyModel,
    tensors: SequenceTensors,
    arrays: WindowArrays,
    split: Split,
    scaler: Scaler,
    loop: LoopConfig,
) -> dict[str, Any]:
    """Accuracy, macro-F1, log-loss, IC (return and volatility) on validation."""
    device = tensors.windows.device
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    proba, scaled_return, scaled_volatility = predict_sequences(
        model, tensors, split.val_ends, loop.eval_batch_size, bf16
    )
    ends = split.val_ends
    metrics = score_predictions(
        arrays.direction[ends], proba, scaled_return * scaler.return_scale,
        arrays.forward_return[ends],
    )  # fmt: skip
    metrics["volatility_ic"] = information_coefficient(scaled_volatility, arrays.volatility[ends])
    metrics.update(chance_level(arrays.direction[ends], proba))
    metrics["n_val"] = len(split.val_ends)
    metrics["n_train"] = len(split.train_ends)
    metrics["n_purged"] = split.n_purged
    metrics["n_embargoed"] = split.n_embargoed
    if len(arrays.horizons) > 1:
        metrics["horizons"] = extra_horizon_metrics(model, tensors, arrays, split, scaler, loop)
    return metrics


def chance_level(direction: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The model's predicted class shares q_c and ``chance_accuracy`` = sum_c q_c p_c (p_c the
    realized shares): the accuracy a predictor with that mix reaches when its predictions are
    independent of the labels. It is the majority rate only for a model that always predicts
    the majority class; a class-weighted loss spreads the predictions over the classes."""
    predicted = np.bincount(proba.argmax(axis=1), minlength=len(DIRECTION_CLASSES))
    realized = np.bincount(direction, minlength=len(DIRECTION_CLASSES))
    q, p = predicted / max(len(direction), 1), realized / max(len(direction), 1)
    shares = {f"predicted_share_{name}": float(q[c]) for c, name in enumerate(DIRECTION_CLASSES)}
    return {**shares, "chance_accuracy": float(q @ p)}


def extra_horizon_metrics(
    model: AnyModel,
    tensors: SequenceTensors,
    arrays: WindowArrays,
    split: Split,
    scaler: Scaler,
    loop: LoopConfig,
) -> dict[str, dict[str, float]]:
    """``{"h<H>": scores}`` on validation for each extra horizon: accuracy, macro-F1,
    log-loss, IC (return and volatility), as the primary horizon's."""
    device = tensors.windows.device
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    proba, scaled_return, scaled_volatility = predict_sequences(
        model.forward_horizons, tensors, split.val_ends, loop.eval_batch_size, bf16
    )  # (n_val, H, 3), (n_val, H), (n_val, H)
    ends = split.val_ends
    scores = {}
    for column, horizon in enumerate(arrays.horizons[1:], start=1):
        predicted_return = scaled_return[:, column] * scaler.return_scales[column]
        scores[f"h{horizon}"] = {
            **score_predictions(
                arrays.directions[ends, column],
                proba[:, column],
                predicted_return,
                arrays.forward_returns[ends, column],
            ),
            "volatility_ic": information_coefficient(
                scaled_volatility[:, column], arrays.volatilities[ends, column]
            ),
        }
    return scores


def best_epoch_summary(history: list[dict[str, float]]) -> dict[str, float]:
    """The restored (best) epoch's validation losses (``loss``, ``cross_entropy``, ...: its
    history row's ``val_*``, computed with these very weights) and the run's figures."""
    best = min(history, key=lambda row: row["val_loss"])
    losses = {name[4:]: value for name, value in best.items() if name.startswith("val_")}
    return {
        **losses,
        "best_epoch": best["epoch"],
        "best_train_loss": best["train_loss"],
        "epochs_run": len(history),
        "train_sequences_per_second": float(
            np.mean([row["sequences_per_second"] for row in history])
        ),
    }


def baseline_comparison(
    metrics: dict[str, Any], validation: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Each baseline's validation scores as ``<baseline>_<score>`` (the logistic's IC is the
    ridge's return forecast), and the model's accuracy margin over each baseline, reported
    whatever its sign."""
    figures = {
        f"{name}_{key}": scores[key]
        for name, scores in validation.items()
        for key in ("accuracy", "macro_f1", "log_loss", "ic")
    }
    for name, scores in validation.items():
        margin_name = f"accuracy_margin_over_{name.removeprefix('baseline_')}"
        figures[margin_name] = metrics["accuracy"] - scores["accuracy"]
    return figures


def baseline_document(
    arrays: WindowArrays, split: Split, scaled: np.ndarray, seed: int, loop: LoopConfig
) -> dict[str, Any]:
    """baselines.json: the fitted numbers and their validation metrics."""
    train_ends = split.train_ends
    if len(train_ends) > loop.baseline_max_rows:
        rng = np.random.default_rng(seed)
        train_ends = np.sort(rng.choice(train_ends, size=loop.baseline_max_rows, replace=False))
    fitted = fit_baselines(
        scaled[train_ends], arrays.direction[train_ends], arrays.forward_return[train_ends]
    )
    predictions = apply_baselines(fitted, scaled[split.val_ends])
    y_true = arrays.direction[split.val_ends]
    realized = arrays.forward_return[split.val_ends]
    return {
        "input": "scaled features (scaler.json) of each sequence's last bar",
        "feature_columns": list(arrays.feature_columns),
        "classes": list(DIRECTION_CLASSES),
        **fitted,
        "n_train_rows": len(train_ends),
        "validation": {
            "baseline_naive": score_predictions(
                y_true, predictions["naive_proba"], predictions["naive_return"], realized
            ),
            "baseline_logistic": score_predictions(
                y_true, predictions["logistic_proba"], predictions["ridge_return"], realized
            ),
        },
    }


def run_description(
    arrays: WindowArrays,
    split: Split,
    settings: TrainingSettings,
    weights: np.ndarray,
    device: torch.device,
) -> dict[str, Any]:
    """Everything model_config.json records next to the model's own config."""
    return {
        "feature_columns": list(arrays.feature_columns),
        "horizon": arrays.horizon,
        "horizons": list(arrays.horizons),
        "label_columns": list(label_columns(arrays.horizon)),
        "direction_classes": list(DIRECTION_CLASSES),
        "training": dataclasses.asdict(settings),
        "window_start": arrays.session_dates[0],
        "window_end": arrays.session_dates[-1],
        "session_dates": list(arrays.session_dates),
        "symbols": list(arrays.symbols),
        "n_rows": len(arrays.ts),
        "n_train_sequences": len(split.train_ends),
        "n_val_sequences": len(split.val_ends),
        "n_purged": split.n_purged,
        "n_embargoed": split.n_embargoed,
        "validation_start_ts": split.validation_start_ts,
        # Rows follow "horizons"; the first is the primary horizon's.
        "class_weights": [float(w) for w in weights[0]],
        "extra_class_weights": [[float(w) for w in row] for row in weights[1:]],
        "device": device_name(device),
        "torch_version": torch.__version__,
    }


def extra_horizons_of(settings: TrainingSettings, horizon: int) -> tuple[int, ...]:
    """``settings.extra_horizons`` without the primary ``horizon``: a matrix entry whose
    horizon is one of them forecasts the others next to its own."""
    return tuple(extra for extra in settings.extra_horizons if extra != horizon)


def model_config(
    settings: TrainingSettings,
    feature_columns: Sequence[str],
    horizons: Sequence[int],
    scaler: Scaler,
) -> AnyModelConfig:
    """The config of ``settings.model_kind`` for this window's ``horizons`` (the primary one
    first); the transformer also takes its book offsets' training mean and std from the scaler
    (its structural penalty is in ticks)."""
    horizon, *extra_horizons = horizons
    if settings.model_kind == LOB_TRANSFORMER:
        offsets = book_layout(feature_columns).offset_index
        return LobTransformerConfig(
            feature_columns=tuple(feature_columns),
            d_model=settings.d_model,
            n_heads=settings.attention_heads,
            n_layers=settings.transformer_layers,
            dropout=settings.dropout,
            context=settings.context,
            horizon=horizon,
            extra_horizons=tuple(extra_horizons),
            book_forecast_bars=settings.book_forecast_bars,
            offset_mean=tuple(scaler.mean[index] for index in offsets),
            offset_std=tuple(scaler.std[index] for index in offsets),
        )
    return ModelConfig(
        n_features=len(feature_columns),
        hidden_size=settings.hidden_size,
        num_layers=settings.num_layers,
        dropout=settings.dropout,
        context=settings.context,
        horizon=horizon,
        extra_horizons=tuple(extra_horizons),
    )


# Integer settings that must be >= 1: the loop's, then each kind's own.
POSITIVE_SETTINGS = ("epochs", "batch_size", "context")
KIND_SETTINGS = {
    LSTM_MULTITASK: ("hidden_size", "num_layers"),
    LOB_TRANSFORMER: ("d_model", "attention_heads", "transformer_layers", "book_forecast_bars"),
}


def check_settings(settings: TrainingSettings) -> None:
    check_kind(settings.model_kind)
    for name in (*POSITIVE_SETTINGS, *KIND_SETTINGS[settings.model_kind]):
        if getattr(settings, name) < 1:
            raise ValueError(
                f"training setting {name} must be >= 1, found {getattr(settings, name)}"
            )
    if settings.learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, found {settings.learning_rate}")
    if settings.max_train_sequences < 0:
        raise ValueError(f"max_train_sequences must be >= 0, found {settings.max_train_sequences}")
    if settings.model_kind == LOB_TRANSFORMER and settings.d_model % settings.attention_heads:
        raise ValueError(
            f"d_model={settings.d_model} must be a multiple of "
            f"attention_heads={settings.attention_heads}"
        )
    for name in ("book_forecast_weight", "structural_loss_weight"):
        if getattr(settings, name) < 0:
            raise ValueError(f"{name} must be >= 0 (0 disables), found {getattr(settings, name)}")


def check_split(arrays: WindowArrays, split: Split) -> None:
    window = f"window {arrays.session_dates[0]}..{arrays.session_dates[-1]}"
    if len(arrays.ends) == 0:
        raise ValueError(
            f"{window}: no sequence of {arrays.context} bars with labels fits in a session "
            f"({len(arrays.ts)} rows); lower `context` or check the labels"
        )
    for name, ends in (("training", split.train_ends), ("validation", split.val_ends)):
        if len(ends) == 0:
            raise ValueError(
                f"{window}: no {name} sequences out of {len(arrays.ends)} (purged "
                f"{split.n_purged}, embargoed {split.n_embargoed}); change validation_fraction "
                "or embargo_bars, or train on more days"
            )


def write_json(path: Path, payload: Any) -> None:
    """JSON with NaN/inf written as null, so any JSON reader takes the file."""
    path.write_text(json.dumps(finite_or_none(payload), indent=2))


def finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
