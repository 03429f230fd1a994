"""Baselines stored as plain numbers reproduce scikit-learn's predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from hft_pipeline.training.baselines import apply_baselines, fit_baselines


def sample(classes, n=300, seed=0):
    """Scaled-looking inputs, a direction that depends on them, and a small return."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    if len(classes) == 3:
        index = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    else:
        index = (X[:, 0] > 0).astype(int)
    forward_return = 1e-4 * X[:, 2] + 1e-5 * rng.standard_normal(n)
    return X, np.asarray(classes)[index], forward_return


@pytest.mark.parametrize("classes", [(0, 1, 2), (0, 2)])
def test_apply_baselines_json_numbers_equal_sklearn_predictions(classes):
    X, direction, forward_return = sample(classes)
    reference = LogisticRegression(C=1.0, max_iter=200).fit(X, direction)
    ridge = Ridge(alpha=1.0).fit(X, forward_return)

    stored = json.loads(json.dumps(fit_baselines(X, direction, forward_return)))
    predicted = apply_baselines(stored, X)

    expected = np.zeros((len(X), 3))
    expected[:, reference.classes_] = reference.predict_proba(X)
    assert np.allclose(predicted["logistic_proba"], expected, atol=1e-10)
    assert np.allclose(predicted["ridge_return"], ridge.predict(X), rtol=1e-10, atol=1e-14)


def test_fit_baselines_naive_is_majority_class_and_zero_return():
    X, direction, forward_return = sample((0, 1, 2))

    stored = fit_baselines(X, direction, forward_return)
    predicted = apply_baselines(stored, X[:5])
    frequencies = np.bincount(direction, minlength=3) / len(direction)

    assert stored["naive"]["majority_class"] == int(np.argmax(frequencies))
    assert np.allclose(predicted["naive_proba"], np.tile(frequencies, (5, 1)))
    assert (predicted["naive_return"] == 0).all()


def test_fit_baselines_one_class_predicts_it_with_certainty():
    X, _, forward_return = sample((0, 1, 2), n=20)

    stored = fit_baselines(X, np.full(20, 1), forward_return)

    assert np.array_equal(apply_baselines(stored, X)["logistic_proba"][:, 1], np.ones(20))


def test_fit_baselines_nan_inputs_raise():
    X, direction, forward_return = sample((0, 1, 2), n=20)
    X[3, 1] = np.nan

    with pytest.raises(ValueError, match="scale them with Scaler.transform"):
        fit_baselines(X, direction, forward_return)
