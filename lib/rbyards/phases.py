"""One Bayesian phase from dataset to scored forecasts: the steps the phase notebooks call.

A phase notebook runs ``build_model`` -> ``sample_posterior`` -> ``forecast`` ->
``score_phase`` and writes the outputs. Keeping the steps here lets the notebooks stay short
and lets the benchmark and the tests run exactly what the notebooks run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from rbyards import evaluation, models
from rbyards.features import Dataset

logger = logging.getLogger(__name__)


def model_settings(phase: str, params: Any) -> dict[str, Any]:
    """Return the model settings of a phase from validated parameters, as a plain dict."""
    section = getattr(params.phases, phase).model_dump()
    section.pop("enabled", None)
    section.pop("sampler", None)
    if phase == "phase2_2":
        section.setdefault("nu", params.phases.phase2_1.nu)
    return section


def player_codes(dataset: Dataset, role: str) -> tuple[np.ndarray, list[str]]:
    """Return each row's training-player code (-1 for players unseen in training) and the ids."""
    players = sorted(dataset.train["player_id"].unique())
    lookup = {player: code for code, player in enumerate(players)}
    codes = dataset.rows(role)["player_id"].map(lookup).fillna(-1).astype(int).to_numpy()
    return codes, players


def build_model(phase: str, dataset: Dataset, settings: Mapping[str, Any]) -> pm.Model:
    """Build a phase's PyMC model on the dataset's training rows."""
    X, y_model = dataset.X("train"), dataset.y_model("train")  # noqa: N806
    if phase == "phase1":
        codes, players = player_codes(dataset, "train")
        return models.build_phase1_model(
            X,
            y_model,
            codes,
            len(players),
            hidden_units=settings["hidden_units"],
            sigma_prior=settings["sigma_prior"],
        )
    if phase == "phase2_1":
        return models.build_phase2_1_model(
            X,
            y_model,
            hidden_units=settings["hidden_units"],
            nu=settings["nu"],
            sigma_prior=settings["sigma_prior"],
            weight_sd=settings["weight_sd"],
            bias_sd=settings["bias_sd"],
        )
    if phase == "phase2_2":
        return models.build_phase2_2_model(
            X,
            y_model,
            experts=settings["experts"],
            hidden_units=settings["hidden_units"],
            sigma_priors=tuple(settings["sigma_priors"]),
            nu=settings["nu"],
        )
    raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(models.PHASES)}")


@dataclass
class PhaseForecast:
    """Forecasts of one phase for the rows of one role, in yards unless named otherwise."""

    role: str
    row_ids: np.ndarray
    predictive_yards: np.ndarray
    """Posterior predictive draws (location plus noise), shape (samples, rows)."""
    location_model_scale: np.ndarray
    """Each draw's conditional predictive median on the log scale, shape (samples, rows)."""
    mean_only_yards: np.ndarray
    """The network mean alone mapped to yards, shape (samples, rows): no likelihood noise."""
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def forecast(
    phase: str,
    posterior: xr.Dataset,
    dataset: Dataset,
    role: str,
    settings: Mapping[str, Any],
    *,
    max_samples: int,
    seed: int,
) -> PhaseForecast:
    """Draw a phase's posterior predictive for one role's rows from (thinned) posterior draws."""
    thinned = models.thin_posterior(posterior, max_samples)
    rng = np.random.default_rng(seed)
    codes, player_ids = None, None
    if phase == "phase1":
        codes = player_codes(dataset, role)[0]
        player_ids = dataset.rows(role)["player_id"].to_numpy()
    draws = models.predictive_draws_model_scale(
        phase, thinned, dataset.X(role), settings, rng, player_idx=codes, player_ids=player_ids
    )
    extras = {key: value for key, value in draws.items() if key not in ("predictive", "location")}
    return PhaseForecast(
        role=role,
        row_ids=dataset.rows(role)["row_id"].to_numpy(),
        predictive_yards=models.to_yards(draws["predictive"], dataset.log_shift),
        location_model_scale=draws["location"],
        mean_only_yards=models.to_yards(draws["location"], dataset.log_shift),
        extras=extras,
    )


def location_by_chain(
    phase: str,
    posterior: xr.Dataset,
    dataset: Dataset,
    role: str,
    settings: Mapping[str, Any],
    *,
    seed: int,
) -> np.ndarray:
    """Compute every kept draw's predictive median for a role's rows, shape (chain, draw, rows).

    The convergence gate reads these, not the thinned draws that :func:`forecast` keeps for
    intervals, because R-hat from thinned draws is noisier and their bulk ESS is lower.
    """
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    every_draw = forecast(
        phase, posterior, dataset, role, settings, max_samples=n_chains * n_draws, seed=seed
    )
    return every_draw.location_model_scale.reshape(n_chains, n_draws, -1)


def score_phase(
    forecast_: PhaseForecast,
    dataset: Dataset,
    levels: tuple[float, ...],
    *,
    mean_only: bool = False,
) -> pd.DataFrame:
    """Score a forecast on its rows with the shared evaluation code.

    With ``mean_only`` the intervals come from the network mean alone, as the original study
    built them; otherwise from the full posterior predictive. CRPS uses the quantile-grid
    estimator of the baselines, so every model's CRPS is computed the same way.
    """
    rows = dataset.rows(forecast_.role)
    draws = forecast_.mean_only_yards if mean_only else forecast_.predictive_yards
    return evaluation.score_forecast(
        rows["rushing_yards"].to_numpy(dtype=float),
        draws=draws.T,
        levels=levels,
        row_ids=rows["row_id"].to_numpy(),
        crps_estimator="quantile_grid",
    )


def prediction_table(
    forecast_: PhaseForecast, dataset: Dataset, per_row: pd.DataFrame
) -> pd.DataFrame:
    """Return the per-row prediction file: identifiers, outcome, quantile grid and scores."""
    rows = dataset.rows(forecast_.role).reset_index(drop=True)
    quantiles = evaluation.quantile_frame(
        evaluation.quantiles_from_draws(forecast_.predictive_yards.T),
        evaluation.QUANTILE_LEVELS,
    )
    table = rows[
        ["row_id", "player_id", "player_name", "season", "week", "rushing_yards", "tier"]
    ].copy()
    table = pd.concat([table, evaluation.to_prediction_columns(quantiles)], axis=1)
    scores = per_row.reset_index(drop=True).drop(columns=["row_id"], errors="ignore")
    return pd.concat([table, scores], axis=1)
