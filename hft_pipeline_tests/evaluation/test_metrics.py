"""Walk-forward metrics agree with scikit-learn / scipy on the same predictions."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, f1_score
from sklearn.metrics import log_loss as sklearn_log_loss

from hft_pipeline.evaluation.metrics import (
    MODEL_NAMES,
    accuracy,
    information_coefficient,
    log_loss,
    macro_f1,
    score_day,
    summarize,
)
from hft_pipeline.training.baselines import apply_baselines
from hft_pipeline.training.dataset import Scaler, build_window_arrays, predict_sequences, to_tensors
from hft_pipeline.training.model import load_model
from hft_pipeline_tests.training.synthetic import make_window, train_tiny_window


@pytest.fixture(scope="module")
def window_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fit") / "20240102_20240104"
    return train_tiny_window(out_dir, bars=150, epochs=3)


@pytest.fixture(scope="module")
def next_day():
    return make_window(days=1, bars=120, seed=11, first_day=dt.date(2024, 1, 8))


def sklearn_scores(y_true, proba, predicted_return, realized):
    return {
        "accuracy": accuracy_score(y_true, proba.argmax(axis=1)),
        "macro_f1": f1_score(y_true, proba.argmax(axis=1), average="macro", zero_division=0),
        "log_loss": sklearn_log_loss(y_true, y_proba=proba, labels=[0, 1, 2]),
        "ic": spearmanr(predicted_return, realized).statistic,
    }


def test_score_day_metrics_equal_sklearn_on_same_predictions(window_dir, next_day):
    rows = score_day(window_dir, next_day.features, next_day.labels).set_index("model")

    scaler = Scaler.load(window_dir / "scaler.json")
    arrays = build_window_arrays(
        next_day.features, next_day.labels, next_day.feature_columns, next_day.horizon, 8
    )
    scaled = scaler.transform(arrays.features)
    proba, scaled_return, _ = predict_sequences(
        load_model(window_dir), to_tensors(arrays, scaled, scaler, "cpu"), arrays.ends
    )
    baselines = apply_baselines(
        json.loads((window_dir / "baselines.json").read_text()), scaled[arrays.ends]
    )
    y_true, realized = arrays.direction[arrays.ends], arrays.forward_return[arrays.ends]
    expected = {
        "model": sklearn_scores(y_true, proba, scaled_return, realized),
        "baseline_logistic": sklearn_scores(
            y_true, baselines["logistic_proba"], baselines["ridge_return"], realized
        ),
        "baseline_naive": sklearn_scores(
            y_true, baselines["naive_proba"], 1e-9 * np.arange(len(y_true)), realized
        ),
    }
    expected["baseline_naive"]["ic"] = np.nan

    assert list(rows.index) == list(MODEL_NAMES)
    assert (rows["n"] == len(arrays.ends)).all()
    assert rows.loc["model", "session_date"] == "2024-01-08"
    for name, values in expected.items():
        for metric, value in values.items():
            assert rows.loc[name, metric] == pytest.approx(value, abs=1e-12, nan_ok=True), (
                name,
                metric,
            )
    shares = rows.loc["model", ["share_down", "share_flat", "share_up"]].to_numpy(dtype=float)
    assert np.allclose(shares, np.bincount(y_true, minlength=3) / len(y_true))


def test_score_day_sessions_shorter_than_context_give_zero_rows(window_dir):
    short = make_window(days=1, bars=6, seed=2, first_day=dt.date(2024, 1, 8))

    rows = score_day(window_dir, short.features, short.labels)

    assert (rows["n"] == 0).all()
    assert rows["accuracy"].isna().all()


def test_metric_functions_equal_sklearn_with_missing_classes_and_ties():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 3, 500)
    proba = rng.dirichlet([1.0, 1.0, 1.0], 500)
    proba[:, 1] = 0.0  # class 1 is never predicted and gets probability 0
    proba /= proba.sum(axis=1, keepdims=True)
    y_pred = proba.argmax(axis=1)
    predicted = np.round(rng.standard_normal(500), 1)  # many ties
    realized = rng.standard_normal(500) + predicted

    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred) == pytest.approx(
        f1_score(y_true, y_pred, average="macro", zero_division=0)
    )
    assert log_loss(y_true, proba) == pytest.approx(
        sklearn_log_loss(y_true, y_proba=proba, labels=[0, 1, 2])
    )
    assert information_coefficient(predicted, realized) == pytest.approx(
        spearmanr(predicted, realized).statistic
    )
    assert np.isnan(information_coefficient(np.zeros(10), realized[:10]))


def test_summarize_means_per_model_with_days_and_total_n():
    rows = pd.DataFrame(
        {
            "model": ["model", "baseline_naive", "model", "baseline_naive"],
            "session_date": ["2024-01-08", "2024-01-08", "2024-01-09", "2024-01-09"],
            "n": [100, 100, 50, 50],
            "accuracy": [0.5, 0.4, 0.7, 0.3],
            "macro_f1": [0.4, 0.2, 0.6, 0.2],
            "log_loss": [1.0, 1.1, 0.8, 1.1],
            "ic": [0.1, np.nan, 0.3, np.nan],
            "share_down": [0.3, 0.3, 0.2, 0.2],
            "share_flat": [0.4, 0.4, 0.5, 0.5],
            "share_up": [0.3, 0.3, 0.3, 0.3],
        }
    )

    summary = summarize(rows).set_index("model")

    assert list(summary.index) == ["model", "baseline_naive"]
    assert summary.loc["model", "accuracy"] == pytest.approx(0.6)
    assert summary.loc["model", "ic"] == pytest.approx(0.2)
    assert np.isnan(summary.loc["baseline_naive", "ic"])
    assert summary.loc["model", "days"] == 2
    assert summary.loc["model", "n_total"] == 150
