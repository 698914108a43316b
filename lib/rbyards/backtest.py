"""Rolling-origin backtest: one time-split fold per test season, scored per season and pooled.

The fold of season ``S`` is :func:`rbyards.features.build_dataset` with ``test_season=S`` and the
profile's ``split.test_start_week`` and ``split.calibration_weeks``. Its training rows are every
modelled row before week ``test_start_week`` of ``S``. The last ``calibration_weeks`` weeks of
that period are its calibration rows, and the rest of ``S`` are its test rows. Rows of seasons
after ``S`` are dropped, so no fold trains on games after its test rows.

The models are fitted by the functions the phase and baseline notebooks use. This module builds
the folds, collects each model's per-row scores and summarizes them. The per-season metrics use
one fold's test rows, and the pooled metrics use the test rows of every fold together. Every
metric that is a mean over rows (coverage, mean width, MAE, CRPS, pinball loss) is therefore the
row-weighted mean of the per-season values. The player bootstrap of the pooled metrics resamples
a player's test games of every season together.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from rbyards import data, evaluation, features, figures
from rbyards.baselines import player_histories
from rbyards.params import Params, validate_backtest_seasons

logger = logging.getLogger(__name__)

POOLED = "pooled"
"""Season label of the metrics over the test rows of every fold."""

# Columns of a prediction table that identify and describe a row rather than score it.
ROW_COLUMNS = ("row_id", "player_id", "player_name", "season", "week", "rushing_yards", "tier")
# Per-row score columns of evaluation.score_forecast without a level suffix.
_PLAIN_SCORES = ("median", "abs_error", "squared_error", "crps", "pit")
_LEVEL_SCORE_PREFIXES = ("covered_", "width_", "pinball_")

MODEL_LABELS = {
    "phase1": "Phase 1",
    "phase2_1": "Phase 2.1",
    "phase2_2": "Phase 2.2",
    "quantile_regression": "Quantile regression",
    "gradient_boosted_quantiles": "Boosted quantiles",
    "conformalized_quantile_regression": "Conformalized QR",
    "split_conformal_forest": "Conformal forest",
    "empirical": "Empirical",
}
"""Short display names of the backtest models for tables and figures."""


@dataclass(frozen=True)
class League:
    """The nflverse files a backtest reads: player weeks, schedule and their paths."""

    player_weeks: pd.DataFrame
    schedule: pd.DataFrame
    data_dir: Path
    data_files: dict[str, Path]
    """File name to path of every player statistics file read and of the schedule."""


def load_league(params: Params) -> League:
    """Load the player weeks and the schedule named by ``params.data``.

    Files are downloaded when missing and ``data.download`` is true, as in
    :func:`rbyards.workflow.load_dataset`.
    """
    data_dir = data.resolve_data_dir(params.data.nflverse_dir)
    player_weeks = data.load_player_weeks(
        data_dir, params.data.seasons, download=params.data.download
    )
    schedule = data.load_schedule(data_dir, download=params.data.download)
    seasons = sorted(int(season) for season in player_weeks["season"].unique())
    paths = [data.find_player_file(data_dir, season) for season in seasons]
    paths.append(data.find_schedule_file(data_dir))
    files = {path.name: path for path in paths if path is not None}
    return League(player_weeks, schedule, data_dir, files)


def check_seasons(params: Params, league: League, *, source: str | None = None) -> list[int]:
    """Validate ``backtest.seasons`` against the seasons found in the data folder.

    The seasons with files come from :func:`rbyards.data.discover_seasons`, and the weeks of each
    season from its modelled rows.

    Parameters
    ----------
    params : Params
        Validated parameters.
    league : League
        Output of :func:`load_league`.
    source : str, optional
        The profile file, named at the start of the error message.

    Returns
    -------
    list of int
        The backtest seasons, increasing.

    Raises
    ------
    rbyards.params.ParamsError
        When a season is not in the data, has no earlier season to train on, has no test weeks
        or leaves no training weeks. The message lists the allowed seasons.
    """
    available = data.discover_seasons(league.data_dir)
    weeks = features.modelled_weeks(league.player_weeks, params.data.min_carries)
    return validate_backtest_seasons(params, available, weeks, source=source)


def build_fold(league: League, params: Params, feature_set: str, season: int) -> features.Dataset:
    """Build the dataset of the fold whose test rows are ``season`` from the start week on."""
    return features.build_dataset(
        league.player_weeks,
        league.schedule,
        min_carries=params.data.min_carries,
        test_season=season,
        test_start_week=params.split.test_start_week,
        feature_set=feature_set,
        calibration_weeks=params.split.calibration_weeks,
        log_shift=params.features.log_shift,
    )


def build_folds(
    league: League, params: Params, feature_set: str, seasons: Sequence[int]
) -> dict[int, features.Dataset]:
    """Build one fold per season, keyed by season in increasing order."""
    return {
        int(season): build_fold(league, params, feature_set, int(season))
        for season in sorted(seasons)
    }


def _first_last(rows: pd.DataFrame) -> tuple[str | None, str | None]:
    if rows.empty:
        return None, None
    ordered = rows.sort_values(["season", "week"])
    first, last = ordered.iloc[0], ordered.iloc[-1]
    return (
        f"{int(first['season'])} week {int(first['week'])}",
        f"{int(last['season'])} week {int(last['week'])}",
    )


def fold_summary(dataset: features.Dataset) -> dict[str, Any]:
    """Return a fold's row count and first and last (season, week) for each role."""
    summary: dict[str, Any] = {"test_season": int(dataset.test_season)}
    for role in features.ROLES:
        rows = dataset.rows(role)
        first, last = _first_last(rows)
        summary[f"{role}_rows"] = int(len(rows))
        summary[f"{role}_first"] = first
        summary[f"{role}_last"] = last
    return summary


def baseline_options(dataset: features.Dataset, seed: int) -> dict[str, dict[str, Any]]:
    """Return each baseline's keyword options for a fold, as the baselines notebook sets them.

    Time-ordered tuning uses the training rows' (season, week). The empirical baseline gets
    each test row's earlier outcomes from the training and calibration rows only, so no test
    game's outcome enters another test row's forecast.
    """
    train = dataset.train
    train_time = (train["season"] * 100 + train["week"]).to_numpy()
    history = pd.concat([train, dataset.calibration])
    shift = dataset.log_shift
    return {
        "quantile_regression": {"log_shift": shift, "train_time": train_time},
        "gradient_boosted_quantiles": {"log_shift": shift, "train_time": train_time, "seed": seed},
        "conformalized_quantile_regression": {
            "log_shift": shift,
            "train_time": train_time,
            "seed": seed,
        },
        "split_conformal_forest": {"log_shift": shift, "seed": seed},
        "empirical": {"test_history": player_histories(history, dataset.test)},
    }


def quantile_prediction_table(
    rows: pd.DataFrame, quantiles: pd.DataFrame, per_row: pd.DataFrame
) -> pd.DataFrame:
    """Return a baseline's per-row prediction file: row columns, quantile grid and scores.

    The columns match :func:`rbyards.phases.prediction_table`, so every model's files read alike.
    """
    table = rows[list(ROW_COLUMNS)].reset_index(drop=True)
    grid = evaluation.to_prediction_columns(quantiles.reset_index(drop=True))
    scores = per_row.reset_index(drop=True).drop(columns=["row_id"], errors="ignore")
    return pd.concat([table, grid, scores], axis=1)


def score_columns(table: pd.DataFrame) -> list[str]:
    """List the per-row score columns of a prediction table, in table order."""
    return [
        column
        for column in table.columns
        if column in _PLAIN_SCORES or str(column).startswith(_LEVEL_SCORE_PREFIXES)
    ]


def per_row_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Return a prediction table's scores indexed by ``row_id``, as score_forecast returns them."""
    return table.set_index("row_id")[score_columns(table)]


def pool_tables(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Concatenate one model's per-season prediction tables in season order.

    Raises
    ------
    ValueError
        When there are no tables, or a row id appears in two seasons' tables.
    """
    if not tables:
        raise ValueError("no per-season tables to pool; score at least one fold first")
    pooled = pd.concat([tables[season] for season in sorted(tables)], ignore_index=True)
    repeated = pooled["row_id"].duplicated()
    if repeated.any():
        examples = pooled.loc[repeated, "row_id"].head(3).tolist()
        raise ValueError(
            f"{int(repeated.sum())} row ids appear in more than one season's table (for example "
            f"{examples}); each fold's test rows must be a different season"
        )
    return pooled


def _summary_rows(
    model: str, season: str, table: pd.DataFrame, n_boot: int, seed: int, confidence: float
) -> list[dict[str, Any]]:
    per_row = per_row_scores(table)
    metrics = evaluation.summarize(per_row)
    intervals = evaluation.bootstrap_by_player(
        per_row,
        table["player_id"].to_numpy(),
        n_boot=n_boot,
        seed=seed,
        confidence=confidence,
    )
    rows = []
    for metric, value in metrics.items():
        lower, upper = intervals.get(metric, (np.nan, np.nan))
        rows.append(
            {
                "model": model,
                "season": season,
                "metric": metric,
                "value": float(value),
                "lower": lower,
                "upper": upper,
            }
        )
    return rows


def backtest_metrics(
    tables: Mapping[str, Mapping[int, pd.DataFrame]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.9,
) -> pd.DataFrame:
    """Summarize every model's scores per season and pooled, with player-bootstrap intervals.

    Parameters
    ----------
    tables : mapping of str to mapping of int to DataFrame
        Model name to season to the model's prediction table for that fold's test rows (from
        :func:`rbyards.phases.prediction_table` or :func:`quantile_prediction_table`).
    n_boot : int, default 1000
        Bootstrap replicates. Every model and season uses the same ``seed``, so models are
        resampled with the same players.
    seed : int, default 0
        Seed of the bootstrap.
    confidence : float, default 0.9
        Probability of the percentile intervals.

    Returns
    -------
    pandas.DataFrame
        Columns model, season (the season as text, or ``"pooled"``), metric, value, lower and
        upper; one row per model, season and metric of :func:`rbyards.evaluation.summarize`.
        Metrics the bootstrap does not cover (medians, PIT mean, row count) have NaN bounds.

    Raises
    ------
    rbyards.evaluation.RowMismatchError
        When two models were scored on different rows of the same season.
    """
    if not tables:
        raise ValueError("no model tables given; score at least one model first")
    reference = next(iter(tables.values()))
    for model, by_season in tables.items():
        if sorted(by_season) != sorted(reference):
            raise ValueError(
                f"model {model} has seasons {sorted(by_season)} but the first model has "
                f"{sorted(reference)}; score every model on every fold"
            )
        for season in sorted(by_season):
            evaluation.check_identical_rows(
                reference[season]["row_id"].to_numpy(), by_season[season]["row_id"].to_numpy()
            )
    rows: list[dict[str, Any]] = []
    for model, by_season in tables.items():
        for season in sorted(by_season):
            rows += _summary_rows(model, str(season), by_season[season], n_boot, seed, confidence)
        pooled = pool_tables(by_season)
        rows += _summary_rows(model, POOLED, pooled, n_boot, seed, confidence)
    return pd.DataFrame(rows, columns=["model", "season", "metric", "value", "lower", "upper"])


def metrics_by_model(frame: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """Nest a :func:`backtest_metrics` frame as result dicts for JSON, tables and figures.

    Returns
    -------
    dict
        Model to season label to ``{"metrics": {...}, "metric_intervals": {metric: [lo, hi]}}``,
        models and seasons in frame order. ``n_rows`` is an int, and metrics without bootstrap
        bounds have no interval.
    """
    nested: dict[str, dict[str, dict[str, Any]]] = {}
    for row in frame.itertuples(index=False):
        entry = nested.setdefault(row.model, {}).setdefault(
            row.season, {"metrics": {}, "metric_intervals": {}}
        )
        entry["metrics"][row.metric] = int(row.value) if row.metric == "n_rows" else row.value
        if not (pd.isna(row.lower) or pd.isna(row.upper)):
            entry["metric_intervals"][row.metric] = [float(row.lower), float(row.upper)]
    return nested


def wide_metrics(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Return one row per model and season with one column per metric, for display."""
    selected = frame[frame["metric"].isin(metrics)]
    wide = selected.pivot(index=["model", "season"], columns="metric", values="value")
    models = list(dict.fromkeys(frame["model"]))
    seasons = list(dict.fromkeys(frame["season"]))
    order = pd.MultiIndex.from_product([models, seasons], names=["model", "season"])
    return wide.reindex(index=order, columns=list(metrics))


def plot_backtest(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("coverage_90", "crps"),
    labels: Mapping[str, str] | None = None,
    title: str = "Backtest: test metrics per season with 90% player bootstrap intervals",
) -> Figure:
    """Draw each metric per model and season as points with bootstrap error bars.

    Parameters
    ----------
    frame : pandas.DataFrame
        Output of :func:`backtest_metrics`.
    metrics : sequence of str
        Metric names, one panel each; a coverage panel marks the nominal level.
    labels : mapping of str to str, optional
        Display names per model; defaults to :data:`MODEL_LABELS`.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = dict(MODEL_LABELS if labels is None else labels)
    models = list(dict.fromkeys(frame["model"]))
    seasons = list(dict.fromkeys(frame["season"]))
    positions = np.arange(len(models))
    # Spread the seasons of one model over 0.6 of the space between model rows.
    offsets = np.linspace(-0.3, 0.3, len(seasons)) if len(seasons) > 1 else np.zeros(1)
    indexed = frame.set_index(["model", "season", "metric"])
    with figures.thesis_style():
        fig, axes = plt.subplots(
            1,
            len(metrics),
            figsize=(figures.FULL_WIDTH, 0.45 * len(models) + 1.4),
            sharey=True,
            squeeze=False,
        )
        for panel, metric in enumerate(metrics):
            ax = axes[0, panel]
            for index, season in enumerate(seasons):
                color = "black" if season == POOLED else figures.OKABE_ITO[index]
                rows = indexed.xs((season, metric), level=("season", "metric")).reindex(models)
                values = rows["value"].to_numpy(dtype=float)
                lower = np.nan_to_num(values - rows["lower"].to_numpy(dtype=float))
                upper = np.nan_to_num(rows["upper"].to_numpy(dtype=float) - values)
                ax.errorbar(
                    values,
                    positions + offsets[index],
                    xerr=np.vstack([np.maximum(lower, 0.0), np.maximum(upper, 0.0)]),
                    fmt="D" if season == POOLED else "o",
                    markersize=3.5,
                    color=color,
                    elinewidth=0.8,
                    label=season,
                )
            nominal = _nominal_coverage(metric)
            if nominal is not None:
                ax.axvline(nominal, color="black", linestyle=":", linewidth=1.0)
                ax.xaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
            unit = "Share of test games" if nominal is not None else "Yards"
            ax.set(title=figures.metric_name(metric), xlabel=unit, ylabel="")
            ax.grid(axis="y", visible=False)
        axes[0, 0].set_yticks(positions, [labels.get(model, model) for model in models])
        axes[0, 0].invert_yaxis()
        axes[0, -1].legend(title="Test season", loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.suptitle(title)
    return fig


def _nominal_coverage(metric: str) -> float | None:
    prefix = "coverage_"
    if metric.startswith(prefix) and metric[len(prefix) :].isdigit():
        return int(metric[len(prefix) :]) / 100
    return None
