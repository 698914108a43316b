"""Tests of parameter sweeps: validation, run ids, plan and keys, and the sensitivity outputs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from rbyards.params import ParamsError, load_params
from rbyards.runner import RunnerError, Workspace, build_plan, compute_key, select_runs
from rbyards.sweeps import (
    format_value,
    sensitivity_frame,
    sweep_points,
    sweep_run_id,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES))

from rbyards.figures import plot_sensitivity  # noqa: E402
from rbyards.tables import sensitivity_table  # noqa: E402
from runner_cli import fake_inventory  # noqa: E402

SIGMA_SWEEP = {"parameter": "phases.phase2_1.sigma_prior", "values": [5, 10.5, 20]}
SIGMA_RUNS = [
    "phase2_1.seed.sweep-sigma_prior=5",
    "phase2_1.seed.sweep-sigma_prior=10.5",
    "phase2_1.seed.sweep-sigma_prior=20",
]


def fixture_params(**overrides: object):
    return load_params("fixture", FIXTURES / "params", overrides)


def fixture_plan(**overrides: object):
    return build_plan(fixture_params(**overrides), Workspace.from_root(REPO_ROOT))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10, "10"), (2.5, "2.5"), (True, "true"), ([10, 15.5], "10_15.5"), ("wide", "wide")],
)
def test_format_value(value: object, expected: str) -> None:
    assert format_value(value) == expected


@pytest.mark.parametrize("value", ["a b", {"a": 1}, "x/y"])
def test_format_value_rejects_unsafe(value: object) -> None:
    with pytest.raises(ValueError, match="sweep value"):
        format_value(value)


def test_sweep_run_id_uses_last_key_part() -> None:
    run_id = sweep_run_id("phase2_1", "seed", "phases.phase2_1.sigma_prior", 10)
    assert run_id == "phase2_1.seed.sweep-sigma_prior=10"


def test_sweep_points_per_feature_set() -> None:
    params = fixture_params(
        **{"features.feature_sets": ["seed", "pregame"], "sweep": [SIGMA_SWEEP]}
    )
    points = sweep_points(params)
    assert [point.run_id for point in points[:3]] == SIGMA_RUNS
    assert points[3].run_id == "phase2_1.pregame.sweep-sigma_prior=5"
    assert points[1].overrides == {"phases.phase2_1.sigma_prior": 10.5}
    assert [point.position for point in points[:3]] == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# Validation


SWEEP_ERRORS = [
    (
        "value out of range",
        [{"parameter": "phases.phase2_1.sigma_prior", "values": [5, -1]}],
        "sweep.0: phases.phase2_1.sigma_prior = -1 is invalid",
    ),
    (
        "unknown key",
        [{"parameter": "phases.phase2_1.sigma", "values": [5]}],
        "unknown key phases.phase2_1.sigma",
    ),
    (
        "phase not named",
        [{"parameter": "sampler.draws", "values": [50, 100]}],
        "sweep of sampler.draws must list its phases",
    ),
    (
        "repeated value",
        [{"parameter": "phases.phase2_1.sigma_prior", "values": [5, 5]}],
        "sweep values must not repeat",
    ),
    (
        "runner setting",
        [{"parameter": "execution.workers", "values": [1, 2], "phases": ["phase2_1"]}],
        "sweeps repeat model, data or sampler settings",
    ),
    (
        "repeated parameter",
        [SIGMA_SWEEP, SIGMA_SWEEP],
        "sweep lists phases.phase2_1.sigma_prior more than once",
    ),
]


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [case[1:] for case in SWEEP_ERRORS],
    ids=[case[0] for case in SWEEP_ERRORS],
)
def test_invalid_sweep_rejected(sweep: list, expected: str) -> None:
    with pytest.raises(ParamsError, match="fixture.yaml") as caught:
        fixture_params(sweep=sweep)
    assert expected in str(caught.value)


def test_sweep_of_disabled_phase_rejected() -> None:
    sweep = [{"parameter": "phases.phase1.sigma_prior", "values": [0.1, 0.3]}]
    with pytest.raises(RunnerError, match="repeats phase1, which is disabled"):
        fixture_plan(sweep=sweep)


def test_sweep_of_unread_parameter_rejected() -> None:
    sweep = [
        {"parameter": "phases.phase2_2.hidden_units", "values": [4, 8], "phases": ["phase2_1"]}
    ]
    with pytest.raises(RunnerError, match="phase2_1, which does not read that parameter"):
        fixture_plan(sweep=sweep)


def test_sweep_of_phase_own_sampler_key_rejected() -> None:
    sweep = [{"parameter": "sampler.max_treedepth", "values": [6, 10], "phases": ["phase2_1"]}]
    own = {"max_treedepth": 9}
    with pytest.raises(RunnerError) as caught:
        fixture_plan(sweep=sweep, **{"phases.phase2_1.sampler": own})
    assert "phases.phase2_1.sampler.max_treedepth = 9 takes precedence" in str(caught.value)
    assert "sweep phases.phase2_1.sampler.max_treedepth instead" in str(caught.value)


def test_sweeps_with_one_run_id_rejected() -> None:
    sweep = [
        {"parameter": "sampler.max_treedepth", "values": [6, 7], "phases": ["phase2_1"]},
        {"parameter": "phases.phase2_1.sampler.max_treedepth", "values": [6, 8]},
    ]
    with pytest.raises(RunnerError) as caught:
        fixture_plan(sweep=sweep)
    assert "both give the run id phase2_1.seed.sweep-max_treedepth=6" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Plan and keys


def test_plan_places_sweep_runs_before_comparison() -> None:
    plan = fixture_plan(sweep=[SIGMA_SWEEP])
    run_ids = [run.run_id for run in plan]
    assert run_ids == [
        "data",
        "phase2_1.seed",
        "phase2_2.seed",
        "phase2_3.seed",
        *SIGMA_RUNS,
        "comparison",
    ]
    by_id = {run.run_id: run for run in plan}
    swept = by_id[SIGMA_RUNS[1]]
    assert swept.dependencies == ("data",)
    assert swept.phase == "phase2_1"
    assert swept.notebook.name == "21_phase2_1.ipynb"
    assert swept.parameters["run_id"] == SIGMA_RUNS[1]
    assert swept.sweep == {"phases.phase2_1.sigma_prior": 10.5}
    assert set(SIGMA_RUNS) <= set(by_id["comparison"].soft_dependencies)


def test_backtest_sweep_runs_after_comparison() -> None:
    sweep = [{"parameter": "backtest.seasons", "values": [[2024]]}]
    plan = fixture_plan(**{"backtest.enabled": True, "backtest.seasons": [2024], "sweep": sweep})
    run_ids = [run.run_id for run in plan]
    assert run_ids[-3:] == ["comparison", "backtest.seed", "backtest.seed.sweep-seasons=2024"]
    comparison = plan[-3]
    assert "backtest.seed.sweep-seasons=2024" not in comparison.soft_dependencies


def test_select_sweep_adds_data_only() -> None:
    plan = fixture_plan(sweep=[SIGMA_SWEEP])
    selected, forced = select_runs(plan, ["sweep"], None)
    assert selected == ["data", *SIGMA_RUNS]
    assert forced == set()


def test_select_sweep_without_sweep_rejected() -> None:
    with pytest.raises(RunnerError, match="--phases sweep: the parameters have no sweep"):
        select_runs(fixture_plan(), ["sweep"], None)


def test_sweep_key_follows_value_only() -> None:
    params = fixture_params(sweep=[SIGMA_SWEEP])
    inventory = fake_inventory(params)
    by_id = {run.run_id: run for run in build_plan(params, Workspace.from_root(REPO_ROOT))}
    keys = {
        run_id: compute_key(by_id[run_id], params, inventory, "s", {"data": "d"})
        for run_id in SIGMA_RUNS
    }
    assert len(set(keys.values())) == 3
    # Another value of the swept parameter in the profile does not change a sweep run's key.
    moved = fixture_params(**{"sweep": [SIGMA_SWEEP], "phases.phase2_1.sigma_prior": 7.0})
    assert (
        compute_key(by_id[SIGMA_RUNS[0]], moved, inventory, "s", {"data": "d"})
        == (keys[SIGMA_RUNS[0]])
    )
    # Adding a sweep leaves the keys of the other runs as they were.
    plain = fixture_params()
    base_run = by_id["phase2_1.seed"]
    assert compute_key(base_run, plain, inventory, "s", {"data": "d"}) == compute_key(
        base_run, params, inventory, "s", {"data": "d"}
    )


# ---------------------------------------------------------------------------------------------
# Sensitivity outputs


def phase_result(coverage: float, crps: float, converged: bool) -> dict:
    return {
        "status": "ok",
        "metrics": {"coverage_90": coverage, "width_90_mean": 70.0, "mae": 18.0, "crps": crps},
        "metric_intervals": {"coverage_90": [coverage - 0.05, coverage + 0.04]},
        "diagnostics": {"converged": converged},
    }


@pytest.fixture
def sensitivity():
    points = sweep_points(fixture_params(sweep=[SIGMA_SWEEP]))
    results = {
        SIGMA_RUNS[0]: phase_result(0.81, 12.5, True),
        SIGMA_RUNS[1]: {"status": "failed", "error": "sampler diverged"},
    }
    return sensitivity_frame(results, points)


def test_sensitivity_frame_rows(sensitivity) -> None:
    assert list(sensitivity["run_id"]) == SIGMA_RUNS
    assert list(sensitivity["status"]) == ["ok", "failed", "missing"]
    assert list(sensitivity["value"]) == ["5", "10.5", "20"]
    first = sensitivity.iloc[0]
    assert first["coverage_90"] == 0.81
    assert first["coverage_90_lower"] == pytest.approx(0.76)
    assert math.isnan(first["crps_lower"])
    assert first["converged"] is True
    assert math.isnan(sensitivity.iloc[1]["crps"])


def test_sensitivity_frame_baselines_per_model() -> None:
    sweep = [{"parameter": "split.calibration_weeks", "values": [4], "phases": ["baselines"]}]
    params = fixture_params(**{"phases.baselines.enabled": True, "sweep": sweep})
    points = sweep_points(params)
    result = {
        "status": "ok",
        "models": {"empirical": phase_result(0.9, 11.0, True), "qr": phase_result(0.8, 12, True)},
    }
    frame = sensitivity_frame({points[0].run_id: result}, points)
    assert list(frame["model"]) == ["empirical", "qr"]
    assert list(frame["crps"]) == [11.0, 12.0]


def test_sensitivity_table_rows(sensitivity) -> None:
    table = sensitivity_table(sensitivity, program="test")
    body = table.fragment.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    rows = [line.removesuffix(r" \\").split(" & ") for line in body.strip().splitlines()]
    assert rows[0] == [
        r"phase2\_1 (seed): sigma\_prior",
        "5",
        r"81.0\%",
        "70.0",
        "18.0",
        "12.5",
        "yes",
    ]
    assert rows[1] == ["", "10.5", "--", "--", "--", "--", "failed"]
    assert rows[2][-1] == "missing"
    assert "phase2_1.seed.sweep-sigma_prior=5.json" in table.fragment.splitlines()[0]
    assert "\\label{tab:sensitivity}" in table.float_


def test_sensitivity_figure_panels(sensitivity) -> None:
    fig = plot_sensitivity(sensitivity)
    axes = fig.get_axes()
    assert len(axes) == 2
    labels = [tick.get_text() for tick in axes[0].get_xticklabels()]
    assert labels == ["5", "10.5", "20"]
    assert axes[0].get_xlabel() == "sigma_prior"
    plt.close(fig)
