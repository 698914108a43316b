"""Score probabilistic forecasts of rushing yards: coverage, width, CRPS, pinball loss and PIT.

Every model reports its forecast for a set of rows either as predictive draws, an array of shape
(n_rows, n_draws) in yards, or as predictive quantiles on :data:`QUANTILE_LEVELS`, in yards. A
central interval at level ``L`` always spans the ``(1 - L) / 2`` and ``(1 + L) / 2`` quantiles,
computed from the draws or interpolated linearly in the level from the quantile grid. It is never
built as mean plus or minus a multiple of the standard deviation, because the yards distribution
is skewed and such a band misplaces both ends.

Uncertainty of the summary metrics comes from a bootstrap that resamples whole players, since
games of one player are correlated and a row bootstrap would understate the spread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scoringrules as sr

logger = logging.getLogger(__name__)

#: Quantile levels every model reports: 0.01..0.99 by 0.01 plus 0.025 and 0.975.
#: The 0.16 and 0.84 levels, the ends of the central 68% interval, are on the 0.01 grid.
QUANTILE_LEVELS: np.ndarray = np.unique(
    np.round(np.concatenate([np.arange(1, 100) / 100, [0.025, 0.975, 0.16, 0.84]]), 6)
)
QUANTILE_LEVELS.setflags(write=False)

#: Central interval levels scored by :func:`score_forecast` by default.
COVERAGE_LEVELS: tuple[float, ...] = (0.5, 0.68, 0.8, 0.9, 0.95)

#: Quantile levels whose pinball loss :func:`score_forecast` reports by default.
PINBALL_LEVELS: tuple[float, ...] = (0.05, 0.5, 0.95)

#: Nominal central levels of :func:`calibration_curve` by default: 0.05..0.95 by 0.05.
CALIBRATION_CURVE_LEVELS: np.ndarray = np.round(np.arange(1, 20) * 0.05, 6)


class EvaluationError(ValueError):
    """Invalid forecast or score input: wrong shapes, levels, missing columns or rows."""


class RowMismatchError(EvaluationError):
    """Two forecasts that must be compared row by row were scored on different rows."""


def level_label(level: float) -> str:
    """Format a probability as the percent suffix used in column and metric names.

    Parameters
    ----------
    level : float
        Probability in (0, 1), for example 0.9 or 0.05.

    Returns
    -------
    str
        Two-digit percent, for example ``"90"`` for 0.9 and ``"05"`` for 0.05. Levels that are
        not whole percents keep one decimal without the point: ``"975"`` for 0.975, ``"025"``
        for 0.025.
    """
    percent = round(level * 100, 6)
    if float(percent).is_integer():
        return f"{int(percent):02d}"
    return f"{percent:04.1f}".replace(".", "")


def quantile_column_name(level: float) -> str:
    """Return the column name of one quantile level in prediction files, e.g. ``"q0.010"``."""
    return f"q{level:.3f}"


def to_prediction_columns(quantiles: pd.DataFrame) -> pd.DataFrame:
    """Rename float-level quantile columns to the ``"q0.010"`` names of prediction files.

    Parameters
    ----------
    quantiles : pd.DataFrame
        Forecast quantiles whose columns are float levels.

    Returns
    -------
    pd.DataFrame
        A copy with columns renamed by :func:`quantile_column_name`. :func:`score_forecast`
        and the other scoring functions accept either naming.
    """
    _, levels = _check_quantiles(quantiles, None)
    renamed = quantiles.copy()
    renamed.columns = [quantile_column_name(level) for level in levels]
    return renamed


def quantiles_from_draws(
    draws: np.ndarray, levels: Sequence[float] | np.ndarray = QUANTILE_LEVELS
) -> np.ndarray:
    """Compute per-row empirical quantiles of predictive draws.

    Parameters
    ----------
    draws : np.ndarray
        Predictive draws of shape (n_rows, n_draws).
    levels : sequence of float
        Quantile levels in (0, 1).

    Returns
    -------
    np.ndarray
        Array of shape (n_rows, n_levels), quantiles by numpy's default linear interpolation.

    Raises
    ------
    EvaluationError
        If ``draws`` is not two-dimensional, contains non-finite values, or a level is outside
        (0, 1).
    """
    draws = _check_draws(draws)
    levels = _check_levels(levels, require_sorted=False)
    return np.quantile(draws, levels, axis=1).T


def quantile_frame(
    quantiles: np.ndarray,
    levels: Sequence[float] | np.ndarray = QUANTILE_LEVELS,
    index: Sequence | pd.Index | None = None,
) -> pd.DataFrame:
    """Wrap a quantile array as the forecast DataFrame whose columns are the float levels.

    Parameters
    ----------
    quantiles : np.ndarray
        Array of shape (n_rows, n_levels).
    levels : sequence of float
        Quantile level of each column.
    index : sequence or pd.Index, optional
        Row labels, for example the row ids.

    Returns
    -------
    pd.DataFrame
        Quantiles with one float-labelled column per level.
    """
    levels = _check_levels(levels)
    quantiles = np.asarray(quantiles, dtype=float)
    if quantiles.ndim != 2 or quantiles.shape[1] != levels.size:
        raise EvaluationError(
            f"quantiles have shape {quantiles.shape} but {levels.size} levels were given; "
            "pass an array of shape (n_rows, n_levels)"
        )
    return pd.DataFrame(quantiles, columns=pd.Index(levels, dtype=float), index=index)


def rearrange_quantiles(quantiles: np.ndarray) -> np.ndarray:
    """Sort each row of a quantile array so that quantiles never cross.

    Sorting is the monotone rearrangement of quantile estimates described by Chernozhukov,
    Fernandez-Val and Galichon (2010, Econometrica 78(3)).

    Parameters
    ----------
    quantiles : np.ndarray
        Array of shape (n_rows, n_levels) with levels in increasing order.

    Returns
    -------
    np.ndarray
        The same values sorted along the level axis.
    """
    return np.sort(np.asarray(quantiles, dtype=float), axis=1)


def interpolate_quantiles(
    quantiles: np.ndarray,
    levels: Sequence[float] | np.ndarray,
    target_levels: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Interpolate quantiles linearly in the level, row by row.

    Parameters
    ----------
    quantiles : np.ndarray
        Non-decreasing quantiles of shape (n_rows, n_levels).
    levels : sequence of float
        Increasing levels of the columns of ``quantiles``.
    target_levels : sequence of float
        Levels to return; each must lie within ``[min(levels), max(levels)]`` because values
        beyond the grid cannot be interpolated.

    Returns
    -------
    np.ndarray
        Array of shape (n_rows, n_target_levels); non-decreasing when the input is.

    Raises
    ------
    EvaluationError
        If a target level lies outside the grid.
    """
    levels = _check_levels(levels)
    targets = _check_levels(target_levels, require_sorted=False)
    quantiles = np.asarray(quantiles, dtype=float)
    tolerance = 1e-9
    if targets.min() < levels[0] - tolerance or targets.max() > levels[-1] + tolerance:
        raise EvaluationError(
            f"target levels {targets.min():g}..{targets.max():g} lie outside the quantile grid "
            f"{levels[0]:g}..{levels[-1]:g}; request levels inside the grid or report more levels"
        )
    upper = np.clip(np.searchsorted(levels, targets, side="left"), 1, levels.size - 1)
    lower = upper - 1
    weight = (targets - levels[lower]) / (levels[upper] - levels[lower])
    weight = np.clip(weight, 0.0, 1.0)
    return quantiles[:, lower] * (1.0 - weight) + quantiles[:, upper] * weight


def central_level_pairs(
    levels: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Pair each quantile level below 0.5 with its mirror level ``1 - level``.

    Parameters
    ----------
    levels : sequence of float
        Quantile levels, symmetric around 0.5 and containing 0.5, for example
        :data:`QUANTILE_LEVELS`.

    Returns
    -------
    levels : np.ndarray
        The levels as floats, in the given order.
    pairs : list of tuple of int
        ``(lower_index, upper_index)`` column positions of each central interval; its central
        level is ``levels[upper_index] - levels[lower_index]``.

    Raises
    ------
    EvaluationError
        If 0.5 is missing or a level has no mirror.
    """
    levels_array = _check_levels(levels, require_sorted=False)
    rounded = np.round(levels_array, 9)
    if not np.isclose(rounded, 0.5).any():
        raise EvaluationError("levels must contain 0.5 for the median; add it to the grid")
    pairs = []
    for lower_index in np.flatnonzero(rounded < 0.5):
        mirror = np.flatnonzero(np.isclose(rounded, 1.0 - rounded[lower_index]))
        if mirror.size == 0:
            raise EvaluationError(
                f"level {levels_array[lower_index]:g} has no mirror level "
                f"{1 - levels_array[lower_index]:g}; use levels symmetric around 0.5"
            )
        pairs.append((int(lower_index), int(mirror[0])))
    if len(pairs) * 2 + 1 != levels_array.size:
        raise EvaluationError(
            "some levels above 0.5 have no mirror below 0.5; use levels symmetric around 0.5"
        )
    return levels_array, pairs


def central_interval(
    level: float,
    *,
    draws: np.ndarray | None = None,
    quantiles: pd.DataFrame | np.ndarray | None = None,
    quantile_levels: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Compute the central predictive interval at ``level`` for every row.

    Parameters
    ----------
    level : float
        Central probability in (0, 1); the bounds are the ``(1 - level) / 2`` and
        ``(1 + level) / 2`` quantiles.
    draws : np.ndarray, optional
        Predictive draws of shape (n_rows, n_draws). Give exactly one of ``draws`` and
        ``quantiles``.
    quantiles : pd.DataFrame or np.ndarray, optional
        Predictive quantiles; a DataFrame carries its levels as float column labels, an array
        needs ``quantile_levels``.
    quantile_levels : sequence of float, optional
        Levels of the columns of an array ``quantiles``; defaults to :data:`QUANTILE_LEVELS`.

    Returns
    -------
    tuple of np.ndarray
        Lower and upper bounds, each of shape (n_rows,).
    """
    bounds = _forecast_quantiles(
        _central_bounds_levels([level]), draws=draws, quantiles=quantiles, levels=quantile_levels
    )
    return bounds[:, 0], bounds[:, 1]


def pit_values(
    y: Sequence[float] | np.ndarray | pd.Series,
    *,
    draws: np.ndarray | None = None,
    quantiles: pd.DataFrame | np.ndarray | None = None,
    quantile_levels: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Compute the probability integral transform of each outcome under its forecast.

    From draws the PIT is the mid-distribution value ``P(X < y) + P(X = y) / 2`` of the
    empirical distribution, so ties between an integer outcome and draws count half. From a
    quantile grid the PIT is interpolated linearly between the two grid levels whose quantiles
    bracket ``y``. Outcomes below the lowest or above the highest grid quantile get the lowest
    or highest grid level (0.01 or 0.99 on :data:`QUANTILE_LEVELS`) because the grid contains
    no information about the tails beyond it. When several grid quantiles equal ``y`` the PIT is the
    mean of their levels.

    Parameters
    ----------
    y : array-like
        Outcomes of shape (n_rows,).
    draws : np.ndarray, optional
        Predictive draws of shape (n_rows, n_draws).
    quantiles : pd.DataFrame or np.ndarray, optional
        Non-decreasing predictive quantiles, levels as in :func:`central_interval`.
    quantile_levels : sequence of float, optional
        Levels of the columns of an array ``quantiles``.

    Returns
    -------
    np.ndarray
        PIT values in [0, 1], shape (n_rows,).
    """
    y_values = _check_outcomes(y)
    if (draws is None) == (quantiles is None):
        raise EvaluationError("pass exactly one of draws= and quantiles=")
    if draws is not None:
        draws = _check_draws(draws, n_rows=y_values.size)
        below = (draws < y_values[:, None]).mean(axis=1)
        equal = (draws == y_values[:, None]).mean(axis=1)
        return below + 0.5 * equal

    grid, levels = _check_quantiles(quantiles, quantile_levels, n_rows=y_values.size)
    return _pit_from_grid(y_values, grid, levels)


def score_forecast(
    y: Sequence[float] | np.ndarray | pd.Series,
    *,
    draws: np.ndarray | None = None,
    quantiles: pd.DataFrame | np.ndarray | None = None,
    quantile_levels: Sequence[float] | np.ndarray | None = None,
    levels: Sequence[float] = COVERAGE_LEVELS,
    pinball_levels: Sequence[float] = PINBALL_LEVELS,
    row_ids: Sequence | pd.Index | None = None,
    crps_estimator: str = "ensemble",
) -> pd.DataFrame:
    """Score a forecast row by row.

    CRPS comes from ``scoringrules`` 0.10.0: ``crps_ensemble`` (quantile-decomposition
    estimator, the exact CRPS of the empirical distribution) for draws, and ``crps_quantile``
    for a quantile grid. ``crps_quantile`` averages the pinball loss over the levels it is given,
    so it approximates the CRPS only on an evenly spaced grid. The extra 0.025 and 0.975 levels
    of :data:`QUANTILE_LEVELS` are therefore dropped from its input when the 0.01..0.99 grid is
    complete. Pinball losses come from ``scoringrules.quantile_score``. The median is the 0.5
    quantile.

    Parameters
    ----------
    y : array-like
        Outcomes in yards, shape (n_rows,).
    draws : np.ndarray, optional
        Predictive draws of shape (n_rows, n_draws). Give exactly one of ``draws`` and
        ``quantiles``.
    quantiles : pd.DataFrame or np.ndarray, optional
        Non-decreasing predictive quantiles; a DataFrame carries its levels as column labels
        (floats or ``"q0.010"`` style names), an array needs ``quantile_levels``.
    quantile_levels : sequence of float, optional
        Levels of the columns of an array ``quantiles``; defaults to :data:`QUANTILE_LEVELS`.
    levels : sequence of float
        Central interval levels to score for coverage and width.
    pinball_levels : sequence of float
        Quantile levels whose pinball loss is reported.
    row_ids : sequence or pd.Index, optional
        Row labels for the result's index, named ``row_id``. Defaults to the index of ``y``
        when ``y`` is a Series, else 0..n_rows-1. :func:`bootstrap_difference` compares these
        labels, so pass real row ids when forecasts will be compared.
    crps_estimator : {"ensemble", "quantile_grid"}
        CRPS estimator for ``draws``: the ensemble CRPS, or ``crps_quantile`` on the draws'
        0.01..0.99 quantiles, the estimator used for quantile forecasts. The grid version
        ignores the outer 1% tails on each side. Draws from a back-transformed Student-t have
        no finite mean, so their CRPS in yards is not finite either. Their ensemble CRPS grows
        with the largest draws, while the grid version stays comparable with quantile forecasts.

    Returns
    -------
    pd.DataFrame
        One row per outcome with columns ``covered_XX`` (bool, interval includes its ends),
        ``width_XX``, ``median``, ``abs_error`` and ``squared_error`` of the median, ``crps``,
        ``pinball_XX`` and ``pit``; ``XX`` is :func:`level_label` of the level.

    Raises
    ------
    EvaluationError
        If shapes disagree, values are missing or non-finite, quantiles cross, or a level is
        outside the quantile grid.
    """
    y_values = _check_outcomes(y)
    if (draws is None) == (quantiles is None):
        raise EvaluationError("pass exactly one of draws= and quantiles=")
    levels = [float(level) for level in levels]
    pinball_levels = [float(level) for level in pinball_levels]
    _check_levels(levels, require_sorted=False)
    _check_levels(pinball_levels, require_sorted=False)
    if crps_estimator not in ("ensemble", "quantile_grid"):
        raise EvaluationError(
            f"crps_estimator = {crps_estimator!r} is invalid; use 'ensemble' or 'quantile_grid'"
        )

    requested_levels = np.concatenate([_central_bounds_levels(levels), pinball_levels, [0.5]])
    if draws is not None:
        draws = _check_draws(draws, n_rows=y_values.size)
        requested = quantiles_from_draws(draws, requested_levels)
        if crps_estimator == "quantile_grid":
            grid_levels = np.round(np.arange(1, 100) / 100, 6)
            grid = quantiles_from_draws(draws, grid_levels)
            crps = _crps_from_grid(y_values, grid, grid_levels)
        else:
            crps = np.asarray(sr.crps_ensemble(y_values, draws, backend="numpy"), dtype=float)
        pit = pit_values(y_values, draws=draws)
    else:
        grid, grid_levels = _check_quantiles(quantiles, quantile_levels, n_rows=y_values.size)
        requested = interpolate_quantiles(grid, grid_levels, requested_levels)
        crps = _crps_from_grid(y_values, grid, grid_levels)
        pit = _pit_from_grid(y_values, grid, grid_levels)

    columns: dict[str, np.ndarray] = {}
    for position, level in enumerate(levels):
        lower = requested[:, 2 * position]
        upper = requested[:, 2 * position + 1]
        label = level_label(level)
        columns[f"covered_{label}"] = (y_values >= lower) & (y_values <= upper)
        columns[f"width_{label}"] = upper - lower

    median = requested[:, -1]
    columns["median"] = median
    columns["abs_error"] = np.abs(y_values - median)
    columns["squared_error"] = (y_values - median) ** 2
    columns["crps"] = crps
    for position, level in enumerate(pinball_levels):
        forecast = requested[:, 2 * len(levels) + position]
        score = sr.quantile_score(y_values, forecast, level, backend="numpy")
        columns[f"pinball_{level_label(level)}"] = np.asarray(score, dtype=float)
    columns["pit"] = pit

    if row_ids is None and isinstance(y, pd.Series):
        row_ids = y.index
    index = pd.Index(row_ids if row_ids is not None else np.arange(y_values.size), name="row_id")
    if len(index) != y_values.size:
        raise EvaluationError(
            f"row_ids has {len(index)} entries but y has {y_values.size}; pass one id per row"
        )
    return pd.DataFrame(columns, index=index)


def summarize(per_row: pd.DataFrame) -> dict[str, float | int]:
    """Average per-row scores into the summary metrics of one forecast.

    Parameters
    ----------
    per_row : pd.DataFrame
        Output of :func:`score_forecast`.

    Returns
    -------
    dict
        ``coverage_XX`` and ``width_XX_mean`` / ``width_XX_median`` for each scored level,
        ``mae``, ``rmse``, ``crps``, ``pinball_XX`` means, ``pit_mean`` and ``n_rows``, as plain
        Python numbers so that the dict serializes to JSON.

    Raises
    ------
    EvaluationError
        If ``per_row`` is empty or lacks the error and CRPS columns.
    """
    _check_per_row(per_row)
    summary: dict[str, float | int] = {}
    for column in _coverage_columns(per_row):
        summary[column.replace("covered_", "coverage_")] = float(per_row[column].mean())
    for column in _width_columns(per_row):
        summary[f"{column}_mean"] = float(per_row[column].mean())
        summary[f"{column}_median"] = float(per_row[column].median())
    summary["mae"] = float(per_row["abs_error"].mean())
    summary["rmse"] = float(np.sqrt(per_row["squared_error"].mean()))
    summary["crps"] = float(per_row["crps"].mean())
    for column in _pinball_columns(per_row):
        summary[column] = float(per_row[column].mean())
    if "pit" in per_row:
        summary["pit_mean"] = float(per_row["pit"].mean())
    summary["n_rows"] = int(len(per_row))
    return summary


def metrics_by_tier(
    per_row: pd.DataFrame, tiers: Sequence[str] | np.ndarray | pd.Series
) -> dict[str, dict[str, float | int]]:
    """Summarize the scores separately for each usage tier.

    Parameters
    ----------
    per_row : pd.DataFrame
        Output of :func:`score_forecast`.
    tiers : array-like
        Tier label of each row, aligned by position, for example ``"low"``, ``"middle"``,
        ``"high"``.

    Returns
    -------
    dict
        Tier label to :func:`summarize` output. Tiers appear in the order low, middle, high,
        then any other labels sorted.
    """
    _check_per_row(per_row)
    tier_values = np.asarray(tiers, dtype=object)
    if tier_values.shape != (len(per_row),):
        raise EvaluationError(
            f"tiers has shape {tier_values.shape} but per_row has {len(per_row)} rows; "
            "pass one tier label per scored row"
        )
    if pd.isna(tier_values).any():
        raise EvaluationError("tiers contains missing labels; assign a tier to every row")
    known = [tier for tier in ("low", "middle", "high") if tier in set(tier_values)]
    others = sorted(set(tier_values) - set(known))
    return {str(tier): summarize(per_row.loc[tier_values == tier]) for tier in [*known, *others]}


def calibration_curve(
    y: Sequence[float] | np.ndarray | pd.Series,
    *,
    draws: np.ndarray | None = None,
    quantiles: pd.DataFrame | np.ndarray | None = None,
    quantile_levels: Sequence[float] | np.ndarray | None = None,
    nominal_levels: Sequence[float] | np.ndarray = CALIBRATION_CURVE_LEVELS,
) -> pd.DataFrame:
    """Compute observed coverage of central intervals over a grid of nominal levels.

    Parameters
    ----------
    y : array-like
        Outcomes of shape (n_rows,).
    draws, quantiles, quantile_levels
        The forecast, as in :func:`score_forecast`.
    nominal_levels : sequence of float
        Central interval levels; defaults to 0.05..0.95 by 0.05.

    Returns
    -------
    pd.DataFrame
        Columns ``nominal``, ``observed`` (fraction of outcomes inside the interval, ends
        included) and ``n_rows``.
    """
    y_values = _check_outcomes(y)
    nominal = _check_levels(nominal_levels, require_sorted=False)
    bounds = _forecast_quantiles(
        _central_bounds_levels(nominal), draws=draws, quantiles=quantiles, levels=quantile_levels
    )
    lower = bounds[:, 0::2]
    upper = bounds[:, 1::2]
    inside = (y_values[:, None] >= lower) & (y_values[:, None] <= upper)
    return pd.DataFrame(
        {"nominal": nominal, "observed": inside.mean(axis=0), "n_rows": y_values.size}
    )


def calibration_curve_from_scores(per_row: pd.DataFrame) -> pd.DataFrame:
    """Read the coarse calibration curve off the ``covered_XX`` columns of per-row scores.

    Parameters
    ----------
    per_row : pd.DataFrame
        Output of :func:`score_forecast`.

    Returns
    -------
    pd.DataFrame
        Columns ``nominal``, ``observed`` and ``n_rows``, one row per scored level.
    """
    _check_per_row(per_row)
    rows = []
    for column in _coverage_columns(per_row):
        label = column.removeprefix("covered_")
        nominal = float(f"0.{label}") if len(label) > 2 else int(label) / 100
        rows.append((nominal, float(per_row[column].mean()), len(per_row)))
    return pd.DataFrame(rows, columns=["nominal", "observed", "n_rows"]).sort_values("nominal")


def check_identical_rows(*row_id_arrays: Sequence | pd.Index | np.ndarray) -> None:
    """Raise unless every array lists the same row ids in the same order.

    Parameters
    ----------
    *row_id_arrays : array-like
        Row ids of the forecasts to be compared.

    Raises
    ------
    RowMismatchError
        If the arrays differ in length, in content, or only in order.
    """
    if len(row_id_arrays) < 2:
        return
    reference = np.asarray(row_id_arrays[0], dtype=object)
    for position, other in enumerate(row_id_arrays[1:], start=1):
        candidate = np.asarray(other, dtype=object)
        if candidate.shape == reference.shape and np.array_equal(candidate, reference):
            continue
        only_reference = sorted(set(reference) - set(candidate), key=str)
        only_candidate = sorted(set(candidate) - set(reference), key=str)
        if not only_reference and not only_candidate and candidate.size == reference.size:
            raise RowMismatchError(
                f"row ids of forecast 0 and forecast {position} are the same set in a different "
                "order; sort both by row_id before comparing them"
            )
        raise RowMismatchError(
            f"forecast 0 has {reference.size} rows and forecast {position} has {candidate.size}; "
            f"only in forecast 0: {only_reference[:5]}, only in forecast {position}: "
            f"{only_candidate[:5]}. Score both forecasts on the same test rows"
        )


def player_bootstrap_replicates(
    per_row: pd.DataFrame,
    players: Sequence | np.ndarray | pd.Series,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Recompute the mean-based metrics on bootstrap samples of whole players.

    Each replicate draws as many players as there are, with replacement, and keeps every row of
    each drawn player, so a player's games move the metric together. The replicates are computed
    from per-player sums: a replicate's metric is the count-weighted sum of per-player totals
    divided by its row count, which avoids materializing resampled rows. Medians do not
    decompose this way and are not bootstrapped.

    Parameters
    ----------
    per_row : pd.DataFrame
        Output of :func:`score_forecast`.
    players : array-like
        Player id of each row, aligned by position.
    n_boot : int
        Number of replicates.
    seed : int
        Seed of the numpy random generator.

    Returns
    -------
    pd.DataFrame
        One row per replicate, one column per metric (``coverage_XX``, ``width_XX_mean``,
        ``mae``, ``rmse``, ``crps``, ``pinball_XX``).
    """
    _check_per_row(per_row)
    player_codes, n_players = _player_codes(players, len(per_row))
    if n_boot < 1:
        raise EvaluationError(f"n_boot={n_boot} is invalid; pass a positive number of replicates")

    metric_columns, values = _bootstrap_matrix(per_row)
    totals = np.zeros((n_players, values.shape[1]))
    np.add.at(totals, player_codes, values)
    counts = np.bincount(player_codes, minlength=n_players).astype(float)

    rng = np.random.default_rng(seed)
    # How many times each player is drawn in each replicate.
    multiplicity = rng.multinomial(n_players, np.full(n_players, 1.0 / n_players), size=n_boot)

    means = (multiplicity @ totals) / (multiplicity @ counts)[:, None]
    replicates = pd.DataFrame(means, columns=metric_columns)
    replicates["rmse"] = np.sqrt(replicates.pop("squared_error"))
    return replicates


def bootstrap_by_player(
    per_row: pd.DataFrame,
    players: Sequence | np.ndarray | pd.Series,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.9,
) -> dict[str, tuple[float, float]]:
    """Compute percentile bootstrap intervals of the metrics, resampling whole players.

    Parameters
    ----------
    per_row : pd.DataFrame
        Output of :func:`score_forecast`.
    players : array-like
        Player id of each row, aligned by position.
    n_boot : int
        Number of replicates.
    seed : int
        Seed of the numpy random generator.
    confidence : float
        Probability of the percentile interval; 0.9 gives the 5th and 95th percentiles.

    Returns
    -------
    dict
        Metric name to ``(lower, upper)``; metrics as in :func:`player_bootstrap_replicates`.
    """
    replicates = player_bootstrap_replicates(per_row, players, n_boot=n_boot, seed=seed)
    return _percentile_intervals(replicates, confidence)


def bootstrap_difference(
    per_row_a: pd.DataFrame,
    per_row_b: pd.DataFrame,
    players: Sequence | np.ndarray | pd.Series,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.9,
) -> dict[str, dict[str, float]]:
    """Compute paired player-bootstrap intervals of metric differences ``a - b``.

    Both forecasts are resampled with the same players in every replicate, so the interval
    reflects only how the two forecasts differ on the same games.

    Parameters
    ----------
    per_row_a, per_row_b : pd.DataFrame
        Outputs of :func:`score_forecast` on the same rows in the same order; the row ids are
        taken from their indexes.
    players : array-like
        Player id of each row, aligned by position.
    n_boot : int
        Number of replicates.
    seed : int
        Seed of the numpy random generator.
    confidence : float
        Probability of the percentile interval.

    Returns
    -------
    dict
        Metric name to ``{"estimate": a - b on all rows, "lower": ..., "upper": ...}``.

    Raises
    ------
    RowMismatchError
        If the two forecasts were scored on different rows.
    """
    check_identical_rows(per_row_a.index, per_row_b.index)
    replicates_a = player_bootstrap_replicates(per_row_a, players, n_boot=n_boot, seed=seed)
    replicates_b = player_bootstrap_replicates(per_row_b, players, n_boot=n_boot, seed=seed)
    shared = [column for column in replicates_a.columns if column in replicates_b.columns]
    differences = replicates_a[shared] - replicates_b[shared]
    intervals = _percentile_intervals(differences, confidence)

    summary_a = summarize(per_row_a)
    summary_b = summarize(per_row_b)
    result: dict[str, dict[str, float]] = {}
    for metric in shared:
        lower, upper = intervals[metric]
        estimate = summary_a[metric] - summary_b[metric]
        result[metric] = {"estimate": float(estimate), "lower": lower, "upper": upper}
    return result


# --------------------------------------------------------------------------- helpers


def _check_levels(
    levels: Sequence[float] | np.ndarray, *, require_sorted: bool = True
) -> np.ndarray:
    values = np.asarray(levels, dtype=float).ravel()
    if values.size == 0:
        raise EvaluationError("no quantile levels were given; pass at least one level in (0, 1)")
    if not np.all((values > 0) & (values < 1)):
        raise EvaluationError(
            f"quantile levels {values[(values <= 0) | (values >= 1)].tolist()} are outside "
            "(0, 1); pass probabilities strictly between 0 and 1"
        )
    if require_sorted and np.any(np.diff(values) <= 0):
        raise EvaluationError(
            "quantile levels must be strictly increasing; sort the levels and their columns"
        )
    return values


def _check_outcomes(y: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    values = np.asarray(y, dtype=float)
    if values.ndim != 1:
        raise EvaluationError(f"y has shape {values.shape}; pass a one-dimensional array")
    if not np.all(np.isfinite(values)):
        raise EvaluationError(
            f"y has {int((~np.isfinite(values)).sum())} missing or infinite values; "
            "drop those rows before scoring"
        )
    return values


def _check_draws(draws: np.ndarray, n_rows: int | None = None) -> np.ndarray:
    values = np.asarray(draws, dtype=float)
    if values.ndim != 2 or values.shape[1] == 0:
        raise EvaluationError(
            f"draws has shape {values.shape}; pass an array of shape (n_rows, n_draws)"
        )
    if n_rows is not None and values.shape[0] != n_rows:
        raise EvaluationError(
            f"draws has {values.shape[0]} rows but y has {n_rows}; align draws with outcomes"
        )
    if not np.all(np.isfinite(values)):
        raise EvaluationError("draws contains missing or infinite values; check the sampler")
    return values


def _check_quantiles(
    quantiles: pd.DataFrame | np.ndarray,
    quantile_levels: Sequence[float] | np.ndarray | None,
    n_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(quantiles, pd.DataFrame):
        if quantile_levels is not None:
            raise EvaluationError(
                "quantiles is a DataFrame whose columns are its levels; drop quantile_levels="
            )
        try:
            levels = np.array([_parse_level(column) for column in quantiles.columns])
        except (TypeError, ValueError) as error:
            raise EvaluationError(
                f"quantile columns {list(quantiles.columns)[:5]} are not float levels; label "
                "the columns with their levels, e.g. with evaluation.quantile_frame"
            ) from error
        values = quantiles.to_numpy(dtype=float)
    else:
        levels = np.asarray(QUANTILE_LEVELS if quantile_levels is None else quantile_levels)
        values = np.asarray(quantiles, dtype=float)
    levels = _check_levels(levels)
    if values.ndim != 2 or values.shape[1] != levels.size:
        raise EvaluationError(
            f"quantiles have shape {values.shape} but there are {levels.size} levels; pass "
            "one column per level"
        )
    if n_rows is not None and values.shape[0] != n_rows:
        raise EvaluationError(
            f"quantiles have {values.shape[0]} rows but y has {n_rows}; align them with outcomes"
        )
    if not np.all(np.isfinite(values)):
        raise EvaluationError("quantiles contain missing or infinite values; check the model")
    crossing = np.diff(values, axis=1) < -1e-9 * np.maximum(1.0, np.abs(values[:, 1:]))
    if crossing.any():
        raise EvaluationError(
            f"quantiles decrease with the level in {int(crossing.any(axis=1).sum())} rows; "
            "sort each row first, e.g. with evaluation.rearrange_quantiles"
        )
    return values, levels


def _parse_level(column: object) -> float:
    """Read a quantile level from a float column label or a ``"q0.010"`` style name."""
    if isinstance(column, str) and column.startswith("q"):
        return float(column[1:])
    return float(column)


def _central_bounds_levels(levels: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return the lower and upper quantile level of each central level, interleaved."""
    central = _check_levels(levels, require_sorted=False)
    bounds = np.empty(2 * central.size)
    bounds[0::2] = (1.0 - central) / 2.0
    bounds[1::2] = (1.0 + central) / 2.0
    return np.round(bounds, 12)


def _forecast_quantiles(
    requested_levels: np.ndarray,
    *,
    draws: np.ndarray | None,
    quantiles: pd.DataFrame | np.ndarray | None,
    levels: Sequence[float] | np.ndarray | None,
) -> np.ndarray:
    if (draws is None) == (quantiles is None):
        raise EvaluationError("pass exactly one of draws= and quantiles=")
    if draws is not None:
        return quantiles_from_draws(draws, requested_levels)
    grid, grid_levels = _check_quantiles(quantiles, levels)
    return interpolate_quantiles(grid, grid_levels, requested_levels)


def _crps_from_grid(y: np.ndarray, grid: np.ndarray, levels: np.ndarray) -> np.ndarray:
    even_grid = np.round(np.arange(1, 100) / 100, 6)
    on_even_grid = np.isin(np.round(levels, 6), even_grid)
    if on_even_grid.sum() == even_grid.size:
        grid = grid[:, on_even_grid]
        levels = levels[on_even_grid]
    return np.asarray(sr.crps_quantile(y, grid, levels, backend="numpy"), dtype=float)


def _pit_from_grid(y: np.ndarray, grid: np.ndarray, levels: np.ndarray) -> np.ndarray:
    n_levels = levels.size
    n_below = (grid < y[:, None]).sum(axis=1)
    n_at_most = (grid <= y[:, None]).sum(axis=1)
    pit = np.empty(y.size)

    ties = n_at_most > n_below
    if ties.any():
        tied = grid[ties] == y[ties, None]
        pit[ties] = (tied * levels).sum(axis=1) / tied.sum(axis=1)

    inside = ~ties & (n_below > 0) & (n_below < n_levels)
    upper = n_below[inside]
    lower = upper - 1
    rows = np.flatnonzero(inside)
    q_lower = grid[rows, lower]
    q_upper = grid[rows, upper]
    weight = (y[inside] - q_lower) / (q_upper - q_lower)
    pit[inside] = levels[lower] + weight * (levels[upper] - levels[lower])

    pit[~ties & (n_below == 0)] = levels[0]
    pit[~ties & (n_below == n_levels)] = levels[-1]
    return pit


def _check_per_row(per_row: pd.DataFrame) -> None:
    if not isinstance(per_row, pd.DataFrame) or per_row.empty:
        raise EvaluationError("per_row is empty or not a DataFrame; pass score_forecast output")
    missing = [column for column in ("abs_error", "squared_error", "crps") if column not in per_row]
    if missing:
        raise EvaluationError(
            f"per_row lacks columns {missing}; pass the output of evaluation.score_forecast"
        )


def _coverage_columns(per_row: pd.DataFrame) -> list[str]:
    return [column for column in per_row.columns if column.startswith("covered_")]


def _width_columns(per_row: pd.DataFrame) -> list[str]:
    return [column for column in per_row.columns if column.startswith("width_")]


def _pinball_columns(per_row: pd.DataFrame) -> list[str]:
    return [column for column in per_row.columns if column.startswith("pinball_")]


def _bootstrap_matrix(per_row: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Return the metric names and the per-row values whose means are the metrics."""
    names: list[str] = []
    columns: list[np.ndarray] = []
    for column in _coverage_columns(per_row):
        names.append(column.replace("covered_", "coverage_"))
        columns.append(per_row[column].to_numpy(dtype=float))
    for column in _width_columns(per_row):
        names.append(f"{column}_mean")
        columns.append(per_row[column].to_numpy(dtype=float))
    renamed = {"abs_error": "mae", "crps": "crps", "squared_error": "squared_error"}
    for column, name in renamed.items():
        names.append(name)
        columns.append(per_row[column].to_numpy(dtype=float))
    for column in _pinball_columns(per_row):
        names.append(column)
        columns.append(per_row[column].to_numpy(dtype=float))
    return names, np.column_stack(columns)


def _player_codes(
    players: Sequence | np.ndarray | pd.Series, n_rows: int
) -> tuple[np.ndarray, int]:
    values = np.asarray(players, dtype=object)
    if values.shape != (n_rows,):
        raise EvaluationError(
            f"players has shape {values.shape} but per_row has {n_rows} rows; pass one player "
            "id per scored row"
        )
    if pd.isna(values).any():
        raise EvaluationError("players contains missing ids; every scored row needs a player")
    codes, uniques = pd.factorize(values)
    return codes, len(uniques)


def _percentile_intervals(
    replicates: pd.DataFrame, confidence: float
) -> dict[str, tuple[float, float]]:
    if not 0 < confidence < 1:
        raise EvaluationError(f"confidence={confidence} is invalid; pass a value in (0, 1)")
    tail = (1.0 - confidence) / 2.0
    bounds = np.quantile(replicates.to_numpy(), [tail, 1.0 - tail], axis=0)
    return {
        metric: (float(bounds[0, position]), float(bounds[1, position]))
        for position, metric in enumerate(replicates.columns)
    }
