"""Hybrid calibration: conformal adjustment of a Bayesian model's predictive quantiles.

The Bayesian model is fitted on training rows and predicts the calibration window and the test
rows. For each central level ``L`` of the quantile grid, the conformalized quantile regression
score of Romano, Patterson and Candes (2019, NeurIPS), ``s = max(q_lo - y, y - q_hi)``, is
computed on the calibration rows. The test interval's ends then move out by the
``ceil((n + 1) L)``-th smallest score, or in when that score is negative. With exchangeable
calibration and test rows the adjusted interval covers at least ``L`` of test outcomes in
expectation. Test outcomes are never needed: the functions here take none.

MAPIE 1.6.0 implements this score only inside ``ConformalizedQuantileRegressor``, which calls
``predict(X)`` on three fitted regressors and has no entry point for precomputed quantile
arrays (its quantile helper ``_compute_regression_quantile`` is private), and crepes is not a
dependency of this project. The few lines below therefore compute the score and its
finite-sample quantile directly, the same way MAPIE does for one level.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rbyards.evaluation import (
    QUANTILE_LEVELS,
    central_level_pairs,
    quantile_frame,
    rearrange_quantiles,
)

logger = logging.getLogger(__name__)


class CalibrationError(ValueError):
    """Invalid input to the conformal adjustment: shapes, missing values or too few rows."""


@dataclass(frozen=True)
class HybridCalibration:
    """Adjusted test quantiles and the per-level corrections that produced them.

    Attributes
    ----------
    quantiles : pd.DataFrame
        Adjusted test quantiles in yards, one float-labelled column per level.
    corrections : pd.DataFrame
        One row per central level: ``central_level``, ``lower_level``, ``upper_level``,
        ``correction`` (on the scale named by ``scale``; positive widens), ``n_calibration``,
        ``calibration_coverage_before`` and ``calibration_coverage_after``. The coverage after
        the adjustment is measured on the same calibration rows that set it, so it is at least
        the nominal level by construction and is no estimate of test coverage.
    scale : str
        ``"log(yards + {log_shift})"`` or ``"yards"``: the scale of the scores and corrections.
    """

    quantiles: pd.DataFrame
    corrections: pd.DataFrame
    scale: str


def conformal_quantile_correction(scores: np.ndarray, central_level: float) -> float:
    """Return the finite-sample conformal quantile of conformity scores.

    Parameters
    ----------
    scores : np.ndarray
        Conformity scores of the n calibration rows.
    central_level : float
        Target coverage ``L`` in (0, 1).

    Returns
    -------
    float
        The ``ceil((n + 1) L)``-th smallest score, i.e. the empirical quantile at level
        ``ceil((n + 1) L) / n``.

    Raises
    ------
    CalibrationError
        If ``ceil((n + 1) L) > n``, where the correction would be infinite.
    """
    values = np.sort(np.asarray(scores, dtype=float))
    n_rows = values.size
    rank = int(np.ceil((n_rows + 1) * central_level - 1e-9))
    if rank > n_rows:
        raise CalibrationError(
            f"{n_rows} calibration rows are too few for a {central_level:g} interval: it needs "
            f"at least {int(np.ceil(central_level / (1 - central_level) - 1e-9))}; use a longer "
            "calibration window or fewer levels"
        )
    return float(values[max(rank, 1) - 1])


def conformalize_quantiles(
    calibration_quantiles: pd.DataFrame | np.ndarray,
    y_calibration: Sequence[float] | np.ndarray,
    test_quantiles: pd.DataFrame | np.ndarray,
    *,
    levels: Sequence[float] | np.ndarray | None = None,
    log_shift: float | None = 10.0,
) -> HybridCalibration:
    """Adjust test quantiles with conformal corrections estimated on a calibration window.

    Parameters
    ----------
    calibration_quantiles : pd.DataFrame or np.ndarray
        Predictive quantiles in yards for the calibration rows, shape (n_cal, n_levels).
    y_calibration : array-like
        Outcomes in yards of the calibration rows.
    test_quantiles : pd.DataFrame or np.ndarray
        Predictive quantiles in yards for the test rows, same levels.
    levels : sequence of float, optional
        Levels of array inputs, symmetric around 0.5 and containing it; defaults to the
        DataFrame columns, else :data:`rbyards.evaluation.QUANTILE_LEVELS`.
    log_shift : float or None
        Compute scores on ``log(yards + log_shift)`` so that corrections scale with the
        forecast, the same scale the models use; ``None`` computes them in yards.

    Returns
    -------
    HybridCalibration
        Adjusted test quantiles (median unchanged, rows sorted because each level gets its own
        correction) and the per-level corrections with calibration coverage before and after.

    Raises
    ------
    CalibrationError
        If shapes or levels disagree, values are missing, a quantile is at or below
        ``-log_shift``, or the calibration window is too small for the widest interval.
    """
    cal_values, cal_levels = _as_quantile_array(calibration_quantiles, levels, "calibration")
    test_values, test_levels = _as_quantile_array(test_quantiles, levels, "test")
    if not np.allclose(cal_levels, test_levels):
        raise CalibrationError(
            "calibration and test quantiles have different levels; report both on the same grid"
        )
    y_cal = np.asarray(y_calibration, dtype=float)
    if y_cal.shape != (cal_values.shape[0],):
        raise CalibrationError(
            f"y_calibration has shape {y_cal.shape} but there are {cal_values.shape[0]} "
            "calibration rows; pass one outcome per row"
        )
    if not np.all(np.isfinite(y_cal)):
        raise CalibrationError("y_calibration has missing values; drop those rows")
    levels_array, pairs = central_level_pairs(cal_levels)

    if log_shift is None:
        scale = "yards"
        cal_scaled, test_scaled, y_scaled = cal_values, test_values, y_cal
    else:
        scale = f"log(yards + {log_shift:g})"
        cal_scaled = _to_log(cal_values, log_shift, "calibration quantiles")
        test_scaled = _to_log(test_values, log_shift, "test quantiles")
        y_scaled = _to_log(y_cal, log_shift, "y_calibration")

    adjusted = test_scaled.copy()
    rows = []
    for lower_index, upper_index in pairs:
        central_level = float(levels_array[upper_index] - levels_array[lower_index])
        lower = cal_scaled[:, lower_index]
        upper = cal_scaled[:, upper_index]
        scores = np.maximum(lower - y_scaled, y_scaled - upper)
        correction = conformal_quantile_correction(scores, central_level)
        adjusted[:, lower_index] = test_scaled[:, lower_index] - correction
        adjusted[:, upper_index] = test_scaled[:, upper_index] + correction
        rows.append(
            {
                "central_level": round(central_level, 9),
                "lower_level": float(levels_array[lower_index]),
                "upper_level": float(levels_array[upper_index]),
                "correction": correction,
                "n_calibration": int(y_scaled.size),
                "calibration_coverage_before": float(np.mean(scores <= 0)),
                "calibration_coverage_after": float(np.mean(scores <= correction)),
            }
        )
    adjusted = rearrange_quantiles(adjusted)
    if log_shift is not None:
        adjusted = np.exp(adjusted) - log_shift

    corrections = pd.DataFrame(rows).sort_values("central_level", ignore_index=True)
    for level in (0.5, 0.9):
        match = corrections[np.isclose(corrections["central_level"], level)]
        if not match.empty:
            logger.info(
                "hybrid calibration %.0f%%: calibration coverage %.3f before, correction %+.4f "
                "on %s",
                100 * level,
                match["calibration_coverage_before"].iloc[0],
                match["correction"].iloc[0],
                scale,
            )
    return HybridCalibration(
        quantiles=quantile_frame(adjusted, levels_array), corrections=corrections, scale=scale
    )


def _as_quantile_array(
    quantiles: pd.DataFrame | np.ndarray,
    levels: Sequence[float] | np.ndarray | None,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(quantiles, pd.DataFrame):
        frame_levels = np.asarray(quantiles.columns, dtype=float)
        if levels is not None and not np.allclose(frame_levels, np.asarray(levels, dtype=float)):
            raise CalibrationError(
                f"{name} quantile columns differ from levels=; drop levels= for DataFrames"
            )
        level_values = frame_levels
        values = quantiles.to_numpy(dtype=float)
    else:
        level_values = np.asarray(QUANTILE_LEVELS if levels is None else levels, dtype=float)
        values = np.asarray(quantiles, dtype=float)
    if values.ndim != 2 or values.shape[1] != level_values.size or values.shape[0] == 0:
        raise CalibrationError(
            f"{name} quantiles have shape {values.shape} for {level_values.size} levels; pass "
            "a non-empty (n_rows, n_levels) array"
        )
    if not np.all(np.isfinite(values)):
        raise CalibrationError(f"{name} quantiles contain missing or infinite values")
    return values, level_values


def _to_log(values: np.ndarray, log_shift: float, name: str) -> np.ndarray:
    if np.min(values) <= -log_shift:
        raise CalibrationError(
            f"{name} contain {np.min(values):g} <= -log_shift ({-log_shift:g}); raise log_shift "
            "or pass log_shift=None to adjust in yards"
        )
    return np.log(values + log_shift)
