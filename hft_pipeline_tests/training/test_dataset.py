"""Sequences, the chronological split (purge, embargo) and the scaler: no leaks, no crossings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hft_pipeline.training.dataset import (
    MISSING_DIRECTION,
    Scaler,
    build_window_arrays,
    chronological_split,
    class_weights,
    fit_scaler,
    sequence_batch,
    to_tensors,
)
from hft_pipeline_tests.training.synthetic import make_window


def window_arrays(context=6, **window):
    data = make_window(**window)
    return build_window_arrays(
        data.features, data.labels, data.feature_columns, data.horizon, context
    ), data


def test_build_window_arrays_sequences_stay_in_one_session():
    arrays, _ = window_arrays(context=6, days=2, bars=40)

    starts, ends = arrays.starts, arrays.ends

    assert len(ends) > 0
    assert np.array_equal(arrays.session[starts], arrays.session[ends])
    assert (arrays.ts[ends] - arrays.ts[starts] == 5 * arrays.bar_ns).all()


def test_build_window_arrays_missing_labels_have_no_sequence():
    arrays, data = window_arrays(context=6, days=2, bars=40)

    labelled = data.labels[f"direction_h{data.horizon}"].notna().to_numpy()

    assert labelled[arrays.ends].all()
    assert (arrays.direction[~labelled] == MISSING_DIRECTION).all()
    # per session: 40 bars - 5 bars before a full context - 3 unlabelled at the end - lag 2
    assert len(arrays.ends) == 2 * 2 * (40 - 5 - 3)


def test_build_window_arrays_keys_differ_raises():
    data = make_window(days=1, bars=20)
    labels = data.labels.iloc[::-1].reset_index(drop=True)

    with pytest.raises(ValueError, match="sort both by symbol, ts"):
        build_window_arrays(data.features, labels, data.feature_columns, data.horizon, 4)


def test_build_window_arrays_unsorted_ts_raises():
    data = make_window(days=1, bars=20, symbols=("ES",))
    swapped = [1, 0, *range(2, 20)]
    features = data.features.iloc[swapped].reset_index(drop=True)
    labels = data.labels.iloc[swapped].reset_index(drop=True)

    with pytest.raises(ValueError, match="not increasing within a session at row 1"):
        build_window_arrays(features, labels, data.feature_columns, data.horizon, 4)


def test_build_window_arrays_missing_feature_column_raises():
    data = make_window(days=1, bars=20)

    with pytest.raises(KeyError, match="features lacks column"):
        build_window_arrays(data.features, data.labels, ["f0", "nope"], data.horizon, 4)


@pytest.mark.parametrize("embargo_bars", [0, 7])
def test_chronological_split_train_label_horizon_ends_before_validation(embargo_bars):
    # one day: the validation start falls inside both symbols' sessions
    arrays, _ = window_arrays(context=6, days=1, bars=120, horizon=4)

    split = chronological_split(arrays, validation_fraction=0.3, embargo_bars=embargo_bars)

    horizon_end = arrays.ts[split.train_ends + arrays.horizon]
    assert np.array_equal(
        arrays.session[split.train_ends + arrays.horizon], arrays.session[split.train_ends]
    )
    assert (horizon_end + embargo_bars * arrays.bar_ns < split.validation_start_ts).all()
    assert (arrays.ts[split.val_ends] >= split.validation_start_ts).all()
    assert split.n_purged == 2 * arrays.horizon
    assert split.n_embargoed == 2 * embargo_bars
    assert len(split.train_ends) + len(split.val_ends) + split.n_purged + split.n_embargoed == len(
        arrays.ends
    )


@pytest.mark.parametrize("validation_fraction", [0.2, 0.25, 0.5])
def test_chronological_split_validation_is_last_fraction_of_bars(validation_fraction):
    # Two sessions a night apart: a share of clock time would put most of day 2 in validation.
    arrays, _ = window_arrays(context=6, days=2, bars=100)

    split = chronological_split(arrays, validation_fraction, embargo_bars=0)

    in_validation = (arrays.ts >= split.validation_start_ts).mean()
    assert in_validation == pytest.approx(validation_fraction, abs=0.01)
    assert arrays.ts[split.train_ends].max() < split.validation_start_ts


def test_fit_scaler_validation_rows_changed_scaler_unchanged():
    arrays, data = window_arrays(context=6, days=4, bars=50)
    split = chronological_split(arrays, validation_fraction=0.25, embargo_bars=0)
    shifted = data.features.copy()
    in_validation = shifted["ts"] >= split.validation_start_ts
    shifted.loc[in_validation, list(data.feature_columns)] += 1000.0
    arrays_shifted = build_window_arrays(
        shifted, data.labels, data.feature_columns, data.horizon, 6
    )

    scaler = fit_scaler(arrays, split)
    scaler_shifted = fit_scaler(arrays_shifted, split)

    assert in_validation.any()
    assert scaler == scaler_shifted
    training_rows = arrays.features[arrays.ts < split.validation_start_ts].astype(np.float64)
    assert np.allclose(scaler.mean, np.nanmean(training_rows, axis=0))
    assert np.allclose(scaler.std, np.nanstd(training_rows, axis=0))


def test_scaler_transform_nan_becomes_zero_and_json_round_trips(tmp_path):
    scaler = Scaler(("a", "b"), (1.0, -2.0), (2.0, 0.5), 1e-4, 2e-4, 10)

    scaled = scaler.transform(np.array([[3.0, np.nan], [np.nan, -1.0]]))
    scaler.save(tmp_path / "scaler.json")

    assert scaled.dtype == np.float32
    assert np.array_equal(scaled, [[1.0, 0.0], [0.0, 2.0]])
    assert Scaler.load(tmp_path / "scaler.json") == scaler


def test_sequence_batch_equals_rows_sliced_directly():
    arrays, _ = window_arrays(context=6, days=2, bars=40)
    split = chronological_split(arrays, validation_fraction=0.25, embargo_bars=0)
    scaler = fit_scaler(arrays, split)
    scaled = scaler.transform(arrays.features)
    tensors = to_tensors(arrays, scaled, scaler, "cpu")
    ends = arrays.ends[[0, 5, -1]]

    x, direction, forward_return, _ = sequence_batch(tensors, torch.from_numpy(ends))

    assert x.shape == (3, 6, len(arrays.feature_columns))
    for row, end in enumerate(ends):
        assert np.array_equal(x[row].numpy(), scaled[end - 5 : end + 1])
    assert np.array_equal(direction.numpy(), arrays.directions[ends])  # (3, 1 horizon)
    expected_return = (arrays.forward_return[ends] / scaler.return_scale).astype(np.float32)
    assert np.allclose(forward_return.numpy()[:, 0], expected_return)


def test_class_weights_rare_class_weighs_more_and_average_is_one():
    direction = np.array([0] * 10 + [1] * 30 + [2] * 20)

    weights = class_weights(direction)

    assert weights[0] > weights[2] > weights[1]
    assert weights[direction].mean() == pytest.approx(1.0)
