"""Tests of the quantile baselines: output contract, no test outcomes, conformal coverage."""

import inspect
import logging
import time

import numpy as np
import pandas as pd
import pytest
from rbyards import baselines, evaluation

FAST_GRID = ({"num_leaves": 7, "n_estimators": 50, "min_child_samples": 20},)

# Small settings that keep each baseline well under a second on a few hundred rows.
FAST_OPTIONS = {
    "quantile_regression": {"alphas": (0.0, 0.01)},
    "gradient_boosted_quantiles": {"grid": FAST_GRID},
    "conformalized_quantile_regression": {"grid": FAST_GRID},
    "split_conformal_forest": {"n_estimators": 30},
}


def simulate(rng, n_rows, n_features=4):
    """Yards with a log-normal spread whose centre depends on the first two features."""
    X = rng.normal(size=(n_rows, n_features))
    centre = np.log(55.0) + 0.35 * X[:, 0] + 0.1 * X[:, 1]
    y = np.round(np.exp(centre + rng.normal(size=n_rows) * 0.55) - 10.0)
    return X, y


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X_train, y_train = simulate(rng, 400)
    X_cal, y_cal = simulate(rng, 120)
    X_test, y_test = simulate(rng, 80)
    history = [y_test[max(0, row - 8) : row] for row in range(len(y_test))]
    return {
        "X_train": X_train,
        "y_train": y_train,
        "X_cal": X_cal,
        "y_cal": y_cal,
        "X_test": X_test,
        "y_test": y_test,
        "history": history,
    }


def run(name, data, **overrides):
    options = dict(FAST_OPTIONS.get(name, {}))
    if name == "empirical":
        options["test_history"] = data["history"]
    options.update(overrides)
    arguments = {key: data[key] for key in ("X_train", "y_train", "X_cal", "y_cal", "X_test")}
    arguments.update({key: value for key, value in overrides.items() if key in arguments})
    for key in arguments:
        options.pop(key, None)
    return baselines.BASELINES[name](*arguments.values(), **options)


@pytest.mark.parametrize("name", list(baselines.BASELINES))
def test_output_contract(name, data):
    quantiles = run(name, data)
    assert quantiles.shape == (len(data["X_test"]), evaluation.QUANTILE_LEVELS.size)
    np.testing.assert_allclose(quantiles.columns.to_numpy(dtype=float), evaluation.QUANTILE_LEVELS)
    values = quantiles.to_numpy()
    assert np.all(np.isfinite(values))
    assert np.all(np.diff(values, axis=1) >= 0)
    # The forecast is scoreable and its median is in a plausible yards range.
    summary = evaluation.summarize(evaluation.score_forecast(data["y_test"], quantiles=quantiles))
    assert 0 < summary["coverage_90"] <= 1
    assert 10 < np.median(quantiles[0.5]) < 120


@pytest.mark.parametrize("name", list(baselines.BASELINES))
def test_signature_has_no_test_outcomes(name):
    parameters = list(inspect.signature(baselines.BASELINES[name]).parameters)
    assert parameters[:5] == ["X_train", "y_train", "X_cal", "y_cal", "X_test"]
    assert not [parameter for parameter in parameters if parameter.startswith("y_test")]


@pytest.mark.parametrize("name", list(baselines.BASELINES))
def test_rows_predicted_independently(name, data):
    # A forecast that used the test rows as a batch (or their order) would change here.
    quantiles = run(name, data)
    overrides = {"X_test": data["X_test"][::-1]}
    if name == "empirical":
        overrides["test_history"] = data["history"][::-1]
    reversed_quantiles = run(name, data, **overrides)
    np.testing.assert_allclose(reversed_quantiles.to_numpy()[::-1], quantiles.to_numpy())


@pytest.mark.parametrize("name", ["quantile_regression", "gradient_boosted_quantiles"])
def test_plain_models_ignore_calibration_window(name, data):
    quantiles = run(name, data)
    shifted = run(name, data, y_cal=data["y_cal"] + 500.0)
    np.testing.assert_allclose(shifted.to_numpy(), quantiles.to_numpy())


@pytest.mark.parametrize("name", ["conformalized_quantile_regression", "split_conformal_forest"])
def test_conformal_models_use_calibration_window(name, data):
    quantiles = run(name, data)
    # Outcomes far above every forecast force much wider upper ends.
    shifted = run(name, data, y_cal=data["y_cal"] + 200.0)
    assert (shifted[0.95] > quantiles[0.95] + 50).all()


@pytest.mark.parametrize("name", ["conformalized_quantile_regression", "split_conformal_forest"])
def test_conformal_needs_calibration_rows(name, data):
    with pytest.raises(baselines.BaselineInputError, match="at least 50"):
        run(name, data, X_cal=data["X_cal"][:30], y_cal=data["y_cal"][:30])


def test_missing_features_raise(data):
    X_test = data["X_test"].copy()
    X_test[0, 0] = np.nan
    with pytest.raises(baselines.BaselineInputError, match="X_test contains missing"):
        run("quantile_regression", data, X_test=X_test)


def test_feature_count_checked(data):
    with pytest.raises(baselines.BaselineInputError, match="3 features"):
        run("gradient_boosted_quantiles", data, X_test=data["X_test"][:, :3])


def test_yards_below_shift_raise(data):
    y_train = data["y_train"].copy()
    y_train[0] = -10.0
    with pytest.raises(baselines.BaselineInputError, match="log_shift"):
        run("gradient_boosted_quantiles", data, y_train=y_train)


@pytest.mark.parametrize("name", ["split_conformal_forest", "conformalized_quantile_regression"])
def test_conformal_coverage_on_exchangeable_data(name):
    coverage = []
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        X_train, y_train = simulate(rng, 400)
        X_cal, y_cal = simulate(rng, 200)
        X_test, y_test = simulate(rng, 1000)
        quantiles = baselines.BASELINES[name](
            X_train, y_train, X_cal, y_cal, X_test, seed=seed, **FAST_OPTIONS[name]
        )
        per_row = evaluation.score_forecast(y_test, quantiles=quantiles)
        coverage.append([per_row["covered_50"].mean(), per_row["covered_90"].mean()])
    mean_coverage = np.mean(coverage, axis=0)
    # Mean over 4 seeds: the standard error is about 0.017 for 50% and 0.01 for 90% with
    # 200 calibration rows, so 3 standard errors are allowed.
    assert mean_coverage[0] == pytest.approx(0.5, abs=0.05)
    assert mean_coverage[1] == pytest.approx(0.9, abs=0.03)


def test_empirical_uses_own_recent_games():
    y_train = np.arange(101.0)
    history = [np.array([5.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0]), np.array([1.0, 2.0])]
    quantiles = baselines.empirical_baseline(
        None, y_train, None, None, None, test_history=history, min_games=3, max_games=6
    )
    # Row 0: the last six games 0..50 by 10; the median of 0, 10, 20, 30, 40, 50 is 25.
    assert quantiles[0.5].iloc[0] == pytest.approx(25.0)
    assert quantiles[0.01].iloc[0] == pytest.approx(0.5)
    # Row 1 has two games, fewer than three: the training distribution 0..100 is used.
    assert quantiles[0.5].iloc[1] == pytest.approx(50.0)
    assert quantiles[0.9].iloc[1] == pytest.approx(90.0)


def test_empirical_history_count_checked():
    with pytest.raises(baselines.BaselineInputError, match="one history per test row"):
        baselines.empirical_baseline(
            None, np.ones(10), None, None, np.ones((3, 2)), test_history=[np.ones(2)]
        )


def test_player_histories_only_earlier_games():
    history = pd.DataFrame(
        {
            "player_id": ["a", "a", "a", "a", "b"],
            "season": [2023, 2024, 2024, 2024, 2024],
            "week": [18, 1, 2, 3, 1],
            "rushing_yards": [7.0, 10.0, 20.0, 999.0, 55.0],
        }
    )
    targets = pd.DataFrame(
        {
            "player_id": ["a", "a", "b", "c"],
            "season": [2024, 2024, 2024, 2024],
            "week": [3, 2, 1, 5],
        }
    )
    result = baselines.player_histories(history, targets)
    # Week 3's own 999 yards and later games are excluded; other players never mix in.
    np.testing.assert_array_equal(result[0], [7.0, 10.0, 20.0])
    np.testing.assert_array_equal(result[1], [7.0, 10.0])
    assert result[2].size == 0
    assert result[3].size == 0
    limited = baselines.player_histories(history, targets, max_games=1)
    np.testing.assert_array_equal(limited[0], [20.0])


def test_player_histories_missing_column():
    with pytest.raises(baselines.BaselineInputError, match="rushing_yards"):
        baselines.player_histories(
            pd.DataFrame({"player_id": [], "season": [], "week": []}),
            pd.DataFrame({"player_id": [], "season": [], "week": []}),
        )


def test_quantile_regression_train_time(data):
    # Sorting by a time key that reverses the rows changes the folds, not the final fit when
    # a single penalty is offered, so both forecasts must agree.
    single = run("quantile_regression", data, alphas=(0.01,))
    reordered = run(
        "quantile_regression", data, alphas=(0.01,), train_time=-np.arange(len(data["y_train"]))
    )
    np.testing.assert_allclose(single.to_numpy(), reordered.to_numpy(), rtol=1e-6)
    with pytest.raises(baselines.BaselineInputError, match="train_time"):
        run("quantile_regression", data, train_time=np.arange(3))


@pytest.mark.slow
def test_fit_times_4000_rows(caplog):
    rng = np.random.default_rng(1)
    X_train, y_train = simulate(rng, 4000)
    X_cal, y_cal = simulate(rng, 400)
    X_test, _ = simulate(rng, 1000)
    history = [y_train[-10:]] * len(X_test)
    caplog.set_level(logging.INFO)
    timings = {}
    for name, baseline in baselines.BASELINES.items():
        options = {"test_history": history} if name == "empirical" else {}
        started = time.perf_counter()
        baseline(X_train, y_train, X_cal, y_cal, X_test, **options)
        timings[name] = time.perf_counter() - started
    logging.getLogger(__name__).info("baseline fit seconds: %s", timings)
    assert max(timings.values()) < 120
