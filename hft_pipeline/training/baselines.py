"""Baselines the model must beat, fit on the same split: naive, logistic and ridge.

Inputs are the scaled features of each sequence's last bar, (n, n_features). The fitted
baselines are kept as plain numbers (classes, coefficients, intercepts, the majority class)
so that ``baselines.json`` needs no pickle and ``apply_baselines`` recomputes predictions
with numpy alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

N_CLASSES = 3  # down / flat / up, schema.DIRECTION_CLASSES
LOGISTIC_C = 1.0  # inverse L2 strength; inputs are standardized, so the default suits
LOGISTIC_MAX_ITER = 200
RIDGE_ALPHA = 1.0


def fit_baselines(
    X: np.ndarray, direction: np.ndarray, forward_return: np.ndarray
) -> dict[str, Any]:
    """Fits the three baselines on training rows.

    Parameters
    ----------
    X : np.ndarray
        Scaled last-bar features, shape (n, n_features), no NaN.
    direction : np.ndarray
        (n,) classes 0 down / 1 flat / 2 up.
    forward_return : np.ndarray
        (n,) forward log returns (unscaled).

    Returns
    -------
    dict
        JSON-able: ``naive`` (majority_class, class_frequencies, return), ``logistic``
        (classes, coef, intercept, C) and ``ridge`` (coef, intercept, alpha).
    """
    if len(X) == 0:
        raise ValueError("no training rows to fit the baselines on")
    if not np.isfinite(X).all():
        raise ValueError("baseline inputs hold NaN/inf; scale them with Scaler.transform first")
    frequencies = np.bincount(direction, minlength=N_CLASSES) / len(direction)
    return {
        "naive": {
            "majority_class": int(np.argmax(frequencies)),
            "class_frequencies": [float(f) for f in frequencies],
            "return": 0.0,
        },
        "logistic": fit_logistic(X, direction),
        "ridge": fit_ridge(X, forward_return),
    }


def fit_logistic(X: np.ndarray, direction: np.ndarray) -> dict[str, Any]:
    """Multinomial logistic regression (lbfgs); one class in training -> a constant model."""
    classes = np.unique(direction)
    if len(classes) < 2:
        return {
            "classes": [int(classes[0])],
            "coef": [[0.0] * X.shape[1]],
            "intercept": [0.0],
            "C": LOGISTIC_C,
        }
    model = LogisticRegression(C=LOGISTIC_C, max_iter=LOGISTIC_MAX_ITER)
    model.fit(X, direction)
    return {
        "classes": [int(c) for c in model.classes_],
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist(),
        "C": LOGISTIC_C,
    }


def fit_ridge(X: np.ndarray, forward_return: np.ndarray) -> dict[str, Any]:
    model = Ridge(alpha=RIDGE_ALPHA)
    model.fit(X, forward_return)
    return {
        "coef": [float(c) for c in np.ravel(model.coef_)],
        "intercept": float(model.intercept_),
        "alpha": RIDGE_ALPHA,
    }


def apply_baselines(baselines: dict[str, Any], X: np.ndarray) -> dict[str, np.ndarray]:
    """Recomputes every baseline's predictions from its numbers.

    Parameters
    ----------
    baselines : dict
        As returned by :func:`fit_baselines` (or read from ``baselines.json``).
    X : np.ndarray
        Scaled last-bar features, shape (n, n_features).

    Returns
    -------
    dict
        ``naive_proba`` (n, 3), ``naive_return`` (n,), ``logistic_proba`` (n, 3),
        ``ridge_return`` (n,).
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    naive = baselines["naive"]
    return {
        "naive_proba": np.tile(np.asarray(naive["class_frequencies"], dtype=np.float64), (n, 1)),
        "naive_return": np.full(n, float(naive["return"])),
        "logistic_proba": logistic_proba(baselines["logistic"], X),
        "ridge_return": X @ np.asarray(baselines["ridge"]["coef"])
        + baselines["ridge"]["intercept"],
    }


def logistic_proba(logistic: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """(n, 3) probabilities as scikit-learn's ``predict_proba``, classes absent in training 0."""
    classes = np.asarray(logistic["classes"], dtype=np.int64)
    scores = X @ np.asarray(logistic["coef"]).T + np.asarray(logistic["intercept"])  # (n, k)
    if len(classes) == 1:
        fitted = np.ones((len(X), 1))
    elif len(classes) == 2:
        # scikit-learn keeps one coefficient row for two classes: the second class's logit.
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        fitted = np.column_stack([1.0 - positive, positive])
    else:
        scores = scores - scores.max(axis=1, keepdims=True)
        fitted = np.exp(scores)
        fitted /= fitted.sum(axis=1, keepdims=True)
    proba = np.zeros((len(X), N_CLASSES))
    proba[:, classes] = fitted
    return proba
