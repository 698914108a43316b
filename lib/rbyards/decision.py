"""Decide which modelling phase to recommend from its test metrics and sampler diagnostics.

A phase succeeds when its run finished (status ``"ok"``), its sampler diagnostics report
convergence, its 90% central interval covers at least ``min_coverage_90`` of test outcomes and
its median's mean absolute error is at most ``max_mae`` yards. Failed, missing or
non-converged phases are never recommended, whatever their metrics, because their forecasts
cannot be trusted. Among succeeding phases the one whose 90% coverage is closest to 0.90 wins;
ties go to the lower MAE and then to the earlier phase in :data:`PHASE_ORDER`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

#: Tie-break order of phases: the simpler Bayesian phases first, the baseline phase last.
PHASE_ORDER: tuple[str, ...] = ("2.1", "2.2", "2.3", "1")

#: Nominal level of the interval whose coverage error ranks the phases.
NOMINAL_COVERAGE_90 = 0.9

#: Decimal places kept when comparing coverage errors and MAEs, so that values equal up to
#: floating-point rounding (|0.88 - 0.9| and |0.92 - 0.9|) count as ties.
_TIE_DECIMALS = 9


class DecisionInputError(ValueError):
    """Invalid phase results passed to the decision rule."""


def phase_key(name: str) -> str:
    """Normalize a phase or run name to the dotted phase number.

    Parameters
    ----------
    name : str
        ``"2.1"``, ``"2_1"``, ``"phase2_1"`` or a run id such as ``"phase2_1.seed"``.

    Returns
    -------
    str
        The phase number, e.g. ``"2.1"``, or ``name`` unchanged when it contains no number.
    """
    match = re.match(r"^(?:phase)?\s*(\d+)(?:[._](\d+))?", str(name).strip(), flags=re.IGNORECASE)
    if match is None:
        return str(name)
    major, minor = match.groups()
    return major if minor is None else f"{major}.{minor}"


def evaluate_phase(
    name: str,
    result: Mapping[str, Any] | None,
    *,
    min_coverage_90: float = 0.75,
    max_mae: float = 19.0,
) -> dict[str, Any]:
    """Apply the success rule to one phase's result.

    Parameters
    ----------
    name : str
        Phase or run name; the result's own ``phase`` entry takes precedence when present.
    result : mapping or None
        The phase's result dict with ``status``, ``metrics`` (``coverage_90``, ``mae``) and
        ``diagnostics`` (``converged``); ``None`` for a phase that never produced results.
    min_coverage_90 : float
        Smallest acceptable 90% interval coverage.
    max_mae : float
        Largest acceptable mean absolute error in yards.

    Returns
    -------
    dict
        ``phase``, ``status``, ``converged``, ``coverage_90``, ``mae``, ``coverage_error_90``,
        ``meets_coverage``, ``meets_mae``, ``succeeds`` and ``reasons`` (why it does not
        succeed; empty when it does).
    """
    verdict: dict[str, Any] = {
        "phase": phase_key(name),
        "status": "missing",
        "converged": False,
        "coverage_90": None,
        "mae": None,
        "coverage_error_90": None,
        "meets_coverage": False,
        "meets_mae": False,
        "succeeds": False,
        "reasons": [],
    }
    reasons: list[str] = verdict["reasons"]
    if result is None:
        reasons.append("no results")
        return verdict

    verdict["phase"] = phase_key(result.get("phase") or name)
    verdict["status"] = str(result.get("status", "missing"))
    if verdict["status"] != "ok":
        reasons.append(f"status is {verdict['status']!r}, not 'ok'")

    diagnostics = result.get("diagnostics") or {}
    verdict["converged"] = diagnostics.get("converged") is True
    if not verdict["converged"]:
        detail = diagnostics.get("reasons")
        suffix = f" ({'; '.join(map(str, detail))})" if detail else ""
        reasons.append(f"sampler diagnostics do not report convergence{suffix}")

    metrics = result.get("metrics") or {}
    coverage = _finite_or_none(metrics.get("coverage_90"))
    mae = _finite_or_none(metrics.get("mae"))
    verdict["coverage_90"] = coverage
    verdict["mae"] = mae
    if coverage is None:
        reasons.append("coverage_90 is missing")
    else:
        verdict["coverage_error_90"] = abs(coverage - NOMINAL_COVERAGE_90)
        verdict["meets_coverage"] = coverage >= min_coverage_90
        if not verdict["meets_coverage"]:
            reasons.append(f"coverage_90 {coverage:.3f} < {min_coverage_90:g}")
    if mae is None:
        reasons.append("mae is missing")
    else:
        verdict["meets_mae"] = mae <= max_mae
        if not verdict["meets_mae"]:
            reasons.append(f"mae {mae:.2f} > {max_mae:g}")

    verdict["succeeds"] = not reasons
    return verdict


def recommend(
    phase_results: Mapping[str, Mapping[str, Any] | None],
    *,
    min_coverage_90: float = 0.75,
    max_mae: float = 19.0,
) -> dict[str, Any]:
    """Recommend one phase, or none, from the results of all phases.

    Parameters
    ----------
    phase_results : mapping
        Phase or run name (``"2.1"``, ``"phase2_2.pregame"``, ...) to its result dict, or
        ``None`` when the phase produced no results.
    min_coverage_90 : float
        Smallest acceptable 90% interval coverage.
    max_mae : float
        Largest acceptable mean absolute error in yards.

    Returns
    -------
    dict
        ``recommended`` (the name as given in ``phase_results``, or ``None``), ``reason``
        (one paragraph of text) and ``verdicts`` (name to :func:`evaluate_phase` output).

    Raises
    ------
    DecisionInputError
        If ``phase_results`` is empty or a threshold is not a finite number.
    """
    if not phase_results:
        raise DecisionInputError("phase_results is empty; pass the result dict of every phase")
    for label, value in (("min_coverage_90", min_coverage_90), ("max_mae", max_mae)):
        if _finite_or_none(value) is None:
            raise DecisionInputError(f"{label}={value!r} is not a finite number")

    verdicts = {
        name: evaluate_phase(name, result, min_coverage_90=min_coverage_90, max_mae=max_mae)
        for name, result in phase_results.items()
    }
    succeeding = [name for name, verdict in verdicts.items() if verdict["succeeds"]]
    rule = f"coverage_90 >= {min_coverage_90:g} and mae <= {max_mae:g} on a converged run"
    if not succeeding:
        failures = "; ".join(
            f"{name}: {', '.join(verdict['reasons'])}" for name, verdict in verdicts.items()
        )
        reason = f"No phase recommended: none meets {rule}. {failures}."
        logger.info(reason)
        return {"recommended": None, "reason": reason, "verdicts": verdicts}

    ranked = sorted(succeeding, key=lambda name: _rank(name, verdicts[name]))
    best = ranked[0]
    chosen = verdicts[best]
    reason = (
        f"Recommend {best}: it meets {rule} with coverage_90 {chosen['coverage_90']:.3f} "
        f"(error {chosen['coverage_error_90']:.3f} from {NOMINAL_COVERAGE_90:g}) and mae "
        f"{chosen['mae']:.2f}."
    )
    if len(ranked) > 1:
        others = ", ".join(
            f"{name} (error {verdicts[name]['coverage_error_90']:.3f}, mae "
            f"{verdicts[name]['mae']:.2f})"
            for name in ranked[1:]
        )
        reason += (
            f" Also succeeding, ranked by coverage error, then mae, then phase order: {others}."
        )
    logger.info(reason)
    return {"recommended": best, "reason": reason, "verdicts": verdicts}


def phase_2_3_needed(
    phase_results: Mapping[str, Mapping[str, Any] | None],
    *,
    min_coverage_90: float = 0.75,
    max_mae: float = 19.0,
) -> bool:
    """Return whether hybrid calibration (phase 2.3) must run: neither 2.1 nor 2.2 succeeds.

    Parameters
    ----------
    phase_results : mapping
        Phase or run name to result dict, as for :func:`recommend`; several runs of one phase
        (e.g. two feature sets) count as a success when any of them succeeds. Absent phases
        count as not succeeding.
    min_coverage_90, max_mae : float
        Thresholds of the success rule.

    Returns
    -------
    bool
        True when no run of phase 2.1 or 2.2 succeeds.
    """
    for name, result in phase_results.items():
        verdict = evaluate_phase(name, result, min_coverage_90=min_coverage_90, max_mae=max_mae)
        if verdict["phase"] in ("2.1", "2.2") and verdict["succeeds"]:
            return False
    return True


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rank(name: str, verdict: Mapping[str, Any]) -> tuple:
    phase = verdict["phase"]
    order = PHASE_ORDER.index(phase) if phase in PHASE_ORDER else len(PHASE_ORDER)
    return (
        round(verdict["coverage_error_90"], _TIE_DECIMALS),
        round(verdict["mae"], _TIE_DECIMALS),
        order,
        name,
    )
