"""Tests of the conformal adjustment of precomputed predictive quantiles."""

import inspect

import numpy as np
import pytest
from rbyards import baselines, calibration, evaluation
from scipy import stats

LEVELS = evaluation.QUANTILE_LEVELS


def lognormal_forecast(rng, n_rows, forecast_sd, true_sd=0.55):
    """Outcomes from a log-normal around a known centre, and quantiles with a chosen spread."""
    centre = np.log(60.0) + rng.normal(size=n_rows) * 0.3
    y = np.exp(centre + rng.normal(size=n_rows) * true_sd) - 10.0
    quantiles = np.exp(centre[:, None] + forecast_sd * stats.norm.ppf(LEVELS)[None, :]) - 10.0
    return quantiles, y


def test_correction_finite_sample_rank():
    scores = np.array([3.0, -1.0, 2.0, 0.0, 1.0])
    # rank ceil((n + 1) L): ceil(3) = 3 -> 1.0 and ceil(4.8) = 5 -> 3.0.
    assert calibration.conformal_quantile_correction(scores, 0.5) == 1.0
    assert calibration.conformal_quantile_correction(scores, 0.8) == 3.0


def test_correction_too_few_rows_raises():
    with pytest.raises(calibration.CalibrationError, match="needs at least 9"):
        calibration.conformal_quantile_correction(np.arange(5.0), 0.9)
    # Nine rows suffice: rank ceil(10 * 0.9) = 9 is the largest score.
    assert calibration.conformal_quantile_correction(np.arange(9.0), 0.9) == 8.0


def test_adjustment_hand_values_in_yards():
    calibration_quantiles = np.tile([0.0, 10.0, 20.0], (3, 1))
    y_calibration = np.array([25.0, 10.0, -3.0])
    test_quantiles = np.array([[5.0, 15.0, 25.0]])
    result = calibration.conformalize_quantiles(
        calibration_quantiles,
        y_calibration,
        test_quantiles,
        levels=[0.25, 0.5, 0.75],
        log_shift=None,
    )
    # Scores max(q_lo - y, y - q_hi) = 5, -10, 3; rank ceil(4 * 0.5) = 2 -> correction 3.
    np.testing.assert_allclose(result.quantiles.to_numpy(), [[2.0, 15.0, 28.0]])
    row = result.corrections.iloc[0]
    assert row["correction"] == pytest.approx(3.0)
    assert row["calibration_coverage_before"] == pytest.approx(1 / 3)
    assert row["calibration_coverage_after"] == pytest.approx(2 / 3)
    assert result.scale == "yards"


def test_negative_correction_narrows():
    calibration_quantiles = np.tile([0.0, 10.0, 20.0], (3, 1))
    result = calibration.conformalize_quantiles(
        calibration_quantiles,
        np.array([10.0, 11.0, 9.0]),
        np.array([[0.0, 10.0, 20.0]]),
        levels=[0.25, 0.5, 0.75],
        log_shift=None,
    )
    # Scores -10, -9, -9; the second smallest is -9, so each end moves 9 yards inwards.
    np.testing.assert_allclose(result.quantiles.to_numpy(), [[9.0, 10.0, 11.0]])


def test_signature_takes_no_test_outcomes():
    parameters = inspect.signature(calibration.conformalize_quantiles).parameters
    assert list(parameters)[:3] == ["calibration_quantiles", "y_calibration", "test_quantiles"]
    assert not any("test" in name and "y" in name.split("_") for name in parameters)


def test_overconfident_model_reaches_nominal():
    coverage_before = []
    coverage_after = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        calibration_quantiles, y_calibration = lognormal_forecast(rng, 300, forecast_sd=0.35)
        test_quantiles, y_test = lognormal_forecast(rng, 1000, forecast_sd=0.35)
        result = calibration.conformalize_quantiles(
            evaluation.quantile_frame(calibration_quantiles),
            y_calibration,
            evaluation.quantile_frame(test_quantiles),
        )
        before = evaluation.score_forecast(y_test, quantiles=test_quantiles)
        after = evaluation.score_forecast(y_test, quantiles=result.quantiles)
        coverage_before.append([before["covered_50"].mean(), before["covered_90"].mean()])
        coverage_after.append([after["covered_50"].mean(), after["covered_90"].mean()])
    before_mean = np.mean(coverage_before, axis=0)
    after_mean = np.mean(coverage_after, axis=0)
    # Intervals with sd 0.35 for outcomes with sd 0.55 cover about 34% and 70%.
    assert before_mean[1] < 0.75
    # The conformal guarantee is at least L in expectation. Over 30 seeds with 300 calibration
    # rows, the Monte Carlo standard error of the mean coverage is below 0.006.
    assert after_mean[0] == pytest.approx(0.5, abs=0.02)
    assert after_mean[1] == pytest.approx(0.9, abs=0.015)


def test_overwide_model_is_narrowed():
    rng = np.random.default_rng(11)
    calibration_quantiles, y_calibration = lognormal_forecast(rng, 400, forecast_sd=0.9)
    test_quantiles, _ = lognormal_forecast(rng, 50, forecast_sd=0.9)
    result = calibration.conformalize_quantiles(
        calibration_quantiles, y_calibration, test_quantiles
    )
    ninety = result.corrections.loc[np.isclose(result.corrections["central_level"], 0.9)]
    assert ninety["correction"].iloc[0] < 0
    assert ninety["calibration_coverage_before"].iloc[0] > 0.95
    lower, upper = evaluation.central_interval(0.9, quantiles=test_quantiles)
    adjusted_lower, adjusted_upper = evaluation.central_interval(0.9, quantiles=result.quantiles)
    assert np.all(adjusted_upper - adjusted_lower < upper - lower)
    median_column = result.quantiles[0.5].to_numpy()
    np.testing.assert_allclose(median_column, test_quantiles[:, LEVELS.tolist().index(0.5)])


def test_matches_mapie_conformalized_baseline():
    rng = np.random.default_rng(4)
    n_train, n_calibration, n_test = 500, 120, 60
    X = rng.normal(size=(n_train + n_calibration + n_test, 3))
    y = np.round(np.exp(np.log(50.0) + 0.4 * X[:, 0] + rng.normal(size=len(X)) * 0.5) - 5.0)
    X_train, y_train = X[:n_train], y[:n_train]
    X_cal, y_cal = X[n_train : n_train + n_calibration], y[n_train : n_train + n_calibration]
    X_test = X[n_train + n_calibration :]

    grid = [{"num_leaves": 7, "n_estimators": 50, "min_child_samples": 20}]
    calibration_quantiles = baselines.gradient_boosted_quantiles(
        X_train, y_train, None, None, X_cal, grid=grid
    )
    test_quantiles = baselines.gradient_boosted_quantiles(
        X_train, y_train, None, None, X_test, grid=grid
    )
    ours = calibration.conformalize_quantiles(calibration_quantiles, y_cal, test_quantiles)

    mapie = baselines.conformalized_quantile_regression(
        X_train, y_train, X_cal, y_cal, X_test, grid=grid
    )
    np.testing.assert_allclose(ours.quantiles.to_numpy(), mapie.to_numpy(), rtol=1e-6, atol=1e-6)


def test_quantiles_below_shift_raise():
    quantiles = np.tile([-12.0, 0.0, 5.0], (60, 1))
    with pytest.raises(calibration.CalibrationError, match="log_shift"):
        calibration.conformalize_quantiles(
            quantiles, np.zeros(60), quantiles, levels=[0.25, 0.5, 0.75]
        )


def test_mismatched_levels_raise():
    calibration_quantiles = evaluation.quantile_frame(
        np.tile([0.0, 1.0, 2.0], (60, 1)), [0.25, 0.5, 0.75]
    )
    test_quantiles = evaluation.quantile_frame(np.tile([0.0, 1.0, 2.0], (5, 1)), [0.1, 0.5, 0.9])
    with pytest.raises(calibration.CalibrationError, match="different levels"):
        calibration.conformalize_quantiles(calibration_quantiles, np.ones(60), test_quantiles)


def test_outcome_count_checked():
    quantiles = np.tile([0.0, 1.0, 2.0], (60, 1))
    with pytest.raises(calibration.CalibrationError, match="one outcome per row"):
        calibration.conformalize_quantiles(
            quantiles, np.ones(59), quantiles, levels=[0.25, 0.5, 0.75]
        )
