"""Tests of the local and Dask executors with the stand-in notebooks of ``test_runner.py``.

A sweep of ``phases.phase2_1.sigma_prior`` over four values gives four independent runs after
the data run. The stand-in notebook writes seeded draws scaled by that value, and the core
budget it was given, so the outputs of different executors can be compared exactly. Dask runs
use a real ``LocalCluster`` of 2 worker processes on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from rbyards.executors import (  # noqa: E402
    ExecutionSettings,
    kill_process_tree,
    resolve_output_root,
    thread_environment,
)
from rbyards.sampling import core_budget  # noqa: E402
from runner_cli import fake_inventory  # noqa: E402
from test_runner import (  # noqa: E402
    Project,
    make_project,
    record_status,
    start_runner,
    stop_tree,
    wait_for,
)

import run_all  # noqa: E402

SWEEP_VALUES = (5, 10, 20, 40)
SWEEP_RUNS = [f"phase2_1.seed.sweep-sigma_prior={value}" for value in SWEEP_VALUES]
SWEEP_PLAN = ["data", *SWEEP_RUNS]
SWEEP_SECTION = "sweep:\n  - {parameter: phases.phase2_1.sigma_prior, values: [5, 10, 20, 40]}\n"


def make_sweep_project(root: Path) -> Project:
    """Lay out a stand-in project whose fixture profile sweeps phase 2.1's noise prior."""
    project = make_project(root)
    profile = project.root / "params" / "fixture.yaml"
    profile.write_text(profile.read_text() + SWEEP_SECTION)
    return project


def run_outputs(project: Project, run_id: str) -> tuple[dict, pd.DataFrame]:
    result = json.loads(project.paths.result(run_id).read_text())
    predictions = pd.read_parquet(project.paths.base / "predictions" / f"{run_id}.parquet")
    return result, predictions


@pytest.fixture(scope="module")
def sequential_sweep(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The sweep run one run after another in the test's process."""
    project = make_sweep_project(tmp_path_factory.mktemp("sequential") / "project")
    assert project.main("--phases", "sweep", "--workers", "1") == 0
    return project


# ---------------------------------------------------------------------------------------------
# Settings


def test_core_budget_divides_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert ExecutionSettings(workers=3).core_budget() == 2
    assert ExecutionSettings(workers=16).core_budget() == 1
    assert ExecutionSettings().worker_count == 8
    assert ExecutionSettings().core_budget() == 1
    assert ExecutionSettings(workers=2, cores_per_run=3).core_budget() == 3


def test_thread_environment_sets_every_pool() -> None:
    environment = thread_environment(2)
    assert environment["RBYARDS_CORES"] == "2"
    assert environment["OMP_NUM_THREADS"] == "2"
    assert environment["OPENBLAS_NUM_THREADS"] == "2"


def test_sampling_reads_core_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RBYARDS_CORES", raising=False)
    assert core_budget() is None
    monkeypatch.setenv("RBYARDS_CORES", "3")
    assert core_budget() == 3
    monkeypatch.setenv("RBYARDS_CORES", "0")
    with pytest.raises(ValueError, match="RBYARDS_CORES='0' is invalid"):
        core_budget()


def test_output_root_forms(tmp_path: Path) -> None:
    assert resolve_output_root("outputs", tmp_path) == tmp_path / "outputs"
    assert resolve_output_root(str(tmp_path / "a"), Path("/elsewhere")) == tmp_path / "a"
    assert resolve_output_root((tmp_path / "b").as_uri(), Path("/elsewhere")) == tmp_path / "b"
    with pytest.raises(ValueError, match="only local folders and file:// URLs"):
        resolve_output_root("s3://bucket/outputs", tmp_path)


def test_scheduler_with_local_executor_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path / "project")
    argv = ("--executor", "local", "--scheduler", "tcp://127.0.0.1:8786")
    assert project.main(*argv) == 2
    assert "--scheduler needs --executor dask" in capsys.readouterr().err
    assert not project.paths.base.exists()


# ---------------------------------------------------------------------------------------------
# Output root as a folder or a file:// URL


def argv_without_output_root(project: Project, *extra: str, command: str = "run") -> list[str]:
    argv = project.argv(*extra, command=command)
    index = argv.index("--output-root")
    return argv[:index] + argv[index + 2 :]


def test_output_root_file_url_option(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    shared = tmp_path / "shared outputs"
    argv = argv_without_output_root(project, "--phases", "data", "--output-root", shared.as_uri())
    assert run_all.main(argv, inventory_function=fake_inventory) == 0
    record = json.loads((shared / "fixture" / "state" / "runs" / "data.json").read_text())
    assert record["status"] == "done"
    result = json.loads((shared / "fixture" / "results" / "data.json").read_text())
    assert result["papermill_parameters"]["output_root"] == str(shared)
    assert not project.outputs.exists()


def test_output_root_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "project")
    shared = tmp_path / "shared"
    setting = f"execution.output_root={shared.as_uri()}"
    argv = argv_without_output_root(project, "--phases", "data", "--set", setting)
    assert run_all.main(argv, inventory_function=fake_inventory) == 0
    assert (shared / "fixture" / "results" / "data.json").is_file()
    capsys.readouterr()
    status = argv_without_output_root(project, "--set", setting, command="status")
    assert run_all.main(status, inventory_function=fake_inventory) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert rows["data"] == "done"


# ---------------------------------------------------------------------------------------------
# Same outputs on every executor


def test_sequential_sweep_applies_values(sequential_sweep: Project) -> None:
    assert sequential_sweep.executions() == SWEEP_PLAN
    base, _ = run_outputs(sequential_sweep, SWEEP_RUNS[0])
    doubled, _ = run_outputs(sequential_sweep, SWEEP_RUNS[1])
    assert base["parameters"]["phases"]["phase2_1"]["sigma_prior"] == 5
    assert doubled["parameters"]["phases"]["phase2_1"]["sigma_prior"] == 10
    # Same seed, twice the scale: each draw doubles.
    assert doubled["draws"] == pytest.approx([2 * draw for draw in base["draws"]])
    assert base["core_budget"] is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "executor_args",
    [("--executor", "local", "--workers", "2"), ("--executor", "dask", "--workers", "2")],
    ids=["local-2-processes", "dask-2-workers"],
)
def test_parallel_sweep_matches_sequential(
    sequential_sweep: Project, tmp_path: Path, executor_args: tuple[str, ...]
) -> None:
    project = make_sweep_project(tmp_path / "project")
    assert project.main("--phases", "sweep", *executor_args) == 0
    assert sorted(project.executions()) == sorted(SWEEP_PLAN)
    budget = str(ExecutionSettings(workers=2).core_budget())
    for run_id in SWEEP_PLAN:
        record = project.record(run_id)
        assert record["status"] == "done", run_id
        assert project.paths.notebook(run_id).is_file()
        result, predictions = run_outputs(project, run_id)
        expected_result, expected_predictions = run_outputs(sequential_sweep, run_id)
        assert result["draws"] == expected_result["draws"]
        assert result["parameters"] == expected_result["parameters"]
        pd.testing.assert_frame_equal(predictions, expected_predictions)
        assert result["core_budget"] == budget
        if "dask" in executor_args:
            assert record["worker"].startswith("tcp://127.0.0.1:")
    # A second invocation on the same executor reuses every run.
    assert project.main("--phases", "sweep", *executor_args) == 0
    assert sorted(project.executions()) == sorted(SWEEP_PLAN)


# ---------------------------------------------------------------------------------------------
# Lost workers


def wait_for_attempt(project: Project, run_id: str, attempt: int) -> dict:
    """Wait until the run's kernel started its ``attempt``-th time; return the record."""

    def started() -> bool:
        if project.executions().count(run_id) < attempt:
            return False
        return record_status(project, run_id) == "running"

    wait_for(started, timeout=120)
    record = project.record(run_id)
    assert record["attempt"] == attempt
    return record


@pytest.mark.slow
def test_lost_local_process_retried_once(tmp_path: Path) -> None:
    project = make_sweep_project(tmp_path / "project")
    hold = tmp_path / "hold"
    hold.touch()
    held_run = SWEEP_RUNS[1]
    project.behave({held_run: {"hold_file": str(hold)}})
    runner = start_runner(project, "--phases", "sweep", "--executor", "local", "--workers", "2")
    try:
        first = wait_for_attempt(project, held_run, 1)
        kill_process_tree(first["pid"])
        second = wait_for_attempt(project, held_run, 2)
        hold.unlink()
        output, _ = runner.communicate(timeout=120)
    finally:
        stop_tree(runner, [])
    assert runner.returncode == 0, output[-3000:]
    assert second["pid"] != first["pid"]
    assert f"local process pid {first['pid']}" in output
    assert "retrying once" in output
    for run_id in SWEEP_PLAN:
        assert project.record(run_id)["status"] == "done", run_id
    assert project.record(held_run)["attempt"] == 2


@pytest.mark.slow
def test_dask_worker_lost_twice_fails_run(tmp_path: Path) -> None:
    project = make_sweep_project(tmp_path / "project")
    hold = tmp_path / "hold"
    hold.touch()
    held_run = SWEEP_RUNS[2]
    project.behave({held_run: {"hold_file": str(hold)}})
    runner = start_runner(project, "--phases", "sweep", "--executor", "dask", "--workers", "2")
    try:
        first = wait_for_attempt(project, held_run, 1)
        assert first["worker"].startswith("tcp://127.0.0.1:")
        kill_process_tree(first["pid"])
        second = wait_for_attempt(project, held_run, 2)
        kill_process_tree(second["pid"])
        output, _ = runner.communicate(timeout=120)
    finally:
        stop_tree(runner, [])
        hold.unlink(missing_ok=True)
    assert runner.returncode == 1, output[-3000:]
    failed = project.record(held_run)
    assert failed["status"] == "failed"
    assert failed["worker"] == second["worker"]
    assert failed["error"].startswith(f"worker {second['worker']} lost the run: KilledWorker")
    assert f"{held_run}: failed: worker {second['worker']}" in output
    for run_id in SWEEP_PLAN:
        if run_id != held_run:
            assert project.record(run_id)["status"] == "done", run_id
    status = project.status()[held_run]
    assert status.state == "failed"
    assert "KilledWorker" in status.detail


@pytest.mark.slow
def test_existing_scheduler_by_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import LocalCluster

    project = make_project(tmp_path / "project")
    # A scheduler with Dask's default of 3 retries after lost workers, as `dask scheduler` has.
    with LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        assert project.main("--phases", "data", "--scheduler", address) == 0
    captured = capsys.readouterr()
    assert f"executor: dask, scheduler {address} with 1 worker(s)" in captured.out
    assert "the scheduler retries a run 3 time(s) after its worker is lost" in captured.err
    record = project.record("data")
    assert record["status"] == "done"
    assert record["worker"].startswith("tcp://127.0.0.1:")
