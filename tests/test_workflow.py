"""Tests of the notebook steps: row-set hashes, prediction and posterior files, the forecaster.

Saved posteriors are synthetic (fixed random parameters with each phase model's dims), so the
round trip from ``save_posterior`` through :class:`rbyards.workflow.Forecaster` runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import SMALL_MODEL_SETTINGS as SETTINGS
from conftest import make_league, synthetic_posterior
from rbyards import evaluation, models, phases, provenance, workflow
from rbyards.features import Dataset, build_dataset
from rbyards.params import Params, load_params

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """Default league with AAA-RB1's test games given to a player who has no training rows."""
    player_weeks, schedule = make_league()
    new_player = (
        (player_weeks["season"] == 2024)
        & (player_weeks["week"] >= 7)
        & (player_weeks["player_id"] == "AAA-RB1")
    )
    player_weeks.loc[new_player, "player_id"] = "NEW-TEST"
    return build_dataset(player_weeks, schedule, calibration_weeks=2, test_start_week=7)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params("quick", PARAMS_DIR)


@pytest.fixture
def data_files(tmp_path) -> dict[str, Path]:
    """Two small stand-ins for nflverse files, for the checksums of saved posteriors."""
    files = {}
    for name, text in (("player_stats_2024.csv", "a,b\n1,2\n"), ("games.csv", "game\nx\n")):
        path = tmp_path / name
        path.write_text(text)
        files[name] = path
    return files


def synthetic_idata(phase: str, dataset: Dataset, chains: int = 2, draws: int = 100):
    """Return InferenceData with a posterior of random parameters and matching sample stats."""
    posterior = synthetic_posterior(phase, dataset, seed=len(phase), chains=chains, draws=draws)
    diverging = np.zeros((chains, draws), dtype=bool)
    sample_stats = xr.Dataset({"diverging": (("chain", "draw"), diverging)})
    return az.InferenceData(posterior=posterior, sample_stats=sample_stats)


def save_synthetic_posterior(
    phase: str, dataset: Dataset, params: Params, data_files: dict, folder: Path
) -> tuple[Path, az.InferenceData]:
    """Save a synthetic posterior as ``folder/<phase>.nc`` and return the path and the data."""
    idata = synthetic_idata(phase, dataset)
    path = workflow.save_posterior(
        idata,
        folder / f"{phase}.nc",
        phase=phase,
        settings=SETTINGS[phase],
        dataset=dataset,
        params=params,
        data_files=data_files,
    )
    return path, idata


# --- row sets -------------------------------------------------------------------------------


def test_row_set_summary_order_independent():
    rows = ["P1_2024_07", "P2_2024_07", "P1_2024_08"]
    summary = workflow.row_set_summary(rows)
    assert summary["count"] == 3
    assert workflow.row_set_summary(list(reversed(rows))) == summary
    assert workflow.row_set_summary(pd.Index(rows[1:] + rows[:1])) == summary


def test_row_set_summary_detects_changes():
    rows = ["P1_2024_07", "P2_2024_07", "P1_2024_08"]
    summary = workflow.row_set_summary(rows)
    changed = workflow.row_set_summary(["P1_2024_07", "P2_2024_07", "P1_2024_09"])
    shorter = workflow.row_set_summary(rows[:2])
    assert changed["count"] == 3
    assert changed["sha256"] != summary["sha256"]
    assert shorter["count"] == 2
    assert shorter["sha256"] != summary["sha256"]


def test_row_set_summary_hash_value():
    expected = hashlib.sha256(b"a\nb\nc").hexdigest()
    assert workflow.row_set_summary(["c", "a", "b"])["sha256"] == expected


# --- prediction and posterior files ---------------------------------------------------------


def test_write_predictions_round_trip(tmp_path):
    table = pd.DataFrame(
        {
            "row_id": ["P1_2024_07", "P2_2024_07"],
            "season": [2024, 2024],
            "rushing_yards": [54.0, -3.0],
            "q0.500": [48.25, 12.5],
            "covered_90": [True, False],
        }
    )
    path = workflow.write_predictions(table, tmp_path / "phase2_1.seed.parquet")

    assert path == tmp_path / "phase2_1.seed.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)
    assert sorted(item.name for item in tmp_path.iterdir()) == ["phase2_1.seed.parquet"]


def test_save_posterior_round_trip(tmp_path, dataset, params, data_files):
    path, idata = save_synthetic_posterior("phase1", dataset, params, data_files, tmp_path)

    loaded = az.from_netcdf(str(path), engine="h5netcdf")

    for name in idata.posterior.data_vars:
        np.testing.assert_array_equal(loaded.posterior[name].values, idata.posterior[name].values)
    np.testing.assert_array_equal(
        loaded.sample_stats["diverging"].values, idata.sample_stats["diverging"].values
    )
    attrs = loaded.posterior.attrs
    assert attrs["phase"] == "phase1"
    assert attrs["feature_set"] == "seed"
    assert json.loads(attrs["model_settings"]) == SETTINGS["phase1"]
    assert json.loads(attrs["feature_names"]) == list(dataset.feature_names)
    np.testing.assert_array_equal(json.loads(attrs["feature_means"]), dataset.feature_means)
    assert float(attrs["log_shift"]) == dataset.log_shift
    training_players = sorted(dataset.train["player_id"].unique())
    assert json.loads(attrs["training_players"]) == training_players
    assert "NEW-TEST" not in training_players
    assert json.loads(attrs["sampler_settings"]) == params.sampler.model_dump()
    assert not any(item.name.startswith(".") for item in tmp_path.iterdir())


def test_save_posterior_input_hash(tmp_path, dataset, params, data_files):
    path, _ = save_synthetic_posterior("phase2_1", dataset, params, data_files, tmp_path)
    first = workflow.Forecaster(path).input_hash
    path, _ = save_synthetic_posterior("phase2_1", dataset, params, data_files, tmp_path)
    repeated = workflow.Forecaster(path).input_hash
    data_files["games.csv"].write_text("game\ny\n")
    path, _ = save_synthetic_posterior("phase2_1", dataset, params, data_files, tmp_path)
    changed = workflow.Forecaster(path).input_hash

    assert len(first) == 64
    assert repeated == first
    assert changed != first


# --- forecaster -----------------------------------------------------------------------------


@pytest.mark.parametrize("phase", models.PHASES)
def test_forecaster_reproduces_saved_forecasts(phase, tmp_path, dataset, params, data_files):
    path, idata = save_synthetic_posterior(phase, dataset, params, data_files, tmp_path)
    forecast = phases.forecast(
        phase, idata.posterior, dataset, "test", SETTINGS[phase], max_samples=150, seed=9
    )
    per_row = phases.score_phase(forecast, dataset, (0.5, 0.9))
    table = phases.prediction_table(forecast, dataset, per_row)

    forecaster = workflow.Forecaster(path)
    quantiles = forecaster.forecast(dataset.test, max_samples=150, seed=9)

    assert forecaster.phase == phase
    assert len(quantiles) == len(dataset.test)
    np.testing.assert_array_equal(quantiles.index, dataset.test.index)
    np.testing.assert_allclose(quantiles.columns.to_numpy(), evaluation.QUANTILE_LEVELS)
    columns = [evaluation.quantile_column_name(level) for level in evaluation.QUANTILE_LEVELS]
    np.testing.assert_allclose(quantiles.to_numpy(), table[columns].to_numpy(), rtol=1e-12)


def test_forecaster_fills_missing_features(tmp_path, dataset, params, data_files):
    path, _ = save_synthetic_posterior("phase2_1", dataset, params, data_files, tmp_path)
    forecaster = workflow.Forecaster(path)
    rows = dataset.test.head(3).copy()
    filled = rows.copy()
    rows.loc[rows.index[0], "avg_rushing_l3"] = np.nan
    filled.loc[filled.index[0], "avg_rushing_l3"] = dataset.fill_values["avg_rushing_l3"]

    from_missing = forecaster.forecast(rows, levels=(0.1, 0.5, 0.9), max_samples=50, seed=1)
    from_filled = forecaster.forecast(filled, levels=(0.1, 0.5, 0.9), max_samples=50, seed=1)

    pd.testing.assert_frame_equal(from_missing, from_filled)
    assert np.all(from_missing.notna())


def test_forecaster_rejects_bad_input(tmp_path, dataset, params, data_files):
    with pytest.raises(FileNotFoundError, match="no saved posterior"):
        workflow.Forecaster(tmp_path / "missing.nc")
    path, _ = save_synthetic_posterior("phase1", dataset, params, data_files, tmp_path)
    forecaster = workflow.Forecaster(path)
    with pytest.raises(ValueError, match="rows lack the feature columns \\['season_avg'\\]"):
        forecaster.forecast(dataset.test.drop(columns=["season_avg"]))
    with pytest.raises(ValueError, match="phase1 forecasts need a player_id column"):
        forecaster.forecast(dataset.test.drop(columns=["player_id"]))


# --- result files ---------------------------------------------------------------------------


def test_write_result_fields(tmp_path, data_files):
    result = {"status": "ok", "phase": "phase2_1", "metrics": {"coverage_90": 0.87, "mae": 17.5}}

    path = workflow.write_result(tmp_path, "quick", "phase2_1.seed", result, data_files)

    assert path == tmp_path / "quick" / "results" / "phase2_1.seed.json"
    written = json.loads(path.read_text())
    assert written["status"] == "ok"
    assert written["phase"] == "phase2_1"
    assert written["metrics"] == {"coverage_90": 0.87, "mae": 17.5}
    assert written["run_id"] == "phase2_1.seed"
    assert written["profile"] == "quick"
    checksums = written["provenance"]["data_files"]
    expected = hashlib.sha256(data_files["games.csv"].read_bytes()).hexdigest()
    assert checksums["games.csv"] == expected
    assert set(checksums) == set(data_files)
    assert "packages" in written["provenance"]
    assert [item.name for item in path.parent.iterdir()] == ["phase2_1.seed.json"]


def test_write_result_atomic_on_failure(tmp_path):
    path = workflow.write_result(tmp_path, "quick", "phase1.seed", {"status": "ok"}, None)
    before = path.read_text()

    with pytest.raises(TypeError):
        workflow.write_result(
            tmp_path, "quick", "phase1.seed", {"status": "ok", "x": object()}, None
        )

    # The failed write leaves the earlier file whole and no temporary file behind.
    assert path.read_text() == before
    assert [item.name for item in path.parent.iterdir()] == ["phase1.seed.json"]


def test_write_result_replaces_through_temporary(tmp_path, monkeypatch):
    path = workflow.write_result(tmp_path, "quick", "phase1.seed", {"status": "ok"}, None)
    before = path.read_text()
    renames = []

    def failing_replace(source, target):
        renames.append((Path(source), Path(target)))
        raise OSError("simulated failure of the final rename")

    monkeypatch.setattr(provenance.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated failure"):
        workflow.write_result(tmp_path, "quick", "phase1.seed", {"status": "failed"}, None)

    # The new content went to a temporary file in the same folder, never to the target.
    assert len(renames) == 1
    source, target = renames[0]
    assert target == path
    assert source.parent == path.parent
    assert source != path
    assert path.read_text() == before
    assert [item.name for item in path.parent.iterdir()] == ["phase1.seed.json"]
