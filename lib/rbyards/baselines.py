"""Non-Bayesian baselines that forecast rushing yards as quantiles on the shared grid.

Every baseline takes ``X_train, y_train`` (training rows), ``X_cal, y_cal`` (a held-out
calibration window that follows the training period) and ``X_test``, and returns a DataFrame of
predictive quantiles in yards with one float-labelled column per level of
:data:`rbyards.evaluation.QUANTILE_LEVELS`. No baseline receives test outcomes. Models are fitted
on training rows only; only the conformal baselines use the calibration window, and only to
compute conformity scores.

Quantile models are fitted on the model scale ``log(yards + log_shift)`` and transformed back,
which preserves quantiles because the transform is monotone. To keep fitting fast, the linear and
gradient boosted models fit only :data:`FITTED_LEVELS`: the ends of the scored central intervals,
the pinball levels and the 0.01/0.99 edges of the grid. The other levels are interpolated
linearly in the level after sorting, so the returned quantiles never decrease with the level.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from mapie.regression import ConformalizedQuantileRegressor, SplitConformalRegressor
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import QuantileRegressor
from sklearn.model_selection import TimeSeriesSplit

from rbyards.evaluation import (
    QUANTILE_LEVELS,
    central_level_pairs,
    interpolate_quantiles,
    quantile_frame,
    rearrange_quantiles,
)

logger = logging.getLogger(__name__)

#: Levels the linear and gradient boosted quantile models fit directly; the rest of the grid is
#: interpolated. Contains the ends of the 50/68/80/90/95% central intervals, the 0.05/0.5/0.95
#: pinball levels and the 0.01/0.99 edges of the grid.
FITTED_LEVELS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.16,
    0.25,
    0.5,
    0.75,
    0.84,
    0.9,
    0.95,
    0.975,
    0.99,
)

#: Levels whose mean pinball loss on validation folds selects the tuning parameters.
TUNING_LEVELS: tuple[float, ...] = (0.05, 0.5, 0.95)

#: Penalties of the linear quantile regression tried by cross-validation.
QUANTILE_REGRESSION_ALPHAS: tuple[float, ...] = (0.0, 1e-3, 1e-2, 1e-1)

#: LightGBM settings tried by cross-validation; learning rate 0.05 and 1 thread throughout.
GRADIENT_BOOSTING_GRID: tuple[dict[str, int], ...] = (
    {"num_leaves": 7, "n_estimators": 100, "min_child_samples": 40},
    {"num_leaves": 7, "n_estimators": 300, "min_child_samples": 40},
    {"num_leaves": 15, "n_estimators": 100, "min_child_samples": 20},
    {"num_leaves": 15, "n_estimators": 300, "min_child_samples": 20},
)


class BaselineInputError(ValueError):
    """Invalid baseline input: shapes, missing values, or too few rows."""


@dataclass(frozen=True)
class _Inputs:
    X_train: np.ndarray
    y_train: np.ndarray
    X_cal: np.ndarray
    y_cal: np.ndarray
    X_test: np.ndarray


class _QuantileGridModel:
    """One fitted regressor per level in :data:`FITTED_LEVELS`, on the model scale.

    Predictions of the fitted levels are cached per feature array, because conformalizing every
    central level of the grid predicts the same calibration and test rows about 100 times.
    """

    _CACHE_SIZE = 4

    def __init__(self, estimators: dict[float, RegressorMixin]) -> None:
        self.levels = np.array(sorted(estimators))
        self.estimators = [estimators[level] for level in self.levels]
        self._cache: dict[tuple, np.ndarray] = {}

    def predict(self, X: np.ndarray, levels: Sequence[float] | np.ndarray) -> np.ndarray:
        return interpolate_quantiles(self._predict_fitted_levels(X), self.levels, levels)

    def _predict_fitted_levels(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=float)
        key = (X.shape, hashlib.sha1(X.tobytes()).hexdigest())
        if key not in self._cache:
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            fitted = np.column_stack([estimator.predict(X) for estimator in self.estimators])
            self._cache[key] = rearrange_quantiles(fitted)
        return self._cache[key]


class _LevelRegressor(RegressorMixin, BaseEstimator):
    """Fitted view of one quantile level of a grid model, for MAPIE's prefit interface.

    MAPIE's ``ConformalizedQuantileRegressor(prefit=True)`` takes three fitted regressors (lower,
    upper, median); this exposes an interpolated level of an already fitted grid model as one.
    """

    def __init__(self, grid_model: _QuantileGridModel | None = None, level: float = 0.5) -> None:
        self.grid_model = grid_model
        self.level = level

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> _LevelRegressor:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.grid_model.predict(np.asarray(X, dtype=float), [self.level])[:, 0]


def quantile_regression(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_cal: np.ndarray | None,
    y_cal: np.ndarray | None,
    X_test: np.ndarray,
    *,
    levels: Sequence[float] | np.ndarray = QUANTILE_LEVELS,
    log_shift: float = 10.0,
    alphas: Sequence[float] = QUANTILE_REGRESSION_ALPHAS,
    n_splits: int = 3,
    train_time: Sequence[float] | np.ndarray | None = None,
    solver: str = "highs",
) -> pd.DataFrame:
    """Forecast quantiles with linear quantile regression on log-shifted yards.

    The L1 penalty ``alpha`` of scikit-learn's ``QuantileRegressor`` (HiGHS linear programming) is
    chosen by time-ordered cross-validation on the training rows: expanding-window folds from
    ``TimeSeriesSplit``, scored by the mean pinball loss at :data:`TUNING_LEVELS`. The chosen
    penalty is then used to fit :data:`FITTED_LEVELS` on all training rows. The calibration
    window is not used.

    Parameters
    ----------
    X_train, y_train : np.ndarray
        Training features (n_train, n_features) and yards (n_train,).
    X_cal, y_cal : np.ndarray or None
        Calibration window; accepted for a common signature and ignored.
    X_test : np.ndarray
        Test features (n_test, n_features).
    levels : sequence of float
        Quantile levels to return, within [0.01, 0.99].
    log_shift : float
        Shift of the model scale ``log(yards + log_shift)``.
    alphas : sequence of float
        Candidate penalties.
    n_splits : int
        Number of time-ordered folds.
    train_time : array-like, optional
        Sortable game time of each training row (for example ``season * 100 + week``); rows are
        taken in the given order when omitted.
    solver : str
        ``scipy.optimize.linprog`` method passed to ``QuantileRegressor``. ``"highs-ipm"``
        fitted 4,000 rows about three times faster than ``"highs"`` in one measurement.

    Returns
    -------
    pd.DataFrame
        Quantiles in yards, shape (n_test, n_levels), columns are the levels.
    """
    inputs = _check_inputs(X_train, y_train, X_cal, y_cal, X_test, log_shift)
    y_model = _to_model_scale(inputs.y_train, log_shift)
    order = _time_order(len(y_model), train_time)

    def make_estimator(level: float, alpha: float) -> QuantileRegressor:
        return QuantileRegressor(quantile=level, alpha=alpha, solver=solver)

    started = time.perf_counter()
    best_alpha = _select_by_time_cv(
        list(alphas), make_estimator, inputs.X_train[order], y_model[order], n_splits
    )
    model = _fit_grid(lambda level: make_estimator(level, best_alpha), inputs.X_train, y_model)
    logger.info(
        "quantile_regression: alpha=%g chosen, fitted in %.1f s",
        best_alpha,
        time.perf_counter() - started,
    )
    return _to_yards_frame(model.predict(inputs.X_test, levels), levels, log_shift)


def gradient_boosted_quantiles(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_cal: np.ndarray | None,
    y_cal: np.ndarray | None,
    X_test: np.ndarray,
    *,
    levels: Sequence[float] | np.ndarray = QUANTILE_LEVELS,
    log_shift: float = 10.0,
    grid: Sequence[dict[str, int]] = GRADIENT_BOOSTING_GRID,
    n_splits: int = 3,
    train_time: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Forecast quantiles with LightGBM's quantile objective on log-shifted yards.

    One model per level in :data:`FITTED_LEVELS`; the setting in ``grid`` with the lowest
    time-ordered cross-validated pinball loss at :data:`TUNING_LEVELS` is used for all of them.
    Crossing quantiles are sorted before the grid is interpolated. The calibration window is
    not used.

    Parameters
    ----------
    X_train, y_train : np.ndarray
        Training features and yards.
    X_cal, y_cal : np.ndarray or None
        Calibration window; accepted for a common signature and ignored.
    X_test : np.ndarray
        Test features.
    levels : sequence of float
        Quantile levels to return, within [0.01, 0.99].
    log_shift : float
        Shift of the model scale.
    grid : sequence of dict
        Candidate LightGBM settings (``num_leaves``, ``n_estimators``, ``min_child_samples``).
    n_splits : int
        Number of time-ordered folds.
    train_time : array-like, optional
        Sortable game time of each training row.
    seed : int
        LightGBM random seed.

    Returns
    -------
    pd.DataFrame
        Quantiles in yards, shape (n_test, n_levels).
    """
    inputs = _check_inputs(X_train, y_train, X_cal, y_cal, X_test, log_shift)
    y_model = _to_model_scale(inputs.y_train, log_shift)
    order = _time_order(len(y_model), train_time)
    started = time.perf_counter()
    model = _fit_boosted_grid(inputs.X_train, y_model, order, list(grid), n_splits, seed)
    logger.info("gradient_boosted_quantiles: fitted in %.1f s", time.perf_counter() - started)
    return _to_yards_frame(model.predict(inputs.X_test, levels), levels, log_shift)


def conformalized_quantile_regression(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_cal: np.ndarray,
    y_cal: np.ndarray,
    X_test: np.ndarray,
    *,
    levels: Sequence[float] | np.ndarray = QUANTILE_LEVELS,
    log_shift: float = 10.0,
    base: str = "gradient_boosting",
    grid: Sequence[dict[str, int]] = GRADIENT_BOOSTING_GRID,
    n_splits: int = 3,
    train_time: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Forecast quantiles by conformalizing a quantile model on the calibration window.

    The base quantile model is fitted on the training rows as in
    :func:`gradient_boosted_quantiles` (or :func:`quantile_regression` with
    ``base="linear"``). Each central level ``L`` of the grid, a pair of levels ``tau`` and
    ``1 - tau``, is conformalized by MAPIE 1.6.0's ``ConformalizedQuantileRegressor`` with the
    fitted lower, upper and median models (``prefit=True``). It computes the conformity scores
    ``max(q_lo - y, y - q_hi)`` on the calibration window and moves both ends by their
    finite-sample ``ceil((n + 1) L) / n`` quantile (``symmetric_correction=True``, as in
    Romano, Patterson and Candes, 2019). Scores are computed on the log-shifted scale. The
    median stays the base model's median, and the result is sorted per row because each level
    gets its own correction.

    Parameters
    ----------
    X_train, y_train : np.ndarray
        Training features and yards.
    X_cal, y_cal : np.ndarray
        Calibration window features and yards; needs at least 50 rows so that the 98%
        interval of the grid has a finite correction.
    X_test : np.ndarray
        Test features.
    levels : sequence of float
        Quantile levels to return; symmetric around 0.5 and containing 0.5.
    log_shift : float
        Shift of the model scale.
    base : {"gradient_boosting", "linear"}
        Base quantile model.
    grid : sequence of dict
        Candidate LightGBM settings when ``base="gradient_boosting"``.
    n_splits : int
        Number of time-ordered folds used to tune the base model.
    train_time : array-like, optional
        Sortable game time of each training row.
    seed : int
        LightGBM random seed.

    Returns
    -------
    pd.DataFrame
        Quantiles in yards, shape (n_test, n_levels).
    """
    inputs = _check_inputs(X_train, y_train, X_cal, y_cal, X_test, log_shift, need_cal=True)
    levels_array, pairs = central_level_pairs(levels)
    y_model = _to_model_scale(inputs.y_train, log_shift)
    y_cal_model = _to_model_scale(inputs.y_cal, log_shift)
    order = _time_order(len(y_model), train_time)

    started = time.perf_counter()
    if base == "gradient_boosting":
        model = _fit_boosted_grid(inputs.X_train, y_model, order, list(grid), n_splits, seed)
    elif base == "linear":
        best_alpha = _select_by_time_cv(
            list(QUANTILE_REGRESSION_ALPHAS),
            lambda level, alpha: QuantileRegressor(quantile=level, alpha=alpha, solver="highs"),
            inputs.X_train[order],
            y_model[order],
            n_splits,
        )
        model = _fit_grid(
            lambda level: QuantileRegressor(quantile=level, alpha=best_alpha, solver="highs"),
            inputs.X_train,
            y_model,
        )
    else:
        raise BaselineInputError(
            f"base={base!r} is not a known base model; use 'gradient_boosting' or 'linear'"
        )

    median = _LevelRegressor(model, 0.5).fit(inputs.X_train)
    result = np.empty((inputs.X_test.shape[0], levels_array.size))
    result[:, np.flatnonzero(np.isclose(levels_array, 0.5))[0]] = median.predict(inputs.X_test)
    for lower_index, upper_index in pairs:
        lower_level = levels_array[lower_index]
        upper_level = levels_array[upper_index]
        estimators = [
            _LevelRegressor(model, lower_level).fit(inputs.X_train),
            _LevelRegressor(model, upper_level).fit(inputs.X_train),
            median,
        ]
        conformalizer = ConformalizedQuantileRegressor(
            estimator=estimators, confidence_level=upper_level - lower_level, prefit=True
        )
        conformalizer.conformalize(inputs.X_cal, y_cal_model)
        # NOTE: MAPIE 1.6.0 calls logging.basicConfig and logs "The predictions are ill-sorted"
        # on the root logger when a negative correction puts the median outside a narrow
        # interval. The message is harmless because the rows are sorted below.
        _, intervals = conformalizer.predict_interval(inputs.X_test, symmetric_correction=True)
        result[:, lower_index] = intervals[:, 0, 0]
        result[:, upper_index] = intervals[:, 1, 0]
    logger.info(
        "conformalized_quantile_regression: base=%s, %d calibration rows, %.1f s",
        base,
        len(y_cal_model),
        time.perf_counter() - started,
    )
    return _to_yards_frame(rearrange_quantiles(result), levels_array, log_shift)


def split_conformal_forest(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_cal: np.ndarray,
    y_cal: np.ndarray,
    X_test: np.ndarray,
    *,
    levels: Sequence[float] | np.ndarray = QUANTILE_LEVELS,
    log_shift: float = 10.0,
    n_estimators: int = 200,
    min_samples_leaf: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """Forecast quantiles by split conformal prediction around a random forest.

    A scikit-learn ``RandomForestRegressor`` is fitted on training rows on the log-shifted
    scale; MAPIE 1.6.0's ``SplitConformalRegressor`` (``prefit=True``, absolute residual score)
    computes residuals on the calibration window and returns one interval per central level of
    the grid. The intervals are symmetric on the log scale, so skewed in yards, and have the
    same log-scale width for every row. The 0.5 quantile is the forest's point prediction.

    Parameters
    ----------
    X_train, y_train : np.ndarray
        Training features and yards.
    X_cal, y_cal : np.ndarray
        Calibration window features and yards; at least 50 rows.
    X_test : np.ndarray
        Test features.
    levels : sequence of float
        Quantile levels to return; symmetric around 0.5 and containing 0.5.
    log_shift : float
        Shift of the model scale.
    n_estimators, min_samples_leaf : int
        Forest settings.
    seed : int
        Forest random seed.

    Returns
    -------
    pd.DataFrame
        Quantiles in yards, shape (n_test, n_levels).
    """
    inputs = _check_inputs(X_train, y_train, X_cal, y_cal, X_test, log_shift, need_cal=True)
    levels_array, pairs = central_level_pairs(levels)
    started = time.perf_counter()
    forest = RandomForestRegressor(
        n_estimators=n_estimators, min_samples_leaf=min_samples_leaf, random_state=seed
    ).fit(inputs.X_train, _to_model_scale(inputs.y_train, log_shift))

    central_levels = [float(levels_array[upper] - levels_array[lower]) for lower, upper in pairs]
    conformalizer = SplitConformalRegressor(
        estimator=forest, confidence_level=central_levels, conformity_score="absolute", prefit=True
    )
    conformalizer.conformalize(inputs.X_cal, _to_model_scale(inputs.y_cal, log_shift))
    points, intervals = conformalizer.predict_interval(inputs.X_test)

    result = np.empty((inputs.X_test.shape[0], levels_array.size))
    result[:, np.flatnonzero(np.isclose(levels_array, 0.5))[0]] = points
    for position, (lower_index, upper_index) in enumerate(pairs):
        result[:, lower_index] = intervals[:, 0, position]
        result[:, upper_index] = intervals[:, 1, position]
    logger.info("split_conformal_forest: fitted in %.1f s", time.perf_counter() - started)
    return _to_yards_frame(rearrange_quantiles(result), levels_array, log_shift)


def empirical_baseline(
    X_train: np.ndarray | None,
    y_train: np.ndarray,
    X_cal: np.ndarray | None,
    y_cal: np.ndarray | None,
    X_test: np.ndarray | None,
    *,
    test_history: Sequence[Sequence[float] | np.ndarray],
    levels: Sequence[float] | np.ndarray = QUANTILE_LEVELS,
    min_games: int = 6,
    max_games: int = 16,
) -> pd.DataFrame:
    """Forecast each test row with the empirical quantiles of the player's recent games.

    A row whose player has at least ``min_games`` earlier games gets the quantiles (numpy's
    linear interpolation) of the player's last ``max_games`` outcomes. Other rows get the
    quantiles of all training outcomes, the league's training distribution. Features are not
    used.

    Parameters
    ----------
    X_train, X_cal, X_test : np.ndarray or None
        Accepted for a common signature and ignored.
    y_train : np.ndarray
        Training yards, the fallback distribution.
    y_cal : np.ndarray or None
        Accepted for a common signature and ignored.
    test_history : sequence of arrays
        For each test row, the player's yards in games played before that row's game, oldest
        first, for example from :func:`player_histories`. It must not contain the row's own
        outcome or later games.
    levels : sequence of float
        Quantile levels to return.
    min_games : int
        Minimum number of earlier games that make the player's own distribution usable.
    max_games : int
        Maximum number of most recent games used.

    Returns
    -------
    pd.DataFrame
        Quantiles in yards, shape (n_test, n_levels).
    """
    y_train_values = _check_target(y_train, "y_train")
    if X_test is not None and len(X_test) != len(test_history):
        raise BaselineInputError(
            f"test_history has {len(test_history)} entries but X_test has {len(X_test)} rows; "
            "pass one history per test row"
        )
    if min_games < 1 or max_games < min_games:
        raise BaselineInputError(
            f"min_games={min_games}, max_games={max_games} are invalid; use "
            "1 <= min_games <= max_games"
        )
    levels_array = np.asarray(levels, dtype=float)
    league = np.quantile(y_train_values, levels_array)
    result = np.tile(league, (len(test_history), 1))
    n_own = 0
    for row, history in enumerate(test_history):
        outcomes = np.asarray(history, dtype=float)
        outcomes = outcomes[np.isfinite(outcomes)]
        if outcomes.size >= min_games:
            result[row] = np.quantile(outcomes[-max_games:], levels_array)
            n_own += 1
    logger.info(
        "empirical_baseline: %d of %d rows use the player's own games",
        n_own,
        len(test_history),
    )
    return quantile_frame(result, levels_array)


def player_histories(
    history: pd.DataFrame,
    targets: pd.DataFrame,
    *,
    player_column: str = "player_id",
    season_column: str = "season",
    week_column: str = "week",
    value_column: str = "rushing_yards",
    max_games: int | None = None,
) -> list[np.ndarray]:
    """Collect each target row's earlier outcomes for the same player.

    Parameters
    ----------
    history : pd.DataFrame
        Games whose outcomes are known, with player, season, week and value columns.
    targets : pd.DataFrame
        Rows to forecast, with player, season and week columns.
    player_column, season_column, week_column, value_column : str
        Column names.
    max_games : int, optional
        Keep only this many most recent games.

    Returns
    -------
    list of np.ndarray
        For each target row in order, the values of ``history`` rows of the same player with a
        strictly earlier (season, week), oldest first.
    """
    for frame_name, frame, columns in (
        ("history", history, (player_column, season_column, week_column, value_column)),
        ("targets", targets, (player_column, season_column, week_column)),
    ):
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise BaselineInputError(
                f"{frame_name} lacks columns {missing}; pass frames with player, season, week "
                "and outcome columns"
            )

    def game_time(frame: pd.DataFrame) -> np.ndarray:
        return frame[season_column].to_numpy(dtype=np.int64) * 100 + frame[week_column].to_numpy(
            dtype=np.int64
        )

    ordered = history.assign(_time=game_time(history)).sort_values("_time", kind="stable")
    by_player = {
        player: (group["_time"].to_numpy(), group[value_column].to_numpy(dtype=float))
        for player, group in ordered.groupby(player_column, sort=False)
    }
    empty = np.empty(0)
    result: list[np.ndarray] = []
    for player, target_time in zip(targets[player_column], game_time(targets), strict=True):
        times, values = by_player.get(player, (empty, empty))
        earlier = values[: np.searchsorted(times, target_time, side="left")]
        result.append(earlier if max_games is None else earlier[-max_games:])
    return result


#: Baselines by name. All take ``(X_train, y_train, X_cal, y_cal, X_test, **options)``;
#: ``"empirical"`` also needs ``test_history=`` (see :func:`player_histories`).
BASELINES: dict[str, Callable[..., pd.DataFrame]] = {
    "quantile_regression": quantile_regression,
    "gradient_boosted_quantiles": gradient_boosted_quantiles,
    "conformalized_quantile_regression": conformalized_quantile_regression,
    "split_conformal_forest": split_conformal_forest,
    "empirical": empirical_baseline,
}


# --------------------------------------------------------------------------- helpers


def _check_target(y: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(y, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise BaselineInputError(f"{name} has shape {values.shape}; pass a non-empty 1-d array")
    if not np.all(np.isfinite(values)):
        raise BaselineInputError(
            f"{name} has {int((~np.isfinite(values)).sum())} missing or infinite values; drop "
            "those rows first"
        )
    return values


def _check_features(X: np.ndarray, name: str, n_features: int | None = None) -> np.ndarray:
    values = np.asarray(X, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0:
        raise BaselineInputError(
            f"{name} has shape {values.shape}; pass a non-empty (n_rows, n_features) array"
        )
    if n_features is not None and values.shape[1] != n_features:
        raise BaselineInputError(
            f"{name} has {values.shape[1]} features but X_train has {n_features}; use the same "
            "feature columns for every role"
        )
    if not np.all(np.isfinite(values)):
        raise BaselineInputError(f"{name} contains missing or infinite features; impute them")
    return values


def _check_inputs(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_cal: np.ndarray | None,
    y_cal: np.ndarray | None,
    X_test: np.ndarray,
    log_shift: float,
    *,
    need_cal: bool = False,
) -> _Inputs:
    X_train_values = _check_features(X_train, "X_train")
    n_features = X_train_values.shape[1]
    y_train_values = _check_target(y_train, "y_train")
    if len(y_train_values) != len(X_train_values):
        raise BaselineInputError(
            f"X_train has {len(X_train_values)} rows but y_train has {len(y_train_values)}"
        )
    X_test_values = _check_features(X_test, "X_test", n_features)
    X_cal_values = np.empty((0, n_features))
    y_cal_values = np.empty(0)
    if need_cal:
        if X_cal is None or y_cal is None or len(X_cal) == 0:
            raise BaselineInputError(
                "this baseline needs a calibration window; build the dataset with "
                "calibration_weeks > 0"
            )
        X_cal_values = _check_features(X_cal, "X_cal", n_features)
        y_cal_values = _check_target(y_cal, "y_cal")
        if len(y_cal_values) != len(X_cal_values):
            raise BaselineInputError(
                f"X_cal has {len(X_cal_values)} rows but y_cal has {len(y_cal_values)}"
            )
        if len(y_cal_values) < 50:
            raise BaselineInputError(
                f"the calibration window has {len(y_cal_values)} rows but conformal intervals "
                "up to 98% need at least 50; use more calibration weeks"
            )
    for name, values in (("y_train", y_train_values), ("y_cal", y_cal_values)):
        if values.size and values.min() <= -log_shift:
            raise BaselineInputError(
                f"{name} has a value {values.min():g} <= -log_shift ({-log_shift:g}); raise "
                "log_shift so that log(yards + log_shift) is defined"
            )
    return _Inputs(X_train_values, y_train_values, X_cal_values, y_cal_values, X_test_values)


def _to_model_scale(y: np.ndarray, log_shift: float) -> np.ndarray:
    return np.log(y + log_shift)


def _to_yards_frame(
    quantiles_model: np.ndarray, levels: Sequence[float] | np.ndarray, log_shift: float
) -> pd.DataFrame:
    return quantile_frame(np.exp(quantiles_model) - log_shift, levels)


def _time_order(n_rows: int, train_time: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if train_time is None:
        return np.arange(n_rows)
    times = np.asarray(train_time)
    if times.shape != (n_rows,):
        raise BaselineInputError(
            f"train_time has shape {times.shape} but there are {n_rows} training rows"
        )
    return np.argsort(times, kind="stable")


def _mean_pinball(y: np.ndarray, predictions: np.ndarray, level: float) -> float:
    residual = y - predictions
    return float(np.mean(np.maximum(level * residual, (level - 1.0) * residual)))


def _select_by_time_cv(
    candidates: list,
    make_estimator: Callable[[float, object], RegressorMixin],
    X_ordered: np.ndarray,
    y_ordered: np.ndarray,
    n_splits: int,
):
    """Return the candidate with the lowest mean pinball loss over time-ordered folds."""
    if len(candidates) == 1:
        return candidates[0]
    if len(y_ordered) < 4 * (n_splits + 1):
        raise BaselineInputError(
            f"{len(y_ordered)} training rows are too few for {n_splits} time-ordered folds; "
            "use more training rows or fewer folds"
        )
    losses = np.zeros(len(candidates))
    for fit_rows, validation_rows in TimeSeriesSplit(n_splits=n_splits).split(X_ordered):
        for position, candidate in enumerate(candidates):
            for level in TUNING_LEVELS:
                estimator = make_estimator(level, candidate)
                estimator.fit(X_ordered[fit_rows], y_ordered[fit_rows])
                predictions = estimator.predict(X_ordered[validation_rows])
                losses[position] += _mean_pinball(y_ordered[validation_rows], predictions, level)
    best = int(np.argmin(losses))
    logger.info("time-ordered CV losses %s; chose %s", np.round(losses, 4), candidates[best])
    return candidates[best]


def _fit_grid(
    make_estimator: Callable[[float], RegressorMixin], X: np.ndarray, y: np.ndarray
) -> _QuantileGridModel:
    return _QuantileGridModel({level: make_estimator(level).fit(X, y) for level in FITTED_LEVELS})


def _lightgbm(level: float, setting: dict[str, int], seed: int) -> lgb.LGBMRegressor:
    return lgb.LGBMRegressor(
        objective="quantile",
        alpha=level,
        learning_rate=0.05,
        random_state=seed,
        n_jobs=1,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
        **setting,
    )


def _fit_boosted_grid(
    X: np.ndarray,
    y_model: np.ndarray,
    order: np.ndarray,
    grid: list[dict[str, int]],
    n_splits: int,
    seed: int,
) -> _QuantileGridModel:
    setting = _select_by_time_cv(
        grid,
        lambda level, candidate: _lightgbm(level, candidate, seed),
        X[order],
        y_model[order],
        n_splits,
    )
    return _fit_grid(lambda level: _lightgbm(level, setting, seed), X, y_model)
