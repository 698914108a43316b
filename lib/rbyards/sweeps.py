"""Parameter sweeps: one notebook run per value of a parameter, and their sensitivity summary.

A profile's ``sweep`` section lists parameters by dotted key with the values to try, for
example ``{parameter: phases.phase2_1.sigma_prior, values: [5, 10, 20, 40]}``. Each value of
each swept phase and feature set becomes one run with the id
``<phase>.<feature set>.sweep-<last key part>=<value>`` (``phase2_1.seed.sweep-sigma_prior=10``)
and the sweep value as an extra parameter override. Every sweep varies one parameter while the
others keep the profile's values; two sweeps give two one-at-a-time series, not a grid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from rbyards.params import Params

SWEEP_MARK = "sweep-"
# Run ids become file names, so a formatted value may contain only these characters.
_VALUE_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+$")
SENSITIVITY_METRICS = ("coverage_90", "width_90_mean", "mae", "crps")
# Backtest results store every model's metrics per test season and pooled over the seasons;
# the sensitivity summary takes the pooled ones.
BACKTEST_POOLED = "pooled"


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: a phase and feature set repeated with one parameter value."""

    phase: str
    feature_set: str
    parameter: str
    value: Any
    position: int
    run_id: str

    @property
    def overrides(self) -> dict[str, Any]:
        """The dotted-key override that sets the sweep value."""
        return {self.parameter: self.value}


def format_value(value: Any) -> str:
    """Format a sweep value for a run id: ``10``, ``2.5``, ``true``, lists joined by ``_``.

    Raises
    ------
    ValueError
        When the value is a mapping or its text has characters other than letters, digits and
        ``_.+-``, which are not safe in file names.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = "_".join(format_value(item) for item in value)
    elif isinstance(value, int | float | str):
        text = str(value)
    else:
        raise ValueError(f"sweep value {value!r} is invalid: use numbers, text, or lists of them")
    if not _VALUE_PATTERN.match(text):
        raise ValueError(
            f"sweep value {value!r} is invalid in a run id ({text!r}): use letters, digits and "
            "'_', '.', '+', '-' only"
        )
    return text


def sweep_run_id(phase: str, feature_set: str, parameter: str, value: Any) -> str:
    """Return the run id of one sweep point, such as ``phase2_1.seed.sweep-sigma_prior=10``."""
    name = parameter.rsplit(".", 1)[-1]
    return f"{phase}.{feature_set}.{SWEEP_MARK}{name}={format_value(value)}"


def is_sweep_run(run_id: str) -> bool:
    """Return whether ``run_id`` names a sweep point."""
    return f".{SWEEP_MARK}" in run_id


def sweep_points(params: Params) -> list[SweepPoint]:
    """List the runs of every sweep: per sweep, per phase, per feature set, per value.

    Raises
    ------
    ValueError
        When a value cannot be part of a run id (see :func:`format_value`), or when two sweeps
        give one run id: run ids name a parameter by the last part of its key.
    """
    points: list[SweepPoint] = []
    parameter_of_run: dict[str, str] = {}
    for sweep in params.sweep:
        for phase in sweep.swept_phases:
            for feature_set in params.features.feature_sets:
                for position, value in enumerate(sweep.values):
                    run_id = sweep_run_id(phase, feature_set, sweep.parameter, value)
                    earlier = parameter_of_run.setdefault(run_id, sweep.parameter)
                    if earlier != sweep.parameter:
                        raise ValueError(
                            f"sweeps of {earlier} and {sweep.parameter} both give the run id "
                            f"{run_id}; sweep one of them, or give them values that differ"
                        )
                    points.append(
                        SweepPoint(phase, feature_set, sweep.parameter, value, position, run_id)
                    )
    return points


def _result_entries(phase: str, result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Return (model, entry with ``metrics``) pairs of one result file.

    A Bayesian phase's result is one entry. Baselines results hold one entry per model under
    ``models``, and backtest results one entry per model and season, of which the pooled one
    is taken.
    """
    if phase == "baselines":
        return list((result.get("models") or {}).items())
    if phase == "backtest":
        return [
            (model, seasons[BACKTEST_POOLED])
            for model, seasons in (result.get("models") or {}).items()
            if BACKTEST_POOLED in seasons
        ]
    return [(phase, result)]


def sensitivity_frame(
    results: Mapping[str, Mapping[str, Any]],
    points: Sequence[SweepPoint],
    metrics: Sequence[str] = SENSITIVITY_METRICS,
) -> pd.DataFrame:
    """Collect the metrics of every sweep point into one long table, one row per model.

    Parameters
    ----------
    results : mapping of str to mapping
        Result files keyed by run id, as :func:`rbyards.tables.load_results` reads them.
    points : sequence of SweepPoint
        The profile's sweep points (:func:`sweep_points`), in the order to report.
    metrics : sequence of str
        Metric keys to collect; a metric a result lacks is NaN.

    Returns
    -------
    pandas.DataFrame
        Columns run_id, phase, feature_set, parameter, value (as in the run id), position (the
        value's index in the sweep), model, status, converged (None when not reported), then
        each metric with ``<metric>_lower`` and ``<metric>_upper`` bootstrap bounds. A point
        without an ``ok`` result file gets one row with its status (``missing`` when there is
        no file) and NaN metrics.
    """
    rows = []
    for point in points:
        base = {
            "run_id": point.run_id,
            "phase": point.phase,
            "feature_set": point.feature_set,
            "parameter": point.parameter,
            "value": format_value(point.value),
            "position": point.position,
        }
        result = results.get(point.run_id)
        status = "missing" if result is None else str(result.get("status"))
        if status != "ok":
            rows.append({**base, "model": point.phase, "status": status, "converged": None})
            continue
        converged = (result.get("diagnostics") or {}).get("converged")
        for model, entry in _result_entries(point.phase, result):
            row = {**base, "model": model, "status": status, "converged": converged}
            values = entry.get("metrics") or {}
            bounds = entry.get("metric_intervals") or {}
            for metric in metrics:
                value = values.get(metric)
                row[metric] = math.nan if value is None else float(value)
                lower, upper = bounds.get(metric) or (math.nan, math.nan)
                row[f"{metric}_lower"] = float(lower)
                row[f"{metric}_upper"] = float(upper)
            rows.append(row)
    columns = ["run_id", "phase", "feature_set", "parameter", "value", "position", "model"]
    columns += ["status", "converged"]
    for metric in metrics:
        columns += [metric, f"{metric}_lower", f"{metric}_upper"]
    return pd.DataFrame(rows, columns=columns)
