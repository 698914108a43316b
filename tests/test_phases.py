"""Tests of the phase steps: player codes, settings, model building, forecasts and scores.

Forecasts are checked on synthetic posteriors (fixed random parameters, fast) for every phase,
and on one posterior sampled with NumPyro from a tiny phase 2.1 model (slow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr
from conftest import SMALL_MODEL_SETTINGS as SETTINGS
from conftest import make_league, synthetic_posterior
from rbyards import evaluation, models, phases, sampling
from rbyards.features import Dataset, build_dataset
from rbyards.params import load_params
from scipy import stats

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"
TABLE_COLUMNS = ["row_id", "player_id", "player_name", "season", "week", "rushing_yards", "tier"]
QUANTILE_COLUMNS = [evaluation.quantile_column_name(level) for level in evaluation.QUANTILE_LEVELS]
LEVELS = (0.5, 0.8, 0.9)


def league_with_new_players() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the default league with one player seen only in test and one only in calibration.

    With ``test_start_week=7`` and ``calibration_weeks=2``, 2024 weeks 7-8 are test rows and
    weeks 5-6 calibration rows. AAA-RB1's test games and BBB-RB1's calibration games are given
    to new player ids, so those players have no training rows.
    """
    player_weeks, schedule = make_league()
    in_2024 = player_weeks["season"] == 2024
    test_games = in_2024 & (player_weeks["week"] >= 7) & (player_weeks["player_id"] == "AAA-RB1")
    calibration_games = (
        in_2024 & player_weeks["week"].isin([5, 6]) & (player_weeks["player_id"] == "BBB-RB1")
    )
    player_weeks.loc[test_games, "player_id"] = "NEW-TEST"
    player_weeks.loc[calibration_games, "player_id"] = "NEW-CALIBRATION"
    return player_weeks, schedule


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build_dataset(*league_with_new_players(), calibration_weeks=2, test_start_week=7)


def quantile_values(table: pd.DataFrame) -> np.ndarray:
    return table[QUANTILE_COLUMNS].to_numpy()


# --- player codes and settings --------------------------------------------------------------


def test_player_codes_unseen_test_player(dataset):
    codes, players = phases.player_codes(dataset, "test")
    test_players = dataset.test["player_id"].to_numpy()

    assert players == sorted(dataset.train["player_id"].unique())
    assert "NEW-TEST" in test_players
    np.testing.assert_array_equal(codes == -1, test_players == "NEW-TEST")
    for code, player in zip(codes, test_players, strict=True):
        if code >= 0:
            assert players[code] == player


def test_player_codes_unseen_calibration_player(dataset):
    codes, _ = phases.player_codes(dataset, "calibration")
    calibration_players = dataset.calibration["player_id"].to_numpy()
    assert "NEW-CALIBRATION" in calibration_players
    np.testing.assert_array_equal(codes == -1, calibration_players == "NEW-CALIBRATION")


def test_player_codes_training_rows_all_seen(dataset):
    codes, players = phases.player_codes(dataset, "train")
    assert codes.min() == 0
    np.testing.assert_array_equal(np.asarray(players)[codes], dataset.train["player_id"])


def test_model_settings_quick():
    params = load_params("quick", PARAMS_DIR)

    assert phases.model_settings("phase1", params) == {"hidden_units": 16, "sigma_prior": 0.3}
    assert phases.model_settings("phase2_1", params) == {
        "hidden_units": 24,
        "nu": 4.0,
        "sigma_prior": 20.0,
        "weight_sd": 1.0,
        "bias_sd": 10.0,
    }
    assert phases.model_settings("phase2_2", params) == {
        "experts": 3,
        "hidden_units": 16,
        "sigma_priors": [10.0, 15.0, 20.0],
        "nu": 4.0,
    }


def test_model_settings_phase2_2_takes_nu():
    params = load_params("quick", PARAMS_DIR, {"phases.phase2_1.nu": 7.0})
    assert phases.model_settings("phase2_2", params)["nu"] == 7.0


# --- model building -------------------------------------------------------------------------


def sigma_prior_logp(model: pm.Model, sigma: np.ndarray) -> np.ndarray:
    """Return the prior log-density of ``sigma`` (no Jacobian) element by element."""
    logp = model.logp(vars=[model["sigma"]], jacobian=False, sum=False)[0]
    function = model.compile_fn(logp, point_fn=True, mode="FAST_COMPILE")
    return np.asarray(function({"sigma_log__": np.log(sigma)}))


@pytest.mark.parametrize("phase", models.PHASES)
def test_build_model_uses_training_rows(phase, dataset):
    settings = SETTINGS[phase]

    model = phases.build_model(phase, dataset, settings)

    observed = model.rvs_to_values[model["y"]].eval()
    np.testing.assert_allclose(observed, dataset.y_model("train"))
    assert len(model.coords["feature"]) == len(dataset.feature_names)
    assert len(model.coords["hidden"]) == settings["hidden_units"]
    if phase == "phase1":
        n_players = dataset.train["player_id"].nunique()
        assert len(model.coords["player"]) == n_players
        sigma, expected = np.array(0.4), stats.halfnorm.logpdf(0.4, scale=0.3)
    elif phase == "phase2_1":
        sigma, expected = np.array(0.4), stats.halfnorm.logpdf(0.4, scale=1.0)
    else:
        assert len(model.coords["expert"]) == 3
        sigma = np.array([0.4, 0.4, 0.4])
        expected = stats.halfnorm.logpdf(sigma, scale=settings["sigma_priors"])
    np.testing.assert_allclose(sigma_prior_logp(model, sigma), expected, rtol=1e-9)


def test_build_model_unknown_phase(dataset):
    with pytest.raises(ValueError, match="unknown phase 'phase9'"):
        phases.build_model("phase9", dataset, {})


# --- forecasts on synthetic posteriors ------------------------------------------------------


@pytest.mark.parametrize("phase", models.PHASES)
def test_forecast_shapes_and_rows(phase, dataset):
    posterior = synthetic_posterior(phase, dataset)
    n_rows = len(dataset.test)

    forecast = phases.forecast(
        phase, posterior, dataset, "test", SETTINGS[phase], max_samples=100, seed=1
    )

    assert forecast.role == "test"
    np.testing.assert_array_equal(forecast.row_ids, dataset.test["row_id"])
    # 100 samples over 2 chains: 50 draws of each.
    assert forecast.predictive_yards.shape == (100, n_rows)
    assert forecast.location_model_scale.shape == (100, n_rows)
    np.testing.assert_allclose(
        forecast.mean_only_yards, np.exp(forecast.location_model_scale) - dataset.log_shift
    )
    assert np.all(forecast.predictive_yards > -dataset.log_shift)
    if phase == "phase2_2":
        assert forecast.extras["gate"].shape == (100, n_rows, 3)
    else:
        assert forecast.extras == {}


def test_location_by_chain_uses_every_draw(dataset):
    posterior = synthetic_posterior("phase2_1", dataset, chains=2, draws=200)
    n_rows = len(dataset.test)

    medians = phases.location_by_chain(
        "phase2_1", posterior, dataset, "test", SETTINGS["phase2_1"], seed=1
    )

    # All 2 x 200 draws, not the thinned draws that forecasts keep.
    assert medians.shape == (2, 200, n_rows)
    expected = models.phase2_1_location(posterior, dataset.X("test")).reshape(2, 200, n_rows)
    np.testing.assert_allclose(medians, expected)
    # Chain 1's draws come after chain 0's: its first draw is posterior draw (1, 0).
    first_of_chain_1 = models.phase2_1_location(
        posterior.isel(chain=[1], draw=[0]), dataset.X("test")
    )
    np.testing.assert_allclose(medians[1, 0], first_of_chain_1[0])


def test_forecast_same_seed_same_draws(dataset):
    posterior = synthetic_posterior("phase1", dataset)
    settings = SETTINGS["phase1"]

    first = phases.forecast("phase1", posterior, dataset, "test", settings, max_samples=80, seed=3)
    again = phases.forecast("phase1", posterior, dataset, "test", settings, max_samples=80, seed=3)
    other = phases.forecast("phase1", posterior, dataset, "test", settings, max_samples=80, seed=4)

    np.testing.assert_array_equal(first.predictive_yards, again.predictive_yards)
    assert not np.allclose(first.predictive_yards, other.predictive_yards)


def test_forecast_unseen_player_location_varies(dataset):
    # With identical draws, only the population effect of an unseen player makes the
    # conditional median vary across draws.
    posterior = synthetic_posterior("phase1", dataset, chains=1, draws=1)
    posterior = posterior.isel(draw=np.zeros(400, dtype=int))
    posterior = posterior.assign_coords(draw=np.arange(400))

    forecast = phases.forecast(
        "phase1", posterior, dataset, "test", SETTINGS["phase1"], max_samples=400, seed=2
    )

    unseen = (dataset.test["player_id"] == "NEW-TEST").to_numpy()
    spread = forecast.location_model_scale.std(axis=0)
    player_sd = float(posterior["player_sd"].values[0, 0])
    np.testing.assert_allclose(spread[unseen], player_sd, rtol=0.15)
    np.testing.assert_allclose(spread[~unseen], 0.0, atol=1e-10)


@pytest.mark.parametrize("phase", models.PHASES)
def test_score_phase_mean_only_narrower(phase, dataset):
    posterior = synthetic_posterior(phase, dataset)
    forecast = phases.forecast(
        phase, posterior, dataset, "test", SETTINGS[phase], max_samples=400, seed=5
    )

    predictive = phases.score_phase(forecast, dataset, LEVELS)
    mean_only = phases.score_phase(forecast, dataset, LEVELS, mean_only=True)

    for label in ("50", "80", "90"):
        assert np.all(mean_only[f"width_{label}"] < predictive[f"width_{label}"])
    np.testing.assert_allclose(predictive["median"], np.median(forecast.predictive_yards, axis=0))
    np.testing.assert_allclose(mean_only["median"], np.median(forecast.mean_only_yards, axis=0))


def test_prediction_table_synthetic(dataset):
    posterior = synthetic_posterior("phase2_2", dataset)
    forecast = phases.forecast(
        "phase2_2", posterior, dataset, "test", SETTINGS["phase2_2"], max_samples=200, seed=6
    )
    per_row = phases.score_phase(forecast, dataset, LEVELS)

    table = phases.prediction_table(forecast, dataset, per_row)

    assert len(table) == len(dataset.test)
    assert list(table.columns[: len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    assert set(QUANTILE_COLUMNS) <= set(table.columns)
    assert {"median", "crps", "covered_90", "width_90", "pit"} <= set(table.columns)
    np.testing.assert_array_equal(table["row_id"], dataset.test["row_id"])
    np.testing.assert_array_equal(table["rushing_yards"], dataset.test["rushing_yards"])
    assert np.all(np.diff(quantile_values(table), axis=1) >= 0)
    np.testing.assert_allclose(table["q0.500"], table["median"])


# --- forecasts on a sampled posterior -------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_phase2_1(dataset) -> xr.Dataset:
    """Posterior of a tiny phase 2.1 model, 2 chains of 30 draws sampled with NumPyro."""
    model = phases.build_model("phase2_1", dataset, SETTINGS["phase2_1"])
    settings = sampling.SamplerSettings(
        backend="numpyro", chains=2, tune=30, draws=30, seed=5, max_treedepth=6
    )
    idata, _ = sampling.sample_posterior(model, settings, progressbar=False)
    return idata.posterior


@pytest.mark.slow
def test_fitted_forecast_scores_and_table(fitted_phase2_1, dataset):
    forecast = phases.forecast(
        "phase2_1", fitted_phase2_1, dataset, "test", SETTINGS["phase2_1"], max_samples=60, seed=0
    )
    predictive = phases.score_phase(forecast, dataset, LEVELS)
    mean_only = phases.score_phase(forecast, dataset, LEVELS, mean_only=True)
    table = phases.prediction_table(forecast, dataset, predictive)

    assert forecast.predictive_yards.shape == (60, len(dataset.test))
    quantiles = quantile_values(table)
    assert np.all(np.diff(quantiles, axis=1) >= 0)
    median = np.median(forecast.predictive_yards, axis=0)
    np.testing.assert_allclose(table["q0.500"], median)
    np.testing.assert_allclose(predictive["median"], median)
    assert np.all(mean_only["width_90"] < predictive["width_90"])
    # A fit that learned the level of the data gives medians of plausible yards for every row.
    assert np.all((median > 0) & (median < 200))
    lower, upper = table["q0.050"], table["q0.950"]
    covered = (dataset.test["rushing_yards"].to_numpy() >= lower) & (
        dataset.test["rushing_yards"].to_numpy() <= upper
    )
    np.testing.assert_array_equal(predictive["covered_90"].to_numpy(), covered.to_numpy())
