"""Tests of forecast scoring, calibration curves and the player bootstrap."""

import time

import numpy as np
import pandas as pd
import pytest
from rbyards import evaluation as ev

# A small grid that contains the ends of every default central interval and pinball level.
SMALL_LEVELS = [0.025, 0.05, 0.1, 0.16, 0.25, 0.5, 0.75, 0.84, 0.9, 0.95, 0.975]


def uniform_grid(n_rows: int, scale: float = 100.0) -> pd.DataFrame:
    """Quantiles of a uniform(0, scale) forecast on the shared grid, for every row."""
    return ev.quantile_frame(np.tile(ev.QUANTILE_LEVELS * scale, (n_rows, 1)))


def test_quantile_levels_grid():
    levels = ev.QUANTILE_LEVELS
    assert levels.size == 101
    assert np.all(np.diff(levels) > 0)
    for level in (0.01, 0.025, 0.16, 0.5, 0.84, 0.975, 0.99):
        assert np.isclose(levels, level).any()


def test_level_label_distinguishes_levels():
    assert ev.level_label(0.9) == "90"
    assert ev.level_label(0.05) == "05"
    assert ev.level_label(0.025) == "025"
    assert ev.level_label(0.25) == "25"
    assert ev.level_label(0.975) == "975"
    assert ev.quantile_column_name(0.01) == "q0.010"


def test_quantiles_from_draws_linear():
    draws = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 30.0, 40.0, 50.0]])
    result = ev.quantiles_from_draws(draws, [0.25, 0.5, 0.6])
    # numpy's linear rule: index (n - 1) * level = 1, 2, 2.4.
    np.testing.assert_allclose(result, [[2.0, 3.0, 3.4], [20.0, 30.0, 34.0]])


def test_interpolate_quantiles_inside_grid():
    quantiles = np.array([[0.0, 4.0, 8.0]])
    result = ev.interpolate_quantiles(quantiles, [0.1, 0.5, 0.9], [0.2, 0.5, 0.8])
    np.testing.assert_allclose(result, [[1.0, 4.0, 7.0]])


def test_interpolate_quantiles_outside_grid_raises():
    with pytest.raises(ev.EvaluationError, match="outside the quantile grid"):
        ev.interpolate_quantiles(np.array([[0.0, 1.0]]), [0.1, 0.9], [0.05])


def test_skewed_central_interval_not_mean_sd():
    draws = np.array([[0.0, 1, 2, 3, 4, 5, 6, 7, 8, 100]])
    y = np.array([20.0])
    mean, sd = draws.mean(), draws.std()
    # The mean +/- 1 sd band contains 20 yards ...
    assert mean - sd < y[0] < mean + sd
    per_row = ev.score_forecast(y, draws=draws)
    # ... but the central 68% interval is [q0.16, q0.84] = [1.44, 7.56] and misses it.
    assert not per_row["covered_68"].iloc[0]
    assert per_row["width_68"].iloc[0] == pytest.approx(7.56 - 1.44)
    lower, upper = ev.central_interval(0.68, draws=draws)
    assert lower[0] == pytest.approx(1.44)
    assert upper[0] == pytest.approx(7.56)


def test_crps_from_draws_hand_values():
    draws = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    per_row = ev.score_forecast(np.array([1.0, 5.0]), draws=draws)
    # E|X - y| - E|X - X'| / 2 with E|X - X'| = 20 / 16 for the ensemble 0..3.
    assert per_row["crps"].iloc[0] == pytest.approx(1.0 - 0.625)
    assert per_row["crps"].iloc[1] == pytest.approx(3.5 - 0.625)


def test_crps_from_grid_uses_even_levels():
    per_row = ev.score_forecast(np.array([0.5]), quantiles=uniform_grid(1, scale=1.0))
    # 2/99 * sum of pinball losses at 0.01..0.99 for y = 0.5 and q_tau = tau:
    # 2/99 * 2 * sum_{k=1}^{49} (k/100) * (50 - k)/100 = 2/99 * 2 * 2.0825.
    assert per_row["crps"].iloc[0] == pytest.approx(4 * 2.0825 / 99)
    # Close to the exact CRPS of uniform(0, 1) at 0.5, which is 1/12.
    assert per_row["crps"].iloc[0] == pytest.approx(1 / 12, abs=0.002)


def test_pinball_and_errors_hand_values():
    values = np.array([[-5.0, 0.0, 2.0, 4.0, 8.0, 12.0, 20.0, 24.0, 26.0, 30.0, 40.0]])
    per_row = ev.score_forecast(np.array([10.0]), quantiles=values, quantile_levels=SMALL_LEVELS)
    row = per_row.iloc[0]
    assert row["pinball_05"] == pytest.approx(0.05 * (10.0 - 0.0))
    assert row["pinball_50"] == pytest.approx(0.5 * 2.0)
    assert row["pinball_95"] == pytest.approx(0.05 * (30.0 - 10.0))
    assert row["median"] == pytest.approx(12.0)
    assert row["abs_error"] == pytest.approx(2.0)
    assert row["squared_error"] == pytest.approx(4.0)
    assert row["width_50"] == pytest.approx(20.0 - 8.0)
    assert row["width_95"] == pytest.approx(45.0)
    assert row["covered_50"]


def test_coverage_per_level_hand_values():
    values = np.array([[-5.0, 0.0, 2.0, 4.0, 8.0, 12.0, 20.0, 24.0, 26.0, 30.0, 40.0]])
    per_row = ev.score_forecast(np.array([25.0]), quantiles=values, quantile_levels=SMALL_LEVELS)
    row = per_row.iloc[0]
    # Intervals: 50% [8, 20], 68% [4, 24], 80% [2, 26], 90% [0, 30], 95% [-5, 40].
    assert not row["covered_50"]
    assert not row["covered_68"]
    assert row["covered_80"]
    assert row["covered_90"]
    assert row["covered_95"]


def test_coverage_includes_interval_ends():
    values = np.tile(np.arange(11.0), (1, 1))
    per_row = ev.score_forecast(np.array([4.0]), quantiles=values, quantile_levels=SMALL_LEVELS)
    # The 50% interval is [q0.25, q0.75] = [4, 6]; an outcome on its end counts as covered.
    assert per_row["covered_50"].iloc[0]


def test_pit_from_grid_hand_values():
    pit = ev.pit_values(
        np.array([5.0, -1.0, 25.0, 10.0]),
        quantiles=np.tile([0.0, 10.0, 20.0], (4, 1)),
        quantile_levels=[0.1, 0.5, 0.9],
    )
    np.testing.assert_allclose(pit, [0.3, 0.1, 0.9, 0.5])


def test_pit_from_draws_counts_ties_half():
    pit = ev.pit_values(np.array([2.0]), draws=np.array([[0.0, 1.0, 2.0, 3.0]]))
    assert pit[0] == pytest.approx(2 / 4 + 0.5 * 1 / 4)


def test_draws_and_their_quantiles_agree():
    rng = np.random.default_rng(3)
    draws = rng.lognormal(3.5, 0.6, size=(200, 400))
    y = rng.lognormal(3.5, 0.6, size=200)
    from_draws = ev.summarize(ev.score_forecast(y, draws=draws))
    grid = ev.quantile_frame(ev.quantiles_from_draws(draws))
    from_grid = ev.summarize(ev.score_forecast(y, quantiles=grid))
    for metric in ("coverage_50", "coverage_90", "width_90_mean", "mae", "pinball_95"):
        assert from_grid[metric] == pytest.approx(from_draws[metric])
    # The grid CRPS approximates the ensemble CRPS.
    assert from_grid["crps"] == pytest.approx(from_draws["crps"], rel=0.03)


def test_grid_crps_of_draws_matches_quantile_route():
    rng = np.random.default_rng(5)
    draws = rng.lognormal(3.0, 0.5, size=(50, 2000))
    y = rng.lognormal(3.0, 0.5, size=50)
    grid = ev.quantile_frame(ev.quantiles_from_draws(draws))
    from_grid = ev.score_forecast(y, quantiles=grid)
    from_draws = ev.score_forecast(y, draws=draws, crps_estimator="quantile_grid")
    np.testing.assert_allclose(from_draws["crps"], from_grid["crps"], rtol=1e-9)


def test_grid_crps_ignores_extreme_tail():
    # 1% of the draws are huge, as in a back-transformed Student-t. They add about 100 to the
    # ensemble CRPS (3.3 for the bulk alone); the quantile-grid CRPS stays near the bulk's.
    draws = np.linspace(10.0, 50.0, 990)[None, :]
    draws = np.concatenate([draws, np.full((1, 10), 1e6)], axis=1)
    y = np.array([30.0])
    ensemble = ev.score_forecast(y, draws=draws)["crps"].iloc[0]
    grid = ev.score_forecast(y, draws=draws, crps_estimator="quantile_grid")["crps"].iloc[0]
    assert ensemble > 50.0
    assert grid < 10.0


def test_unknown_crps_estimator_raises():
    with pytest.raises(ev.EvaluationError, match="crps_estimator"):
        ev.score_forecast(np.array([1.0]), draws=np.array([[0.0, 2.0]]), crps_estimator="exact")


def test_crossing_quantiles_raise():
    crossing = np.array([[0.0, 5.0, 4.0]])
    with pytest.raises(ev.EvaluationError, match="rearrange_quantiles"):
        ev.score_forecast(
            np.array([1.0]), quantiles=crossing, quantile_levels=[0.1, 0.5, 0.9], levels=[0.8]
        )


def test_score_needs_exactly_one_forecast():
    with pytest.raises(ev.EvaluationError, match="exactly one"):
        ev.score_forecast(np.array([1.0]))
    with pytest.raises(ev.EvaluationError, match="exactly one"):
        ev.score_forecast(np.array([1.0]), draws=np.ones((1, 3)), quantiles=uniform_grid(1))


def test_missing_outcome_raises():
    with pytest.raises(ev.EvaluationError, match="missing"):
        ev.score_forecast(np.array([np.nan]), draws=np.ones((1, 3)))


def test_summarize_hand_values():
    per_row = ev.score_forecast(
        np.array([11.0, 9.0, 15.0]),
        quantiles=np.tile([0.0, 10.0, 20.0], (3, 1)),
        quantile_levels=[0.05, 0.5, 0.95],
        levels=[0.9],
        pinball_levels=[0.5],
        row_ids=["a", "b", "c"],
    )
    summary = ev.summarize(per_row)
    assert summary["mae"] == pytest.approx((1 + 1 + 5) / 3)
    assert summary["rmse"] == pytest.approx(np.sqrt((1 + 1 + 25) / 3))
    assert summary["coverage_90"] == pytest.approx(1.0)
    assert summary["width_90_mean"] == pytest.approx(20.0)
    assert summary["width_90_median"] == pytest.approx(20.0)
    assert summary["pinball_50"] == pytest.approx(0.5 * 7 / 3)
    assert summary["n_rows"] == 3
    assert list(per_row.index) == ["a", "b", "c"]


def test_metrics_by_tier_splits_rows():
    per_row = ev.score_forecast(
        np.array([10.0, 14.0, 30.0]),
        quantiles=np.tile([0.0, 10.0, 20.0], (3, 1)),
        quantile_levels=[0.05, 0.5, 0.95],
        levels=[0.9],
        pinball_levels=[0.5],
    )
    by_tier = ev.metrics_by_tier(per_row, ["high", "low", "high"])
    assert list(by_tier) == ["low", "high"]
    assert by_tier["low"]["mae"] == pytest.approx(4.0)
    assert by_tier["high"]["mae"] == pytest.approx(10.0)
    assert by_tier["high"]["coverage_90"] == pytest.approx(0.5)
    assert by_tier["high"]["n_rows"] == 2


def test_metrics_by_tier_wrong_length_raises():
    per_row = ev.score_forecast(np.array([1.0, 2.0]), draws=np.ones((2, 3)))
    with pytest.raises(ev.EvaluationError, match="one tier label"):
        ev.metrics_by_tier(per_row, ["low"])


def test_calibration_curve_hand_values():
    y = np.array([10.0, 50.0, 90.0, 97.0])
    curve = ev.calibration_curve(y, quantiles=uniform_grid(4), nominal_levels=[0.5, 0.9, 0.95])
    # Intervals [25, 75], [5, 95] and [2.5, 97.5] of a uniform(0, 100) forecast.
    np.testing.assert_allclose(curve["observed"], [0.25, 0.75, 1.0])
    np.testing.assert_allclose(curve["nominal"], [0.5, 0.9, 0.95])
    assert (curve["n_rows"] == 4).all()


def test_calibration_curve_default_grid_interpolates():
    curve = ev.calibration_curve(np.array([48.0, 40.0]), quantiles=uniform_grid(2))
    assert len(curve) == 19
    # The 5% interval [47.5, 52.5] lies between grid levels and contains only 48.
    assert curve["observed"].iloc[0] == pytest.approx(0.5)


def test_calibration_curve_from_scores_levels():
    per_row = ev.score_forecast(np.array([10.0, 50.0, 90.0, 97.0]), quantiles=uniform_grid(4))
    curve = ev.calibration_curve_from_scores(per_row)
    np.testing.assert_allclose(curve["nominal"], [0.5, 0.68, 0.8, 0.9, 0.95])
    # Intervals [25, 75], [16, 84], [10, 90], [5, 95], [2.5, 97.5]; ends count as covered.
    np.testing.assert_allclose(curve["observed"], [0.25, 0.25, 0.75, 0.75, 1.0])


def test_check_identical_rows_cases():
    ev.check_identical_rows(["a", "b"], np.array(["a", "b"]))
    with pytest.raises(ev.RowMismatchError, match="different order"):
        ev.check_identical_rows(["a", "b"], ["b", "a"])
    with pytest.raises(ev.RowMismatchError, match=r"only in forecast 1: \['c'\]"):
        ev.check_identical_rows(["a", "b"], ["a", "c"])
    with pytest.raises(ev.RowMismatchError, match="forecast 1 has 3"):
        ev.check_identical_rows(["a", "b"], ["a", "b", "c"])


def block_per_row() -> tuple[pd.DataFrame, np.ndarray]:
    """Player A: 99 rows with error 10; player B: one row with error 0."""
    y = np.concatenate([np.full(99, 10.0), [0.0]])
    per_row = ev.score_forecast(
        y,
        quantiles=np.zeros((100, 3)),
        quantile_levels=[0.05, 0.5, 0.95],
        levels=[0.9],
        pinball_levels=[0.5],
    )
    players = np.array(["A"] * 99 + ["B"])
    return per_row, players


def test_bootstrap_resamples_players_as_blocks():
    per_row, players = block_per_row()
    replicates = ev.player_bootstrap_replicates(per_row, players, n_boot=1000, seed=1)
    values = set(np.round(replicates["mae"], 9))
    # Two players drawn with replacement: A twice (10), B twice (0) or one each (990 / 100).
    assert values <= {10.0, 0.0, 9.9}
    assert 0.0 in values
    assert 10.0 in values
    intervals = ev.bootstrap_by_player(per_row, players, n_boot=1000, seed=1)
    assert intervals["mae"] == (0.0, 10.0)


def test_bootstrap_rmse_and_coverage_columns():
    per_row, players = block_per_row()
    replicates = ev.player_bootstrap_replicates(per_row, players, n_boot=200, seed=2)
    assert set(np.round(replicates["rmse"], 9)) <= {10.0, 0.0, round(np.sqrt(99.0), 9)}
    assert "coverage_90" in replicates
    assert "width_90_mean" in replicates


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.normal(50, 20, size=300)
    per_row = ev.score_forecast(y, draws=rng.normal(50, 20, size=(300, 50)))
    players = rng.integers(0, 30, size=300)
    first = ev.bootstrap_by_player(per_row, players, n_boot=300, seed=7)
    again = ev.bootstrap_by_player(per_row, players, n_boot=300, seed=7)
    other = ev.bootstrap_by_player(per_row, players, n_boot=300, seed=8)
    assert first == again
    assert first["mae"] != other["mae"]
    assert first["mae"][0] < ev.summarize(per_row)["mae"] < first["mae"][1]


def test_bootstrap_speed_4000_rows():
    rng = np.random.default_rng(0)
    n_rows = 4000
    per_row = ev.score_forecast(
        rng.normal(50, 20, size=n_rows), quantiles=uniform_grid(n_rows), row_ids=range(n_rows)
    )
    players = rng.integers(0, 150, size=n_rows)
    started = time.perf_counter()
    ev.bootstrap_by_player(per_row, players, n_boot=1000, seed=0)
    elapsed = time.perf_counter() - started
    # About 0.02 s on a 2-core machine; the bound leaves room for slow CI hosts.
    assert elapsed < 3.0


def test_bootstrap_difference_paired():
    rng = np.random.default_rng(5)
    y = rng.normal(50, 10, size=200)
    grid = np.tile([30.0, 50.0, 70.0], (200, 1))
    levels = dict(quantile_levels=[0.05, 0.5, 0.95], levels=[0.9], pinball_levels=[0.5])
    ids = [f"r{i}" for i in range(200)]
    per_row_a = ev.score_forecast(y, quantiles=grid, row_ids=ids, **levels)
    per_row_b = ev.score_forecast(y, quantiles=grid + 0.0, row_ids=ids, **levels)
    players = rng.integers(0, 20, size=200)
    same = ev.bootstrap_difference(per_row_a, per_row_b, players, n_boot=200, seed=0)
    assert same["mae"] == {"estimate": 0.0, "lower": 0.0, "upper": 0.0}

    shifted = per_row_b.copy()
    shifted["abs_error"] = per_row_a["abs_error"] + 1.0
    difference = ev.bootstrap_difference(per_row_a, shifted, players, n_boot=200, seed=0)
    assert difference["mae"]["estimate"] == pytest.approx(-1.0)
    assert difference["mae"]["lower"] == pytest.approx(-1.0)
    assert difference["mae"]["upper"] == pytest.approx(-1.0)


def test_bootstrap_difference_rejects_other_rows():
    y = np.array([1.0, 2.0])
    per_row_a = ev.score_forecast(y, draws=np.ones((2, 3)), row_ids=["a", "b"])
    per_row_b = ev.score_forecast(y, draws=np.ones((2, 3)), row_ids=["a", "c"])
    with pytest.raises(ev.RowMismatchError):
        ev.bootstrap_difference(per_row_a, per_row_b, ["p", "q"], n_boot=10)


def test_bootstrap_players_length_checked():
    per_row = ev.score_forecast(np.array([1.0, 2.0]), draws=np.ones((2, 3)))
    with pytest.raises(ev.EvaluationError, match="one player"):
        ev.bootstrap_by_player(per_row, ["p"], n_boot=10)


def test_central_level_pairs():
    levels, pairs = ev.central_level_pairs(SMALL_LEVELS)
    central = sorted(round(levels[upper] - levels[lower], 9) for lower, upper in pairs)
    assert central == [0.5, 0.68, 0.8, 0.9, 0.95]
    with pytest.raises(ev.EvaluationError, match="no mirror"):
        ev.central_level_pairs([0.1, 0.5, 0.8])


def test_prediction_column_names_accepted():
    grid = uniform_grid(4)
    renamed = ev.to_prediction_columns(grid)
    assert renamed.columns[0] == "q0.010"
    assert renamed.columns[-1] == "q0.990"
    y = np.array([10.0, 50.0, 90.0, 97.0])
    by_name = ev.summarize(ev.score_forecast(y, quantiles=renamed))
    by_level = ev.summarize(ev.score_forecast(y, quantiles=grid))
    assert by_name == by_level


def test_quantile_levels_read_only():
    with pytest.raises(ValueError):
        ev.QUANTILE_LEVELS[0] = 0.5
