"""Steps shared by the notebooks: set-up, data loading, result assembly and posterior files."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from rbyards import data, evaluation, features, models, provenance
from rbyards.params import Params, load_params

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OutputPaths:
    """Folders of one profile's outputs, created on first use."""

    root: Path

    def folder(self, name: str) -> Path:
        """Return ``<root>/<name>``, creating it when missing."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def results(self) -> Path:
        return self.folder("results")

    @property
    def figures(self) -> Path:
        return self.folder("figures")

    @property
    def tables(self) -> Path:
        return self.folder("tables")

    @property
    def models(self) -> Path:
        return self.folder("models")

    @property
    def predictions(self) -> Path:
        return self.folder("predictions")


def setup(
    profile: str, params_dir: str | Path, output_root: str | Path, overrides: Mapping | None
) -> tuple[Params, OutputPaths]:
    """Load and validate the profile's parameters and return them with the output folders."""
    # Log lines go to stdout, which the runner shows as notebook output and `--quiet` hides;
    # stderr would label every line a warning.
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Matplotlib's PDF backend logs every font subset at INFO through fontTools.
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    params = load_params(profile, params_dir, dict(overrides or {}))
    if params.sampler.backend != "pymc":
        # Only PyMC's own C backend uses BLAS; NumPyro and nutpie compile with JAX or numba.
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    return params, OutputPaths(Path(output_root).resolve() / profile)


def load_dataset(params: Params, feature_set: str) -> tuple[features.Dataset, dict[str, Path]]:
    """Load the nflverse files named by the parameters and build one feature set's dataset.

    Returns the dataset and the data files used (name to path), for the result's checksums.
    """
    data_dir = data.resolve_data_dir(params.data.nflverse_dir)
    player_weeks = data.load_player_weeks(
        data_dir, params.data.seasons, download=params.data.download
    )
    schedule = data.load_schedule(data_dir, download=params.data.download)
    dataset = features.build_dataset(
        player_weeks,
        schedule,
        min_carries=params.data.min_carries,
        test_season=params.split.test_season,
        test_start_week=params.split.test_start_week,
        feature_set=feature_set,
        calibration_weeks=params.split.calibration_weeks,
        log_shift=params.features.log_shift,
    )
    seasons = sorted(int(season) for season in player_weeks["season"].unique())
    files = {
        path.name: path
        for path in [data.find_player_file(data_dir, season) for season in seasons]
        + [data.find_schedule_file(data_dir)]
        if path is not None
    }
    return dataset, files


def row_set_summary(row_ids: Any) -> dict[str, Any]:
    """Return the count and SHA-256 of a set of row ids, to check that models share rows."""
    ordered = sorted(str(row_id) for row_id in row_ids)
    digest = hashlib.sha256("\n".join(ordered).encode()).hexdigest()
    return {"count": len(ordered), "sha256": digest}


def evaluate_rows(
    per_row: pd.DataFrame, rows: pd.DataFrame, params: Params, quantiles: pd.DataFrame
) -> dict[str, Any]:
    """Summarise per-row scores with player-bootstrap intervals, tiers and a calibration curve.

    ``quantiles`` are the rows' predictive quantiles on the shared grid (columns are levels).
    """
    players = rows["player_id"].to_numpy()
    intervals = evaluation.bootstrap_by_player(
        per_row,
        players,
        n_boot=params.evaluation.bootstrap_replicates,
        seed=params.evaluation.bootstrap_seed,
    )
    curve = evaluation.calibration_curve(
        rows["rushing_yards"].to_numpy(dtype=float), quantiles=quantiles
    )
    return {
        "metrics": evaluation.summarize(per_row),
        "metric_intervals": {key: list(bounds) for key, bounds in intervals.items()},
        "metrics_by_tier": evaluation.metrics_by_tier(per_row, rows["tier"].to_numpy()),
        "calibration_curve": curve.to_dict(orient="list"),
    }


def write_predictions(table: pd.DataFrame, path: Path) -> Path:
    """Write a prediction table as Parquet through a temporary file."""
    temporary = path.with_name(f".{path.name}.tmp")
    table.to_parquet(temporary, index=False)
    temporary.replace(path)
    return path


def save_posterior(
    idata: az.InferenceData,
    path: Path,
    *,
    phase: str,
    settings: Mapping[str, Any],
    dataset: features.Dataset,
    params: Params,
    data_files: Mapping[str, Path],
) -> Path:
    """Save a fitted posterior as netCDF with what is needed to forecast new rows.

    The file's attributes hold the phase, model and sampler settings, the feature names with
    their training means and scales, the log shift, the training players (phase 1) and a hash
    of the inputs (data file checksums plus parameters).
    """
    checksums = {name: provenance.sha256_file(file) for name, file in data_files.items()}
    input_hash = hashlib.sha256(
        json.dumps({"data": checksums, "params": params.model_dump()}, sort_keys=True).encode()
    ).hexdigest()
    attrs = {
        "phase": phase,
        "feature_set": dataset.feature_set,
        "model_settings": json.dumps(dict(settings)),
        "sampler_settings": json.dumps(params.sampler_for(phase).model_dump()),
        "feature_names": json.dumps(list(dataset.feature_names)),
        "feature_means": json.dumps(list(dataset.feature_means)),
        "feature_scales": json.dumps(list(dataset.feature_scales)),
        "fill_values": json.dumps(dict(dataset.fill_values)),
        "log_shift": float(dataset.log_shift),
        "training_players": json.dumps(sorted(dataset.train["player_id"].unique().tolist())),
        "input_hash": input_hash,
        "parameters": json.dumps(params.model_dump()),
    }
    to_save = az.InferenceData(posterior=idata.posterior, sample_stats=idata.sample_stats)
    for group in to_save.groups():
        to_save[group].attrs.update(attrs)
    temporary = path.with_name(f".{path.name}.tmp")
    to_save.to_netcdf(str(temporary), engine="h5netcdf")
    temporary.replace(path)
    return path


class Forecaster:
    """A saved posterior that forecasts new rows without refitting.

    Parameters
    ----------
    path : str or Path
        netCDF file written by :func:`save_posterior`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"no saved posterior at {self.path}; run the phase notebook first"
            )
        self.idata = az.from_netcdf(str(self.path), engine="h5netcdf")
        attrs = self.idata.posterior.attrs
        self.phase = str(attrs["phase"])
        self.settings = json.loads(attrs["model_settings"])
        self.feature_names = json.loads(attrs["feature_names"])
        self.feature_means = np.asarray(json.loads(attrs["feature_means"]))
        self.feature_scales = np.asarray(json.loads(attrs["feature_scales"]))
        self.fill_values = json.loads(attrs["fill_values"])
        self.log_shift = float(attrs["log_shift"])
        self.training_players = json.loads(attrs["training_players"])
        self.input_hash = str(attrs["input_hash"])

    def forecast(
        self,
        rows: pd.DataFrame,
        *,
        levels: tuple[float, ...] = tuple(evaluation.QUANTILE_LEVELS),
        max_samples: int = 1000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Return predictive quantiles in yards for new rows (one row per game).

        ``rows`` needs the feature columns of the saved model (and ``player_id`` for phase 1).
        Missing feature values are filled with the training medians stored with the model.
        """
        missing = [name for name in self.feature_names if name not in rows.columns]
        if missing:
            raise ValueError(
                f"rows lack the feature columns {missing}; build them with "
                "rbyards.features.build_dataset or supply them"
            )
        values = rows[self.feature_names].astype(float).fillna(self.fill_values)
        X = (values.to_numpy() - self.feature_means) / self.feature_scales  # noqa: N806
        player_idx, player_ids = None, None
        if self.phase == "phase1":
            if "player_id" not in rows.columns:
                raise ValueError("phase1 forecasts need a player_id column")
            lookup = {player: code for code, player in enumerate(self.training_players)}
            player_idx = rows["player_id"].map(lookup).fillna(-1).astype(int).to_numpy()
            player_ids = rows["player_id"].to_numpy()
        posterior = models.thin_posterior(self.idata.posterior, max_samples)
        draws = models.predictive_draws_model_scale(
            self.phase,
            posterior,
            X,
            self.settings,
            np.random.default_rng(seed),
            player_idx=player_idx,
            player_ids=player_ids,
        )
        # Take quantiles of the yards draws, as the phase prediction files do, because linear
        # interpolation between draws on the log scale gives slightly different values.
        predictive_yards = models.to_yards(draws["predictive"], self.log_shift)
        quantiles = np.quantile(predictive_yards, levels, axis=0).T
        return evaluation.quantile_frame(quantiles, levels, index=rows.index)


def write_result(
    output_root: str | Path,
    profile: str,
    run_id: str,
    result: Mapping[str, Any],
    data_files: Mapping[str, Path] | None,
) -> Path:
    """Write a run's result file with provenance (package versions, data checksums, commit)."""
    return provenance.write_result(
        output_root, profile, run_id, result, data_files=data_files, repo_root=REPO_ROOT
    )
