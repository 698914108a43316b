"""Shared fixtures: the real nflverse folder and a small synthetic league.

``make_league`` builds a player-week frame and a schedule in the canonical shape of
``rbyards.data.load_player_weeks`` and ``rbyards.data.load_schedule``, so tests can call
``rbyards.features.build_dataset`` without real data. Use the ``league`` fixture for the default
league, or ``league_factory`` to choose seasons and weeks. ``synthetic_posterior`` gives
random parameter draws shaped like a phase model's posterior, for forecasting without sampling.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from rbyards.data import discover_seasons, find_schedule_file

# Small phase models for fast tests: 4 hidden units and noise priors sized for log-scale
# residuals, keyed by phase as rbyards.phases.model_settings returns them.
SMALL_MODEL_SETTINGS = {
    "phase1": {"hidden_units": 4, "sigma_prior": 0.3},
    "phase2_1": {
        "hidden_units": 4,
        "nu": 4.0,
        "sigma_prior": 1.0,
        "weight_sd": 1.0,
        "bias_sd": 10.0,
    },
    "phase2_2": {"experts": 3, "hidden_units": 4, "sigma_priors": [0.5, 1.0, 1.5], "nu": 4.0},
}


def synthetic_posterior(
    phase: str, dataset, seed: int = 0, chains: int = 2, draws: int = 200
) -> xr.Dataset:
    """Return a posterior of fixed-scale random parameters with the phase model's dims.

    Weights are small and the output bias is the training mean of the log-scale outcome, so
    forecasts stay near real yards.
    """
    rng = np.random.default_rng(seed)
    settings = SMALL_MODEL_SETTINGS[phase]
    n_features = len(dataset.feature_names)
    hidden = settings["hidden_units"]
    center = float(dataset.y_model("train").mean())

    def normal(scale: float, *shape: int) -> np.ndarray:
        return rng.normal(0.0, scale, size=(chains, draws, *shape))

    def positive(scale: float, *shape: int) -> np.ndarray:
        return scale * np.exp(normal(0.1, *shape))

    lead = ("chain", "draw")
    if phase == "phase2_2":
        experts = settings["experts"]
        variables = {
            "gate_w": ((*lead, "feature", "gated_expert"), normal(0.3, n_features, experts - 1)),
            "gate_b": ((*lead, "gated_expert"), normal(0.3, experts - 1)),
            "w_in": (
                (*lead, "expert", "feature", "hidden"),
                normal(0.2, experts, n_features, hidden),
            ),
            "b_in": ((*lead, "expert", "hidden"), normal(0.2, experts, hidden)),
            "w_out": ((*lead, "expert", "hidden"), normal(0.05, experts, hidden)),
            "b_out": ((*lead, "expert"), center + normal(0.05, experts)),
            "sigma": ((*lead, "expert"), positive(0.3, experts)),
        }
        return xr.Dataset(variables)
    variables = {
        "w_in": ((*lead, "feature", "hidden"), normal(0.2, n_features, hidden)),
        "b_in": ((*lead, "hidden"), normal(0.2, hidden)),
        "w_out": ((*lead, "hidden"), normal(0.05, hidden)),
        "b_out": (lead, center + normal(0.05)),
        "sigma": (lead, positive(0.3)),
    }
    if phase == "phase1":
        n_players = dataset.train["player_id"].nunique()
        variables["player_sd"] = (lead, positive(0.3))
        variables["player_raw"] = ((*lead, "player"), normal(1.0, n_players))
    return xr.Dataset(variables)


TEAMS = ("AAA", "BBB", "CCC", "DDD")
# Pairings of the four teams, cycled week by week so that every team meets every other.
ROUNDS = (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)))
# (suffix, position_group, lowest carries, highest carries): RB1 always has >= 5 carries, RB2
# sometimes fewer, and the WR and QB rows are never modelled.
ROSTER = (
    ("RB1", "RB", 10, 24),
    ("RB2", "RB", 2, 12),
    ("WR1", "WR", 0, 2),
    ("QB1", "QB", 0, 7),
)


def make_league(
    seasons: Sequence[int] = (2023, 2024),
    regular_weeks: int = 8,
    playoff_weeks: int = 1,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build a synthetic four-team league: player weeks and the matching schedule.

    Parameters
    ----------
    seasons : sequence of int
        Seasons to build. Every season but the last gets ``playoff_weeks`` POST weeks, numbered
        after the regular season as nflverse does; the last season is regular season only.
    regular_weeks : int
        Regular season weeks per season.
    playoff_weeks : int
        POST weeks of each earlier season (all four teams play, for simplicity).
    seed : int
        Seed of the random statistics and lines.

    Returns
    -------
    player_weeks : pandas.DataFrame
        Canonical columns of ``load_player_weeks``; player ids are ``"{team}-{suffix}"``.
    schedule : pandas.DataFrame
        Canonical columns of ``load_schedule``; the home team alternates by week.
    """
    rng = np.random.default_rng(seed)
    players, games = [], []
    for season_index, season in enumerate(seasons):
        last = season_index == len(seasons) - 1
        weeks = [(w, "REG") for w in range(1, regular_weeks + 1)]
        if not last:
            weeks += [(regular_weeks + w, "POST") for w in range(1, playoff_weeks + 1)]
        for week, season_type in weeks:
            for first, second in ROUNDS[week % len(ROUNDS)]:
                home, away = (TEAMS[first], TEAMS[second])
                if week % 2:
                    home, away = away, home
                game_id = f"{season}_{week:02d}_{away}_{home}"
                games.append(
                    {
                        "game_id": game_id,
                        "season": season,
                        "game_type": "REG" if season_type == "REG" else "WC",
                        "week": week,
                        "away_team": away,
                        "home_team": home,
                        "away_score": float(rng.integers(3, 40)),
                        "home_score": float(rng.integers(3, 40)),
                        "spread_line": float(np.round(rng.normal(0, 5) * 2) / 2),
                        "total_line": float(np.round(rng.normal(45, 4) * 2) / 2),
                        "away_rest": float(rng.choice([6, 7, 7, 10])),
                        "home_rest": float(rng.choice([6, 7, 7, 10])),
                    }
                )
                for team, opponent in ((home, away), (away, home)):
                    for suffix, group, low, high in ROSTER:
                        carries = float(rng.integers(low, high + 1))
                        yards = max(float(np.round(carries * rng.normal(4.3, 1.5))), -5.0)
                        targets = float(rng.integers(0, 8))
                        receptions = float(rng.integers(0, targets + 1))
                        players.append(
                            {
                                "player_id": f"{team}-{suffix}",
                                "player_name": f"{team} {suffix}",
                                "position_group": group,
                                "team": team,
                                "opponent_team": opponent,
                                "season": season,
                                "week": week,
                                "season_type": season_type,
                                "carries": carries,
                                "rushing_yards": yards,
                                "receptions": receptions,
                                "targets": targets,
                                "receiving_yards": float(receptions * rng.integers(2, 15)),
                                "game_id": game_id,
                            }
                        )
    return pd.DataFrame(players), pd.DataFrame(games)


@pytest.fixture
def league() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Default synthetic league: 2023 (8 REG weeks and 1 POST week) and 2024 (8 REG weeks)."""
    return make_league()


@pytest.fixture
def league_factory() -> Callable[..., tuple[pd.DataFrame, pd.DataFrame]]:
    """The :func:`make_league` builder, for tests that need other seasons or weeks."""
    return make_league


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Folder of the real nflverse files from NFLVERSE_DIR; skips the test when unavailable."""
    configured = os.environ.get("NFLVERSE_DIR")
    if not configured:
        pytest.skip("NFLVERSE_DIR is not set; point it at a folder with the nflverse files")
    folder = Path(configured)
    if find_schedule_file(folder) is None or not discover_seasons(folder):
        pytest.skip(f"NFLVERSE_DIR={folder} lacks the schedule or the player statistics files")
    return folder
