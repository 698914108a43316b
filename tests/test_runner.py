"""Tests of the notebook runner with stand-in notebooks that finish in about a second each.

Every plan notebook is a copy of ``tests/fixtures/notebooks/stand_in.ipynb``. A test writes
``behaviour.json`` next to the copies to make a run wait for a file, sleep, raise or skip its
result file. Each execution appends its run id to ``executions.log``. The data inventory is made up
(``tests/fixtures/runner_cli.py``), so no nflverse files are needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(FIXTURES))

from rbyards.params import load_params, validate_against_data  # noqa: E402
from rbyards.run_records import LockHeldError, ProfileLock, ProfilePaths, Workspace  # noqa: E402
from rbyards.runner import (  # noqa: E402
    NOTEBOOK_NAMES,
    DataInventory,
    RunnerError,
    build_plan,
    cell_timeout_seconds,
    compute_key,
    execute,
    inventory_data,
    prepare,
    select_runs,
)
from rbyards.status import collect_status, format_status  # noqa: E402
from runner_cli import fake_inventory  # noqa: E402

import run_all  # noqa: E402

FULL_PLAN = ["data", "phase2_1.seed", "phase2_2.seed", "phase2_3.seed", "comparison"]


@dataclass
class Project:
    """A throwaway checkout: stand-in notebooks, the fixture profile and an outputs folder."""

    root: Path

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def paths(self) -> ProfilePaths:
        return ProfilePaths(self.outputs / "fixture")

    def workspace(self) -> Workspace:
        return Workspace.from_root(
            REPO_ROOT,
            notebooks_dir=self.notebooks,
            params_dir=self.root / "params",
            output_root=self.outputs,
            source_dir=self.root / "source",
        )

    def argv(self, *extra: str, command: str = "run") -> list[str]:
        return [
            command,
            "--profile",
            "fixture",
            "--params-dir",
            str(self.root / "params"),
            "--output-root",
            str(self.outputs),
            "--notebooks-dir",
            str(self.notebooks),
            "--source-dir",
            str(self.root / "source"),
            *extra,
        ]

    def main(self, *extra: str, command: str = "run") -> int:
        return run_all.main(self.argv(*extra, command=command), inventory_function=fake_inventory)

    def behave(self, behaviour: dict) -> None:
        (self.notebooks / "behaviour.json").write_text(json.dumps(behaviour))

    def executions(self) -> list[str]:
        log = self.notebooks / "executions.log"
        return log.read_text().split() if log.exists() else []

    def record(self, run_id: str) -> dict:
        return json.loads(self.paths.record(run_id).read_text())

    def status(self, **overrides: object) -> dict[str, object]:
        report = collect_status(
            "fixture", self.workspace(), overrides=overrides, inventory_function=fake_inventory
        )
        return {status.run_id: status for status in report.runs}


def make_project(root: Path) -> Project:
    """Lay out a project under ``root`` with stand-in notebooks under every plan name."""
    project = Project(root)
    project.notebooks.mkdir(parents=True)
    for name in NOTEBOOK_NAMES.values():
        shutil.copy(FIXTURES / "notebooks" / "stand_in.ipynb", project.notebooks / name)
    (root / "params").mkdir()
    shutil.copy(FIXTURES / "params" / "fixture.yaml", root / "params" / "fixture.yaml")
    # A fixed package folder, so edits to lib/rbyards during the tests do not change the keys.
    (root / "source").mkdir()
    (root / "source" / "module.py").write_text("VALUE = 1\n")
    project.behave({})
    return project


def copy_project(project: Project, root: Path) -> Project:
    shutil.copytree(project.root, root)
    return Project(root)


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Map every file under ``folder`` to its modification time and SHA-256."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


def record_status(project: Project, run_id: str) -> str | None:
    try:
        return project.record(run_id).get("status")
    except (FileNotFoundError, ValueError):
        return None


def start_runner(project: Project, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(FIXTURES / "runner_cli.py"), *project.argv(*extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_tree(process: subprocess.Popen, children: list[psutil.Process]) -> None:
    """Kill a runner started by a test and the kernels it launched."""
    for proc in [*children]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project whose whole plan ran once and succeeded."""
    project = make_project(tmp_path_factory.mktemp("finished") / "project")
    assert project.main() == 0
    return project


# ---------------------------------------------------------------------------------------------
# Plan and keys


def test_plan_ids_dependencies_and_notebooks() -> None:
    params = load_params("quick", REPO_ROOT / "params")
    plan = build_plan(params, Workspace.from_root(REPO_ROOT))
    by_id = {run.run_id: run for run in plan}
    assert [run.run_id for run in plan][:3] == ["data", "phase1.seed", "phase1.pregame"]
    assert len(plan) == 14
    assert [run.run_id for run in plan][-3:] == ["comparison", "backtest.seed", "backtest.pregame"]
    assert by_id["phase2_3.pregame"].dependencies == ("data",)
    assert by_id["phase2_3.pregame"].soft_dependencies == ("phase2_1.pregame", "phase2_2.pregame")
    assert by_id["comparison"].dependencies == ("data",)
    assert len(by_id["comparison"].soft_dependencies) == 10
    assert by_id["baselines.seed"].notebook.name == "30_baselines.ipynb"
    # The comparison does not wait for the backtest, which needs only the data.
    assert not any("backtest" in run_id for run_id in by_id["comparison"].soft_dependencies)
    assert by_id["backtest.pregame"].dependencies == ("data",)
    assert by_id["backtest.pregame"].notebook.name == "40_backtest.ipynb"
    assert by_id["backtest.pregame"].parameters["run_id"] == "backtest.pregame"
    parameters = by_id["phase2_1.seed"].parameters
    assert parameters["feature_set"] == "seed"
    assert parameters["run_id"] == "phase2_1.seed"
    assert Path(parameters["params_dir"]).is_absolute()
    assert Path(parameters["output_root"]).is_absolute()


def test_plan_drops_disabled_dependency() -> None:
    params = load_params("quick", REPO_ROOT / "params", {"phases.phase2_1.enabled": False})
    plan = build_plan(params, Workspace.from_root(REPO_ROOT))
    by_id = {run.run_id: run for run in plan}
    assert "phase2_1.seed" not in by_id
    assert by_id["phase2_3.seed"].soft_dependencies == ("phase2_2.seed",)


def test_select_runs_adds_dependencies_and_forced() -> None:
    params = load_params("fixture", FIXTURES / "params")
    plan = build_plan(params, Workspace.from_root(REPO_ROOT))
    # Phase 2.3 reads phases 2.1 and 2.2 through soft dependencies, which are not added.
    selected, forced = select_runs(plan, ["phase2_3"], None)
    assert selected == ["data", "phase2_3.seed"]
    assert forced == set()
    selected, forced = select_runs(plan, ["comparison"], ["phase2_2.seed"])
    assert selected == ["data", "phase2_2.seed", "comparison"]
    assert forced == {"phase2_2.seed"}
    selected, forced = select_runs(plan, None, True)
    assert forced == set(FULL_PLAN)


def test_key_ignores_parameters_the_phase_does_not_read(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    workspace = project.workspace()
    base = load_params("fixture", workspace.params_dir)
    changed = load_params("fixture", workspace.params_dir, {"phases.phase2_2.hidden_units": 9})
    inventory = fake_inventory(base)
    run_21, run_22 = build_plan(base, workspace)[1:3]
    assert compute_key(run_21, base, inventory, "s", {}) == compute_key(
        run_21, changed, inventory, "s", {}
    )
    assert compute_key(run_22, base, inventory, "s", {}) != compute_key(
        run_22, changed, inventory, "s", {}
    )
    assert compute_key(run_21, base, inventory, "s", {}) != compute_key(
        run_21, base, inventory, "other sources", {}
    )


def test_cell_timeout_adds_margin() -> None:
    params = load_params("quick", REPO_ROOT / "params")
    assert cell_timeout_seconds(params) == 4 * 60 + 300
    assert cell_timeout_seconds(params, margin_seconds=10) == 250
    assert cell_timeout_seconds(params, phase="phase2_2") == 4 * 60 + 300


def test_backtest_timeout_covers_every_fit() -> None:
    params = load_params("quick", REPO_ROOT / "params")
    # 2 seasons times phase1 and phase2_1, sampled in one notebook cell.
    assert cell_timeout_seconds(params, phase="backtest") == 4 * 4 * 60 + 300
    baselines_only = load_params("quick", REPO_ROOT / "params", {"backtest.models": ["empirical"]})
    assert cell_timeout_seconds(baselines_only, phase="backtest") == 4 * 60 + 300


def test_backtest_key_reads_backtest_parameters(tmp_path: Path) -> None:
    workspace = make_project(tmp_path / "project").workspace()
    base = load_params("quick", REPO_ROOT / "params")
    changed = load_params("quick", REPO_ROOT / "params", {"backtest.seasons": [2024]})
    inventory = fake_inventory(base)
    by_id = {run.run_id: run for run in build_plan(base, workspace)}
    backtest_run, phase_run = by_id["backtest.seed"], by_id["phase2_1.seed"]
    assert compute_key(backtest_run, base, inventory, "s", {}) != compute_key(
        backtest_run, changed, inventory, "s", {}
    )
    assert compute_key(phase_run, base, inventory, "s", {}) == compute_key(
        phase_run, changed, inventory, "s", {}
    )


def write_player_file(path: Path, rows: list[tuple[int, int, str, float]]) -> None:
    """Write a player statistics file with (season, week, position_group, carries) rows."""
    frame = pd.DataFrame(
        {
            "player_id": [f"00-{index:07d}" for index in range(len(rows))],
            "player_name": "A.Back",
            "position_group": [row[2] for row in rows],
            "recent_team": "KC",
            "opponent_team": "LV",
            "season": [row[0] for row in rows],
            "week": [row[1] for row in rows],
            "season_type": "REG",
            "carries": [row[3] for row in rows],
            "rushing_yards": 40.0,
            "receptions": 1.0,
            "targets": 2.0,
            "receiving_yards": 8.0,
        }
    )
    if path.suffix == ".parquet":
        frame.rename(columns={"recent_team": "team"}).to_parquet(path)
    else:
        frame.to_csv(path, index=False)


def test_inventory_reads_rb_weeks(tmp_path: Path) -> None:
    write_player_file(
        tmp_path / "player_stats_2023.csv",
        [(2023, 1, "RB", 12), (2023, 2, "RB", 3), (2023, 3, "WR", 9), (2023, 4, "RB", 5)],
    )
    write_player_file(
        tmp_path / "stats_player_week_2024.parquet", [(2024, 1, "RB", 8), (2024, 7, "RB", 20)]
    )
    (tmp_path / "games.csv").write_text("game_id,season\nx,2024\n")
    (tmp_path / "notes.txt").write_text("not data")
    params = load_params("quick", REPO_ROOT / "params", {"data.nflverse_dir": str(tmp_path)})
    inventory = inventory_data(params, REPO_ROOT / "notebooks")
    assert inventory.data_dir == tmp_path.resolve()
    assert inventory.weeks_by_season == {2023: (1, 4), 2024: (1, 7)}
    assert sorted(inventory.checksums) == [
        "games.csv",
        "player_stats_2023.csv",
        "stats_player_week_2024.parquet",
    ]


def test_inventory_relative_to_notebooks(tmp_path: Path) -> None:
    folder = tmp_path / "notebooks" / "nflverse"
    folder.mkdir(parents=True)
    write_player_file(folder / "player_stats_2024.csv", [(2024, 3, "RB", 10)])
    (folder / "games.csv").write_text("game_id\nx\n")
    params = load_params("quick", REPO_ROOT / "params", {"data.nflverse_dir": "nflverse"})
    inventory = inventory_data(params, tmp_path / "notebooks")
    assert inventory.data_dir == folder.resolve()
    assert inventory.weeks_by_season == {2024: (3,)}


def test_inventory_without_files(tmp_path: Path) -> None:
    params = load_params("quick", REPO_ROOT / "params", {"data.nflverse_dir": str(tmp_path)})
    inventory = inventory_data(params, REPO_ROOT / "notebooks")
    assert inventory.weeks_by_season is None
    assert inventory.checksums == {}


def test_inventory_invalid_file_rejected(tmp_path: Path) -> None:
    (tmp_path / "player_stats_2024.csv").write_text("season,week\n2024,1\n")
    (tmp_path / "games.csv").write_text("game_id\nx\n")
    params = load_params("quick", REPO_ROOT / "params", {"data.nflverse_dir": str(tmp_path)})
    with pytest.raises(RunnerError, match="player_stats_2024.csv"):
        inventory_data(params, REPO_ROOT / "notebooks")


def test_no_data_without_download_rejected(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    with pytest.raises(RunnerError, match="missing nflverse files in"):
        prepare(
            "fixture",
            project.workspace(),
            overrides={"data.nflverse_dir": str(tmp_path / "empty")},
        )


class DownloadingInventory:
    """Inventory with no files until the data notebook has run, then the given weeks."""

    def __init__(self, project: Project, weeks: dict[int, tuple[int, ...]]) -> None:
        self.project = project
        self.weeks = weeks

    def __call__(self, params: object) -> DataInventory:
        if "data" not in self.project.executions():
            return DataInventory(Path("/nonexistent"), {}, None)
        return DataInventory(Path("/nonexistent"), {"player_stats_2024.csv": "c" * 64}, self.weeks)


def test_split_checked_after_download(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    inventory = DownloadingInventory(project, {2023: tuple(range(1, 19)), 2024: (1, 2, 3)})
    prepared = prepare(
        "fixture",
        project.workspace(),
        overrides={"data.download": True},
        phases=["phase2_1"],
        inventory_function=inventory,
    )
    outcomes = {outcome.run_id: outcome for outcome in execute(prepared)}
    assert outcomes["data"].status == "failed"
    assert "leaves no test rows: season 2024 has weeks up to 3" in outcomes["data"].error
    assert outcomes["phase2_1.seed"].status == "blocked"
    assert project.executions() == ["data"]


def test_data_rekeyed_after_download(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    inventory = DownloadingInventory(project, {2023: tuple(range(1, 19)), 2024: (1, 7, 8)})
    overrides = {"data.download": True}
    prepared = prepare(
        "fixture",
        project.workspace(),
        overrides=overrides,
        phases=["data"],
        inventory_function=inventory,
    )
    assert execute(prepared)[0].status == "done"
    # The second invocation finds the downloaded files from the start and reuses the data run.
    again = prepare(
        "fixture",
        project.workspace(),
        overrides=overrides,
        phases=["data"],
        inventory_function=inventory,
    )
    assert execute(again)[0].status == "reused"


@pytest.mark.realdata
def test_inventory_of_real_data() -> None:
    data_dir = os.environ.get("NFLVERSE_DIR")
    if not data_dir or not Path(data_dir).is_dir():
        pytest.skip("NFLVERSE_DIR is unset or not a folder; point it at the nflverse files")
    params = load_params("default", REPO_ROOT / "params", {"data.nflverse_dir": data_dir})
    inventory = inventory_data(params, REPO_ROOT / "notebooks")
    assert 2024 in inventory.seasons
    assert max(inventory.weeks_by_season[2024]) >= params.split.test_start_week
    assert "games.csv" in inventory.checksums
    validate_against_data(params, inventory.seasons, inventory.weeks_by_season)


# ---------------------------------------------------------------------------------------------
# Running, reuse and failures


def test_first_run_executes_whole_plan(finished: Project) -> None:
    assert finished.executions() == FULL_PLAN
    for run_id in FULL_PLAN:
        record = finished.record(run_id)
        assert record["status"] == "done"
        assert len(record["key"]) == 64
        assert finished.paths.notebook(run_id).is_file()
        assert not finished.paths.partial_notebook(run_id).exists()
    logs = sorted(path.name for path in finished.paths.logs.iterdir())
    assert any(name.startswith("phase2_1.seed.") for name in logs)
    assert any(name.startswith("run_all.") for name in logs)
    assert not finished.paths.pid_file.exists()


def test_second_run_reuses_finished_runs(
    finished: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(finished, tmp_path / "project")
    assert project.main() == 0
    assert project.executions() == FULL_PLAN
    out = capsys.readouterr().out
    for run_id in FULL_PLAN:
        assert f"{run_id}: reused" in out


def test_force_reruns_named_phase_only(finished: Project, tmp_path: Path) -> None:
    project = copy_project(finished, tmp_path / "project")
    assert project.main("--force", "phase2_2") == 0
    assert project.executions() == [*FULL_PLAN, "phase2_2.seed"]


def test_changed_parameter_reruns_affected_runs(finished: Project, tmp_path: Path) -> None:
    project = copy_project(finished, tmp_path / "project")
    assert project.main("--set", "phases.phase2_1.hidden_units=8") == 0
    rerun = project.executions()[len(FULL_PLAN) :]
    assert rerun == ["phase2_1.seed", "phase2_3.seed", "comparison"]


def test_blocked_run_keeps_finished_record(finished: Project, tmp_path: Path) -> None:
    project = copy_project(finished, tmp_path / "project")
    project.behave({"data": {"raise": "boom from the stand-in"}})
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert project.main("--force", "data") == 1
    assert project.executions()[len(FULL_PLAN) :] == ["data"]
    assert "phase2_3.seed: skipped, blocked by data" in err.getvalue()
    # The dependents were blocked, but their finished records stay.
    assert project.record("phase2_3.seed")["status"] == "done"
    # The failed run's result from the earlier success no longer passes for a current one.
    assert not project.paths.result("data").exists()
    assert (project.paths.results / "superseded" / "data.json").is_file()
    before_repair = len(project.executions())
    project.behave({})
    assert project.main() == 0
    rerun = project.executions()[before_repair:]
    # The dependents are reused: the key of data is what it was when they finished.
    assert rerun == ["data"]


@pytest.fixture(scope="module")
def failed_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, int, str]:
    """A project whose phase2_1.seed raised; returns it, the exit code and the error output."""
    project = make_project(tmp_path_factory.mktemp("failed") / "project")
    project.behave({"phase2_1.seed": {"raise": "boom from the stand-in"}})
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = project.main()
    return project, code, err.getvalue()


def test_failed_run_keeps_notebook_and_error(failed_once: tuple[Project, int, str]) -> None:
    project, code, err = failed_once
    assert code == 1
    failed = project.record("phase2_1.seed")
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: boom from the stand-in (cell 4)"
    notebook = project.paths.notebook("phase2_1.seed")
    assert "boom from the stand-in" in notebook.read_text()
    assert "phase2_1.seed: failed after" in err
    assert str(notebook) in err


def test_failed_phase_leaves_soft_dependents_running(
    failed_once: tuple[Project, int, str], tmp_path: Path
) -> None:
    failed, _, err = failed_once
    assert failed.executions() == FULL_PLAN
    assert "blocked" not in err
    assert failed.record("phase2_3.seed")["status"] == "done"
    assert failed.record("comparison")["status"] == "done"

    project = copy_project(failed, tmp_path / "project")
    project.behave({})
    assert project.main() == 0
    # Phase 2.3 and the comparison ran without phase 2.1, so they run again with it.
    assert project.executions()[len(FULL_PLAN) :] == [
        "phase2_1.seed",
        "phase2_3.seed",
        "comparison",
    ]


def test_notebooks_get_papermill_parameters(finished: Project, tmp_path: Path) -> None:
    project = copy_project(finished, tmp_path / "project")
    assert project.main("--phases", "phase2_1", "--set", "sampler.seed=5") == 0
    result = json.loads(project.paths.result("phase2_1.seed").read_text())
    assert result["papermill_parameters"] == {
        "profile": "fixture",
        "params_dir": str(project.root / "params"),
        "output_root": str(project.outputs),
        "overrides": {"sampler.seed": 5},
        "feature_set": "seed",
        "run_id": "phase2_1.seed",
    }
    assert result["parameters"]["sampler"]["seed"] == 5
    data = json.loads(project.paths.result("data").read_text())
    assert data["papermill_parameters"]["feature_set"] is None


def test_unreadable_notebook_fails_without_notebook(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    (project.notebooks / NOTEBOOK_NAMES["data"]).write_text("not a notebook")
    assert project.main("--phases", "data") == 1
    record = project.record("data")
    assert record["status"] == "failed"
    assert record["notebook"] is None
    assert not project.paths.notebook("data").exists()


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ({"result_status": "none"}, "the notebook finished but wrote no result file"),
        (
            {"result_status": "failed", "error": "sampler diverged"},
            "result status is 'failed': sampler diverged",
        ),
    ],
)
def test_run_without_ok_result_fails(tmp_path: Path, behaviour: dict, expected: str) -> None:
    project = make_project(tmp_path / "project")
    project.behave({"data": behaviour})
    assert project.main("--phases", "data") == 1
    assert project.record("data")["error"].startswith(expected)


def test_stale_result_file_is_not_reused(finished: Project, tmp_path: Path) -> None:
    project = copy_project(finished, tmp_path / "project")
    project.behave({"data": {"result_status": "none"}})
    assert project.main("--phases", "data", "--force") == 1
    assert "did not rewrite its result file" in project.record("data")["error"]


def test_hung_cell_times_out(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    project.behave({"data": {"sleep": 60}})
    started = time.monotonic()
    # 0.001 minutes plus a 1 s margin, rounded up to whole seconds.
    argv = ("--phases", "data", "--set", "sampler.time_limit_minutes=0.001")
    assert project.main(*argv, "--timeout-margin", "1") == 1
    assert time.monotonic() - started < 30
    record = project.record("data")
    assert record["error"].startswith("timed out: a cell ran longer than 2 s")
    assert project.paths.notebook("data").is_file()


# ---------------------------------------------------------------------------------------------
# Status


def test_status_pending_before_any_run(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    states = {status.state for status in project.status().values()}
    assert states == {"pending"}


def test_status_done_failed_blocked_stale(failed_once: tuple[Project, int, str]) -> None:
    project, _, _ = failed_once
    states = {run_id: status.state for run_id, status in project.status().items()}
    assert states == {
        "data": "done",
        "phase2_1.seed": "failed",
        "phase2_2.seed": "done",
        "phase2_3.seed": "done",
        "comparison": "done",
    }
    stale = project.status(**{"phases.phase2_2.hidden_units": 3})
    assert stale["phase2_2.seed"].state == "stale"
    assert stale["comparison"].state == "stale"
    assert stale["data"].state == "done"
    assert project.status()["data"].metrics == {"coverage_90": 0.875, "mae": 17.25}


def test_status_text_shows_failed_paths(failed_once: tuple[Project, int, str]) -> None:
    project, _, _ = failed_once
    report = collect_status("fixture", project.workspace(), inventory_function=fake_inventory)
    text = format_status(report)
    record = project.record("phase2_1.seed")
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in text.splitlines()[1:-1]}
    assert rows["phase2_1.seed"] == ["failed", "RuntimeError: boom from the stand-in (cell 4)"]
    assert rows["phase2_3.seed"][0] == "done"
    assert f"notebook {project.paths.notebook('phase2_1.seed')}" in text
    assert f"log {record['log']}" in text


def test_status_command_prints_runs(finished: Project, capsys: pytest.CaptureFixture[str]) -> None:
    assert finished.main(command="status") == 0
    out = capsys.readouterr().out
    assert "phase2_3.seed" in out
    assert "coverage_90=0.875 mae=17.250" in out
    assert f"logs in {finished.paths.logs}" in out


# ---------------------------------------------------------------------------------------------
# Interrupted and concurrent runs


@pytest.mark.slow
def test_kill_during_run_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "project")
    hold = tmp_path / "hold"
    hold.touch()
    project.behave({"phase2_1.seed": {"hold_file": str(hold)}})
    runner = start_runner(project, "--phases", "phase2_1")
    children: list[psutil.Process] = []
    try:
        # The kernel logs its run id before it waits on the hold file.
        wait_for(lambda: project.executions() == ["data", "phase2_1.seed"])
        running = project.status()["phase2_1.seed"]
        assert running.state == "running"
        assert f"pid {runner.pid}" in running.detail
        children = psutil.Process(runner.pid).children(recursive=True)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        stop_tree(runner, children)
    assert project.status()["phase2_1.seed"].state == "interrupted"
    assert project.status()["data"].state == "done"

    hold.unlink()
    capsys.readouterr()
    assert project.main("--phases", "phase2_1") == 0
    captured = capsys.readouterr()
    assert "cleared stale lock" in captured.err
    assert f"pid {runner.pid}" in captured.err
    assert "data: reused" in captured.out
    assert project.executions() == ["data", "phase2_1.seed", "phase2_1.seed"]
    assert not project.paths.partial_notebook("phase2_1.seed").exists()
    assert project.record("phase2_1.seed")["status"] == "done"


@pytest.mark.slow
def test_second_runner_refused_while_first_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path / "project")
    hold = tmp_path / "hold"
    hold.touch()
    project.behave({"data": {"hold_file": str(hold)}})
    runner = start_runner(project, "--phases", "data")
    try:
        wait_for(lambda: record_status(project, "data") == "running")
        capsys.readouterr()
        assert project.main() == 2
        err = capsys.readouterr().err
        assert f"profile fixture is already being run by pid {runner.pid}" in err
        assert record_status(project, "data") == "running"
        hold.unlink()
        assert runner.wait(timeout=60) == 0
    finally:
        stop_tree(runner, [])
    assert project.executions() == ["data"]


def test_stale_pid_file_is_cleared(
    finished: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(finished, tmp_path / "project")
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    pid_file = project.paths.pid_file
    pid_file.write_text(json.dumps({"pid": exited.pid, "started": "2026-01-01T00:00:00+00:00"}))
    assert project.main("--phases", "data") == 0
    err = capsys.readouterr().err
    assert f"cleared stale lock {project.paths.lock_file}: pid {exited.pid}" in err
    assert not pid_file.exists()


def test_held_lock_with_dead_pid_explained(tmp_path: Path) -> None:
    paths = ProfilePaths(tmp_path / "outputs" / "fixture")
    paths.state.mkdir(parents=True)
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    paths.pid_file.write_text(json.dumps({"pid": exited.pid}))
    with FileLock(paths.lock_file, timeout=0):
        with pytest.raises(LockHeldError) as caught:
            ProfileLock(paths).acquire()
    message = str(caught.value)
    assert f"pid {exited.pid} in {paths.pid_file} is not running" in message
    assert "delete the lock file" in message


# ---------------------------------------------------------------------------------------------
# Invalid input: exit code 2, one message, earlier outputs untouched

BAD_INPUT = [
    ("missing profile", ["--profile", "nope"], "profile 'nope' not found"),
    ("negative draws", ["--set", "sampler.draws=-5"], "sampler.draws = -5 is invalid"),
    ("unknown key", ["--set", "sampler.drawz=5"], "unknown key sampler.drawz = 5"),
    ("wrong type", ["--set", "sampler.chains=two"], "sampler.chains = 'two' is invalid"),
    ("level above one", ["--set", "evaluation.levels=[0.5,0.9,1.5]"], "levels.2 = 1.5"),
    ("unknown backend", ["--set", "sampler.backend=stan"], "allowed values: 'nutpie'"),
    ("expert priors", ["--set", "phases.phase2_2.experts=3"], "one value per expert"),
    ("unknown phase", ["--phases", "phase9"], "--phases 'phase9' is not a phase or run id"),
    ("unknown forced", ["--force", "phase9"], "--force 'phase9' is not a phase or run id"),
    ("disabled phase", ["--phases", "phase1"], "--phases phase1: that phase is disabled"),
    ("disabled backtest", ["--phases", "backtest"], "set backtest.enabled to true"),
    (
        "backtest season absent",
        ["--set", "backtest.enabled=true", "--set", "backtest.seasons=[2022,2024]"],
        "fixture.yaml with overrides {'backtest.enabled': True, 'backtest.seasons': [2022, "
        "2024]}: backtest.seasons = [2022, 2024] is invalid: 2022 is not in the data",
    ),
    (
        "backtest first season",
        ["--set", "backtest.enabled=true", "--set", "backtest.seasons=[2023]"],
        "2023 has no earlier season to train on; allowed values: [2024]",
    ),
    ("test season absent", ["--set", "split.test_season=2022"], "test_season = 2022 is not in"),
    ("no test rows", ["--set", "split.test_start_week=13"], "leaves no test rows"),
    ("no train rows", ["--set", "split.calibration_weeks=40"], "leaves no training rows"),
    ("season not listed", ["--set", "data.seasons=[2023]"], "is not in data.seasons [2023]"),
    ("setting syntax", ["--set", "sampler.draws"], "expected KEY=VALUE"),
    ("unknown command", ["--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_exits_2_without_writing(
    finished: Project, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(finished.outputs)
    assert finished.main(*argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert snapshot(finished.outputs) == before


def test_missing_notebook_exits_2(
    finished: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(finished, tmp_path / "project")
    (project.notebooks / NOTEBOOK_NAMES["phase2_2"]).unlink()
    before = snapshot(project.outputs)
    assert project.main() == 2
    assert "notebook(s) not found" in capsys.readouterr().err
    assert snapshot(project.outputs) == before


def test_invalid_profile_file_exits_2(
    finished: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(finished, tmp_path / "project")
    profile = project.root / "params" / "fixture.yaml"
    profile.write_text(profile.read_text() + "samplerr: {draws: 5}\n")
    before = snapshot(project.outputs)
    assert project.main() == 2
    err = capsys.readouterr().err
    assert f"{profile}: unknown key samplerr" in err
    assert snapshot(project.outputs) == before
