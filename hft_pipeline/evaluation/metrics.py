"""Walk-forward scoring: a window's model and baselines on a later, out-of-sample day.

The metric functions follow scikit-learn's definitions (the tests hold them to it) but need
only numpy, so they also serve the validation metrics written at training time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hft_pipeline.features.schema import DIRECTION_CLASSES
from hft_pipeline.training.baselines import apply_baselines
from hft_pipeline.training.dataset import (
    Scaler,
    build_window_arrays,
    predict_sequences,
    to_tensors,
)
from hft_pipeline.training.model import load_model, load_model_config

MODEL_NAMES = ("model", "baseline_naive", "baseline_logistic")
METRIC_COLUMNS = (
    "accuracy",
    "macro_f1",
    "log_loss",
    "ic",
    *(f"share_{name}" for name in DIRECTION_CLASSES),
)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of correct classes; NaN for no rows."""
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes seen in ``y_true`` or ``y_pred`` (scikit-learn's
    ``f1_score(average="macro")``, with 0 for a class never predicted or never true)."""
    if len(y_true) == 0:
        return float("nan")
    scores = []
    for label in np.union1d(y_true, y_pred):
        true_positive = np.sum((y_pred == label) & (y_true == label))
        false_positive = np.sum((y_pred == label) & (y_true != label))
        false_negative = np.sum((y_pred != label) & (y_true == label))
        scores.append(2 * true_positive / (2 * true_positive + false_positive + false_negative))
    return float(np.mean(scores))


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log probability of the true class, probabilities clipped to
    [eps, 1 - eps] as scikit-learn does (eps of float64), so a 0 costs ~36 nats, not inf."""
    if len(y_true) == 0:
        return float("nan")
    eps = np.finfo(np.float64).eps
    picked = np.clip(np.asarray(proba, dtype=np.float64), eps, 1 - eps)[
        np.arange(len(y_true)), y_true
    ]
    return float(-np.mean(np.log(picked)))


def information_coefficient(predicted: np.ndarray, realized: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    if len(predicted) < 2:
        return float("nan")
    ranks_p = pd.Series(predicted).rank(method="average").to_numpy()
    ranks_r = pd.Series(realized).rank(method="average").to_numpy()
    if ranks_p.std() == 0 or ranks_r.std() == 0:
        return float("nan")
    return float(np.corrcoef(ranks_p, ranks_r)[0, 1])


def score_predictions(
    y_true: np.ndarray,
    proba: np.ndarray,
    predicted_return: np.ndarray,
    realized_return: np.ndarray,
) -> dict[str, float]:
    """n, accuracy, macro_f1, log_loss, ic and the realized class shares of one model.

    Parameters
    ----------
    y_true : np.ndarray
        (n,) realized classes 0 down / 1 flat / 2 up.
    proba : np.ndarray
        (n, 3) predicted probabilities; the predicted class is the argmax.
    predicted_return, realized_return : np.ndarray
        (n,) forward log returns; only their ranks matter for the IC.
    """
    y_pred = np.argmax(proba, axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
    shares = np.bincount(y_true, minlength=len(DIRECTION_CLASSES)) / max(len(y_true), 1)
    return {
        "n": int(len(y_true)),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
        "log_loss": log_loss(y_true, proba),
        "ic": information_coefficient(predicted_return, realized_return),
        **{f"share_{name}": float(s) for name, s in zip(DIRECTION_CLASSES, shares, strict=True)},
    }


def score_day(
    window_dir: Path, features: pd.DataFrame, labels: pd.DataFrame, device: str = "cpu"
) -> pd.DataFrame:
    """Scores a window's model and baselines on every valid sequence of one day.

    Parameters
    ----------
    window_dir : Path
        A trained window folder (model.pt, model_config.json, scaler.json, baselines.json).
    features, labels : pd.DataFrame
        The day's frames, in the layout ``train_window`` reads; only sequences that fit in a
        session and have labels are scored, so each session's first context-1 bars are not.
    device : str, default "cpu"
        Torch device for the model.

    Returns
    -------
    pd.DataFrame
        One row per model in ``MODEL_NAMES``: model, window, session_date, n, accuracy,
        macro_f1, log_loss, ic, share_down, share_flat, share_up. The naive baseline's
        probabilities are its training class frequencies and its IC is NaN (zero return);
        the logistic row's IC is the ridge regression's.
    """
    window_dir = Path(window_dir)
    config, document = load_model_config(window_dir / "model_config.json")
    scaler = Scaler.load(window_dir / "scaler.json")
    baselines = json.loads((window_dir / "baselines.json").read_text())
    feature_columns = document["feature_columns"]
    if list(scaler.feature_columns) != list(feature_columns):
        raise ValueError(f"{window_dir}: scaler.json and model_config.json list other features")
    arrays = build_window_arrays(features, labels, feature_columns, config.horizon, config.context)
    scaled = scaler.transform(arrays.features)  # (n_rows, n_features)
    ends = arrays.ends
    if len(ends):
        model = load_model(window_dir, device)
        tensors = to_tensors(arrays, scaled, scaler, device)
        proba, predicted_return, _ = predict_sequences(model, tensors, ends)
        predicted_return = predicted_return * scaler.return_scale
    else:
        proba, predicted_return = np.zeros((0, 3)), np.zeros(0)
    base = apply_baselines(baselines, scaled[ends])
    y_true, realized = arrays.direction[ends], arrays.forward_return[ends]
    scored = {
        "model": score_predictions(y_true, proba, predicted_return, realized),
        "baseline_naive": score_predictions(
            y_true, base["naive_proba"], base["naive_return"], realized
        ),
        "baseline_logistic": score_predictions(
            y_true, base["logistic_proba"], base["ridge_return"], realized
        ),
    }
    day = ",".join(arrays.session_dates)
    return pd.DataFrame(
        [
            {"model": name, "window": window_dir.name, "session_date": day, **scored[name]}
            for name in MODEL_NAMES
        ]
    )


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Aggregates ``score_day`` rows of many days: per model, the mean of each metric (NaN
    skipped), the number of days and the total number of sequences.

    Returns
    -------
    pd.DataFrame
        Indexed 0.. with columns model, days, n_total and the metric columns.
    """
    missing = [c for c in ("model", "n", *METRIC_COLUMNS) if c not in rows.columns]
    if missing:
        raise KeyError(f"rows lack column(s) {missing}; pass score_day's output concatenated")
    grouped = rows.groupby("model", sort=False)
    summary = grouped[list(METRIC_COLUMNS)].mean()
    summary.insert(0, "n_total", grouped["n"].sum().astype("int64"))
    summary.insert(0, "days", grouped.size().astype("int64"))
    order = [name for name in MODEL_NAMES if name in summary.index]
    order += [name for name in summary.index if name not in order]
    return summary.loc[order].reset_index()
