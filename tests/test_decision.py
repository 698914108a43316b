"""Tests of the phase decision rule."""

import pytest
from rbyards import decision


def result(coverage_90, mae, *, converged=True, status="ok", phase=None):
    """Build a minimal phase result dict like the ones the notebooks write."""
    entry = {
        "status": status,
        "metrics": {"coverage_90": coverage_90, "mae": mae},
        "diagnostics": {"converged": converged, "reasons": [] if converged else ["rhat 1.2"]},
    }
    if phase is not None:
        entry["phase"] = phase
    return entry


def test_smallest_coverage_error_wins():
    outcome = decision.recommend({"2.1": result(0.80, 18.0), "2.2": result(0.88, 18.5)})
    assert outcome["recommended"] == "2.2"
    assert "coverage_90 0.880" in outcome["reason"]
    assert outcome["verdicts"]["2.1"]["coverage_error_90"] == pytest.approx(0.10)


def test_coverage_error_tie_goes_to_lower_mae():
    outcome = decision.recommend({"2.1": result(0.88, 18.0), "2.2": result(0.92, 17.0)})
    assert outcome["recommended"] == "2.2"


def test_full_tie_goes_to_phase_order():
    tables = {"1": result(0.92, 17.0), "2.3": result(0.88, 17.0), "2.2": result(0.92, 17.0)}
    assert decision.recommend(tables)["recommended"] == "2.2"
    del tables["2.2"]
    assert decision.recommend(tables)["recommended"] == "2.3"


def test_non_converged_phase_never_recommended():
    tables = {"2.1": result(0.90, 10.0, converged=False), "2.2": result(0.78, 18.9)}
    outcome = decision.recommend(tables)
    assert outcome["recommended"] == "2.2"
    verdict = outcome["verdicts"]["2.1"]
    assert verdict["meets_coverage"]
    assert verdict["meets_mae"]
    assert not verdict["succeeds"]
    assert "rhat 1.2" in verdict["reasons"][0]


def test_failed_and_missing_phases_rejected():
    tables = {
        "2.1": result(0.90, 10.0, status="failed"),
        "2.2": None,
        "2.3": {"status": "ok", "metrics": {}, "diagnostics": {"converged": True}},
    }
    outcome = decision.recommend(tables)
    assert outcome["recommended"] is None
    assert "status is 'failed'" in outcome["reason"]
    assert "no results" in outcome["reason"]
    assert "coverage_90 is missing" in outcome["reason"]


def test_thresholds_are_inclusive():
    outcome = decision.recommend({"2.1": result(0.75, 19.0)})
    assert outcome["recommended"] == "2.1"


def test_threshold_failures_named():
    outcome = decision.recommend({"2.1": result(0.74, 18.0), "2.2": result(0.90, 19.5)})
    assert outcome["recommended"] is None
    assert "coverage_90 0.740 < 0.75" in outcome["reason"]
    assert "mae 19.50 > 19" in outcome["reason"]


def test_thresholds_are_arguments():
    tables = {"2.1": result(0.80, 18.0)}
    assert decision.recommend(tables, max_mae=17.0)["recommended"] is None
    assert decision.recommend(tables, min_coverage_90=0.85)["recommended"] is None
    assert decision.recommend(tables)["recommended"] == "2.1"


def test_nan_metric_not_success():
    outcome = decision.recommend({"2.1": result(float("nan"), 18.0)})
    assert outcome["recommended"] is None


def test_run_ids_map_to_phases():
    tables = {
        "phase1.seed": result(0.90, 17.0),
        "phase2_2.pregame": result(0.90, 17.0),
    }
    outcome = decision.recommend(tables)
    assert outcome["recommended"] == "phase2_2.pregame"
    assert outcome["verdicts"]["phase1.seed"]["phase"] == "1"


def test_phase_entry_overrides_name():
    outcome = decision.recommend(
        {"run_a": result(0.9, 17.0, phase="1"), "run_b": result(0.9, 17.0, phase="2.3")}
    )
    assert outcome["recommended"] == "run_b"


def test_phase_key_forms():
    assert decision.phase_key("2.1") == "2.1"
    assert decision.phase_key("2_2") == "2.2"
    assert decision.phase_key("phase2_3.seed") == "2.3"
    assert decision.phase_key("phase1") == "1"
    assert decision.phase_key("custom") == "custom"


def test_empty_results_raise():
    with pytest.raises(decision.DecisionInputError, match="empty"):
        decision.recommend({})


def test_phase_2_3_needed_when_both_fail():
    tables = {"2.1": result(0.70, 18.0), "2.2": result(0.90, 25.0), "1": result(0.9, 15.0)}
    assert decision.phase_2_3_needed(tables)


def test_phase_2_3_not_needed_when_one_succeeds():
    tables = {"2.1": result(0.70, 18.0), "phase2_2.seed": result(0.80, 18.0)}
    assert not decision.phase_2_3_needed(tables)


def test_phase_2_3_needed_when_success_not_converged():
    tables = {"2.1": result(0.90, 15.0, converged=False), "2.2": None}
    assert decision.phase_2_3_needed(tables)
