"""Run the study's notebooks in order with papermill, resume finished runs and report status.

A *plan* lists the runs of one profile: ``data``, then ``phase1.<fs>``, ``phase2_1.<fs>``,
``phase2_2.<fs>``, ``phase2_3.<fs>`` and ``baselines.<fs>`` for each feature set ``fs``, then
``comparison``, then ``backtest.<fs>`` when the backtest is enabled. The backtest refits the
models on several test seasons and needs only the data, so it runs last and the comparison does
not wait for it. A ``sweep`` in the parameters adds one run per value, such as
``phase2_1.seed.sweep-sigma_prior=10`` (see :mod:`rbyards.sweeps`); phase sweeps run before the
comparison, which summarizes them, and backtest sweeps after it. Each run executes one notebook
with the papermill parameters ``profile``, ``params_dir``, ``output_root``, ``overrides``,
``feature_set`` and ``run_id``; a sweep run's overrides also set its sweep value.

The plan is a graph: a run starts when every run it depends on has ended, so independent runs
can execute at the same time on the executors of :mod:`rbyards.executors`. Each executor runs a
notebook with :func:`rbyards.notebook_runs.run_task`; :mod:`rbyards.run_records` holds the
paths, records and lock, and :mod:`rbyards.status` reports every run's state.

Files under ``<output_root>/<profile>/``:

- ``notebooks/<run_id>.ipynb``: the executed notebook, also kept when the run failed. While a run
  executes, papermill saves it cell by cell to ``notebooks/.<run_id>.partial.ipynb``, which is
  renamed when the run ends.
- ``results/<run_id>.json``: written by the notebook with :func:`rbyards.provenance.write_result`.
  When a run fails, the result file of an earlier run moves to ``results/superseded/``.
- ``logs/<run_id>.<UTC time>.log`` per run, ``logs/run_all.<UTC time>.log`` per invocation.
- ``state/runs/<run_id>.json``: the run's record (status running, done, failed or blocked; key,
  worker, host, pid, attempt, times, notebook, log, error). A record with status done is the
  done marker.
- ``state/run.lock`` (file lock) and ``state/run.pid`` (the process holding it).

A run is reused when its record is done with the current key, its notebook exists and its result
file has status ok. The key is a SHA-256 over the parameters the run reads, the data files'
checksums, the source of ``lib/rbyards/*.py``, the notebook file and the keys of its dependencies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rbyards import data, executors, sweeps
from rbyards.executors import ExecutionSettings, RunFailure
from rbyards.notebook_runs import (
    RunTask,
    ensure_info_logging,
    file_handler,
    run_task,
)
from rbyards.params import (
    BAYESIAN_PHASES,
    Params,
    ParamsError,
    load_params,
    validate_against_data,
)
from rbyards.provenance import sha256_file, write_json_atomic
from rbyards.run_records import (
    ProfileLock,
    ProfilePaths,
    Run,
    RunOutcome,
    Workspace,
    read_json,
    utc_now,
)

logger = logging.getLogger(__name__)

PHASES = (
    "data",
    "phase1",
    "phase2_1",
    "phase2_2",
    "phase2_3",
    "baselines",
    "comparison",
    "backtest",
)
PER_FEATURE_SET_PHASES = ("phase1", "phase2_1", "phase2_2", "phase2_3", "baselines")
# Name that selects every sweep run in --phases and --force.
SWEEP_SELECTION = "sweep"
NOTEBOOK_NAMES = {
    "data": "00_data.ipynb",
    "phase1": "10_phase1.ipynb",
    "phase2_1": "21_phase2_1.ipynb",
    "phase2_2": "22_phase2_2.ipynb",
    "phase2_3": "23_phase2_3.ipynb",
    "baselines": "30_baselines.ipynb",
    "comparison": "90_comparison.ipynb",
    "backtest": "40_backtest.ipynb",
}
# Parameters each phase reads; a change anywhere else does not rerun it. Runs also carry the keys
# of their dependencies, so phase2_3 reruns when phase2_1 or phase2_2 does.
PHASE_PARAMETERS = {
    "data": ("data", "split", "features"),
    "phase1": ("data", "split", "features.log_shift", "sampler", "phases.phase1", "evaluation"),
    "phase2_1": ("data", "split", "features.log_shift", "sampler", "phases.phase2_1", "evaluation"),
    "phase2_2": ("data", "split", "features.log_shift", "sampler", "phases.phase2_2", "evaluation"),
    "phase2_3": ("data", "split", "features.log_shift", "phases.phase2_3", "evaluation"),
    "baselines": ("data", "split", "features.log_shift", "phases.baselines", "evaluation"),
    "comparison": ("features.feature_sets", "evaluation"),
    "backtest": (
        "data",
        "split",
        "features.log_shift",
        "sampler",
        "phases.phase1",
        "phases.phase2_1",
        "phases.phase2_2",
        "evaluation",
        "backtest",
    ),
}
# Added to the sampler's time limit to get papermill's per-cell timeout: sampling is bounded by
# the sampler itself, and the margin covers model building and posterior predictive draws.
CELL_TIMEOUT_MARGIN_SECONDS = 300.0


class RunnerError(ValueError):
    """Invalid runner input: an unknown phase name, a missing notebook, unusable data files."""


@dataclass(frozen=True)
class DataInventory:
    """The data files a profile reads: checksums, and the weeks per season when readable."""

    data_dir: Path | None
    checksums: dict[str, str]
    weeks_by_season: dict[int, tuple[int, ...]] | None

    @property
    def seasons(self) -> tuple[int, ...]:
        """Seasons with player rows (empty when the files were not read)."""
        return tuple(sorted(self.weeks_by_season or {}))


InventoryFunction = Callable[[Params], DataInventory]


@dataclass
class Prepared:
    """A validated plan, ready to execute."""

    profile: str
    workspace: Workspace
    params: Params
    overrides: dict[str, Any]
    plan: list[Run]
    selected: list[str]
    forced: set[str]
    inventory: DataInventory
    inventory_function: InventoryFunction
    paths: ProfilePaths


# ---------------------------------------------------------------------------------------------
# Plan


def build_plan(params: Params, workspace: Workspace) -> list[Run]:
    """List the runs for ``params`` in execution order.

    Parameters
    ----------
    params : Params
        Validated parameters; disabled phases are left out.
    workspace : Workspace
        Gives the notebooks folder and the absolute paths passed to the notebooks.

    Returns
    -------
    list of Run
        ``data``, the per-feature-set runs grouped by phase, the sweep runs of those phases,
        ``comparison``, then the ``backtest`` runs, which depend on ``data`` only, and their
        sweep runs.

    Raises
    ------
    RunnerError
        When a sweep repeats a disabled phase, or a parameter its phase does not read.
    """
    phases = params.phases
    enabled = {
        "phase1": phases.phase1.enabled,
        "phase2_1": phases.phase2_1.enabled,
        "phase2_2": phases.phase2_2.enabled,
        "phase2_3": phases.phase2_3.enabled
        and (phases.phase2_1.enabled or phases.phase2_2.enabled),
        "baselines": phases.baselines.enabled,
    }
    if phases.phase2_3.enabled and not enabled["phase2_3"]:
        logger.info("phase2_3 left out: it calibrates phase2_1 and phase2_2, which are disabled")

    def make(
        phase: str,
        feature_set: str | None,
        deps: Iterable[str],
        soft: Iterable[str] = (),
        point: sweeps.SweepPoint | None = None,
    ) -> Run:
        run_id = phase if feature_set is None else f"{phase}.{feature_set}"
        if point is not None:
            run_id = point.run_id
        parameters = {
            "profile": params.profile,
            "params_dir": str(workspace.params_dir),
            "output_root": str(workspace.output_root),
            "overrides": {},
            "feature_set": feature_set,
            "run_id": run_id,
        }
        return Run(
            run_id=run_id,
            phase=phase,
            notebook=workspace.notebooks_dir / NOTEBOOK_NAMES[phase],
            feature_set=feature_set,
            parameters=parameters,
            dependencies=tuple(deps),
            soft_dependencies=tuple(soft),
            sweep=point.overrides if point is not None else {},
        )

    points = _checked_sweep_points(params, enabled)
    plan = [make("data", None, ())]
    for phase in PER_FEATURE_SET_PHASES:
        if not enabled[phase]:
            continue
        for feature_set in params.features.feature_sets:
            soft = []
            if phase == "phase2_3":
                # Phase 2.3 calibrates whichever of 2.1 and 2.2 finished, so it waits for both
                # but a failure of one does not block it.
                soft = [
                    f"{upstream}.{feature_set}"
                    for upstream in ("phase2_1", "phase2_2")
                    if enabled[upstream]
                ]
            plan.append(make(phase, feature_set, ["data"], soft))
    for point in points:
        if point.phase != "backtest":
            plan.append(make(point.phase, point.feature_set, ["data"], point=point))
    plan.append(make("comparison", None, ["data"], [run.run_id for run in plan[1:]]))
    if params.backtest.enabled:
        for feature_set in params.features.feature_sets:
            plan.append(make("backtest", feature_set, ["data"]))
    for point in points:
        if point.phase == "backtest":
            plan.append(make(point.phase, point.feature_set, ["data"], point=point))
    return plan


def _checked_sweep_points(params: Params, enabled: Mapping[str, bool]) -> list[sweeps.SweepPoint]:
    """Return the sweep points after checking that each swept phase runs and reads its key."""
    switches = {**enabled, "backtest": params.backtest.enabled}
    for sweep in params.sweep:
        for phase in sweep.swept_phases:
            if not switches[phase]:
                switch = "backtest.enabled" if phase == "backtest" else f"phases.{phase}.enabled"
                raise RunnerError(
                    f"sweep of {sweep.parameter} repeats {phase}, which is disabled; set "
                    f"{switch} to true or remove the sweep"
                )
            _check_not_overridden_by_phase(params, sweep.parameter, phase)
            read = PHASE_PARAMETERS[phase]
            if not any(_key_within(sweep.parameter, section) for section in read):
                raise RunnerError(
                    f"sweep of {sweep.parameter} repeats {phase}, which does not read that "
                    f"parameter, so every run would be the same; {phase} reads "
                    f"{', '.join(read)}"
                )
    try:
        return sweeps.sweep_points(params)
    except ValueError as exc:
        raise RunnerError(str(exc)) from exc


def _check_not_overridden_by_phase(params: Params, parameter: str, phase: str) -> None:
    """Reject a sweep of ``sampler.<name>`` for a phase that sets ``<name>`` for itself."""
    section, _, name = parameter.partition(".")
    if section != "sampler" or phase not in BAYESIAN_PHASES:
        return
    own = params.phase_sampler_changes(phase)
    if name in own:
        raise RunnerError(
            f"sweep of {parameter} repeats {phase}, but phases.{phase}.sampler.{name} = "
            f"{own[name]!r} takes precedence, so every run would be the same; sweep "
            f"phases.{phase}.sampler.{name} instead"
        )


def _key_within(key: str, section: str) -> bool:
    """Return whether the dotted ``key`` is ``section`` or lies inside it."""
    return key == section or key.startswith(section + ".")


def _with_overrides(plan: list[Run], overrides: Mapping[str, Any]) -> list[Run]:
    """Return the plan with ``overrides``, and a sweep run's own, in its papermill parameters."""
    result = []
    for run in plan:
        parameters = dict(run.parameters, overrides={**overrides, **run.sweep})
        result.append(
            Run(
                run.run_id,
                run.phase,
                run.notebook,
                run.feature_set,
                parameters,
                run.dependencies,
                run.soft_dependencies,
                run.sweep,
            )
        )
    return result


def _expand_names(names: Sequence[str], plan: list[Run], option: str) -> set[str]:
    """Map phase names and run ids to the run ids of ``plan``."""
    run_ids = [run.run_id for run in plan]
    selected: set[str] = set()
    for name in names:
        if name in run_ids:
            selected.add(name)
        elif name == SWEEP_SELECTION:
            matches = [run.run_id for run in plan if run.sweep]
            if not matches:
                raise RunnerError(f"{option} {name}: the parameters have no sweep section")
            selected.update(matches)
        elif name in PHASES:
            matches = [run.run_id for run in plan if run.phase == name]
            if not matches:
                switch = "backtest.enabled" if name == "backtest" else f"phases.{name}.enabled"
                raise RunnerError(
                    f"{option} {name}: that phase is disabled in the parameters; set "
                    f"{switch} to true or leave it out of {option}"
                )
            selected.update(matches)
        else:
            raise RunnerError(
                f"{option} {name!r} is not a phase or run id; allowed phases: "
                f"{', '.join(PHASES)}, {SWEEP_SELECTION}; run ids: {', '.join(run_ids)}"
            )
    return selected


def select_runs(
    plan: list[Run], phases: Sequence[str] | None, force: Sequence[str] | bool | None
) -> tuple[list[str], set[str]]:
    """Choose the runs to bring up to date and the runs to execute even when reusable.

    Parameters
    ----------
    plan : list of Run
        The profile's plan.
    phases : sequence of str, optional
        Phase names (``phase2_1``, which includes its sweep runs), run ids (``phase2_1.seed``)
        or ``sweep`` for every sweep run; None selects the whole plan. The hard dependencies of
        every selected run are added (and reused when up to date).
    force : sequence of str or bool, optional
        True forces every selected run; names force those runs and add them to the selection.

    Returns
    -------
    selected : list of str
        Run ids in plan order.
    forced : set of str
        Run ids to execute even when their outputs could be reused.

    Raises
    ------
    RunnerError
        When a name is neither a phase nor a run id of the plan, or names a disabled phase.
    """
    by_id = {run.run_id: run for run in plan}
    requested = set(by_id) if phases is None else _expand_names(phases, plan, "--phases")
    forced: set[str] = set()
    if force is True:
        forced = set(requested)
    elif force:
        forced = _expand_names(force, plan, "--force")
        requested |= forced
    pending = list(requested)
    while pending:
        for dependency in by_id[pending.pop()].dependencies:
            if dependency not in requested:
                requested.add(dependency)
                pending.append(dependency)
    return [run.run_id for run in plan if run.run_id in requested], forced


# ---------------------------------------------------------------------------------------------
# Data inventory and keys


def resolve_data_dir(configured: str | None, notebooks_dir: Path) -> Path:
    """Return the nflverse folder the notebooks will read, as an absolute path.

    Parameters
    ----------
    configured : str or None
        ``data.nflverse_dir`` from the parameters.
    notebooks_dir : Path
        Working directory of the notebooks, the base of a relative folder.

    Returns
    -------
    Path
        :func:`rbyards.data.resolve_data_dir` (the parameter, else ``NFLVERSE_DIR``, else
        ``data/nflverse``), taken from ``notebooks_dir`` when relative, because papermill runs
        each notebook in its own folder.
    """
    folder = data.resolve_data_dir(configured)
    return (folder if folder.is_absolute() else notebooks_dir / folder).resolve()


def inventory_data(params: Params, notebooks_dir: Path) -> DataInventory:
    """Checksum the profile's data files and list the weeks each season has running back rows.

    Nothing is downloaded: when files are missing and ``data.download`` is true, the inventory
    comes back without weeks and the data notebook downloads them.

    Parameters
    ----------
    params : Params
        Validated parameters (``data.nflverse_dir``, ``data.seasons``, ``data.min_carries``).
    notebooks_dir : Path
        Working directory of the notebooks, the base of a relative ``data.nflverse_dir``.

    Returns
    -------
    DataInventory
        ``weeks_by_season`` counts rows with ``position_group == "RB"`` and at least
        ``data.min_carries`` carries; it is None when files are missing.

    Raises
    ------
    RunnerError
        When a file is invalid (:class:`rbyards.data.DataError`), or files are missing while
        ``data.download`` is false.
    """
    data_dir = resolve_data_dir(params.data.nflverse_dir, notebooks_dir)
    seasons = params.data.seasons
    try:
        checksums = data.file_checksums(data_dir, seasons)
        if not data.discover_seasons(data_dir):
            raise data.DataNotFoundError(f"no player statistics files in {data_dir}")
        frame = data.load_player_weeks(data_dir, seasons, download=False)
    except data.DataNotFoundError as exc:
        if params.data.download:
            logger.info("data files missing, the data notebook downloads them: %s", exc)
            return DataInventory(data_dir, {}, None)
        raise RunnerError(str(exc)) from exc
    except data.DataError as exc:
        raise RunnerError(str(exc)) from exc
    modelled = frame[
        (frame["position_group"] == "RB") & (frame["carries"] >= params.data.min_carries)
    ]
    weeks_by_season = {
        int(season): tuple(sorted(int(week) for week in group["week"].unique()))
        for season, group in modelled.groupby("season")
    }
    return DataInventory(data_dir, checksums, weeks_by_season)


def source_digest(source_dir: Path) -> str:
    """Return a SHA-256 over the names and contents of ``source_dir/*.py``."""
    digest = hashlib.sha256()
    for path in sorted(source_dir.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _parameter_subset(params: Params, phase: str) -> dict[str, Any]:
    """Return the parameters ``phase`` reads, keyed by dotted section name."""
    dumped = params.model_dump(mode="json")
    subset = {}
    for dotted in PHASE_PARAMETERS[phase]:
        value: Any = dumped
        for part in dotted.split("."):
            value = value[part]
        subset[dotted] = value
    return subset


def compute_key(
    run: Run,
    params: Params,
    inventory: DataInventory,
    sources: str,
    dependency_keys: Mapping[str, str | None],
) -> str:
    """Return the resume key of ``run``: a SHA-256 over everything its outputs depend on.

    Parameters
    ----------
    run : Run
        The run.
    params : Params
        Validated parameters; only the sections listed in ``PHASE_PARAMETERS`` count, after a
        sweep run's own override.
    inventory : DataInventory
        Data file checksums.
    sources : str
        :func:`source_digest` of the package.
    dependency_keys : mapping of str to str or None
        Keys of the run's dependencies; None for a soft dependency without outputs.

    Returns
    -------
    str
        64 hex digits.
    """
    notebook = sha256_file(run.notebook) if run.notebook.is_file() else None
    payload = {
        "run_id": run.run_id,
        "profile": params.profile,
        "feature_set": run.feature_set,
        "parameters": _parameter_subset(params.with_overrides(run.sweep), run.phase),
        "data": inventory.checksums,
        "sources": sources,
        "notebook": notebook,
        "dependencies": dict(sorted(dependency_keys.items())),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _result_ok(paths: ProfilePaths, run_id: str) -> bool:
    result = read_json(paths.result(run_id))
    return result is not None and result.get("status") == "ok"


def _is_reusable(paths: ProfilePaths, run_id: str, key: str) -> bool:
    """Return whether the run's record is done with ``key`` and its outputs are complete."""
    record = read_json(paths.record(run_id))
    return (
        record is not None
        and record.get("status") == "done"
        and record.get("key") == key
        and paths.notebook(run_id).is_file()
        and _result_ok(paths, run_id)
    )


# ---------------------------------------------------------------------------------------------
# Validation


def prepare(
    profile: str,
    workspace: Workspace,
    *,
    overrides: Mapping[str, Any] | None = None,
    phases: Sequence[str] | None = None,
    force: Sequence[str] | bool | None = None,
    inventory_function: InventoryFunction | None = None,
) -> Prepared:
    """Validate parameters, phase names, notebooks and the data split without writing anything.

    Parameters
    ----------
    profile : str
        Profile name (file stem in ``workspace.params_dir``).
    workspace : Workspace
        Folders to use.
    overrides : mapping of str to value, optional
        Dotted-key parameter overrides, also passed to every notebook.
    phases : sequence of str, optional
        Phases or run ids to bring up to date; None for all.
    force : sequence of str or bool, optional
        Runs to execute even when reusable; True for every selected run.
    inventory_function : callable, optional
        Returns the :class:`DataInventory` for the parameters; defaults to
        :func:`inventory_data` with ``workspace.notebooks_dir``.

    Returns
    -------
    Prepared
        The validated plan.

    Raises
    ------
    ParamsError
        Invalid parameters or a split the data cannot support.
    RunnerError
        Unknown phase names, missing notebooks, unreadable data files, or no data files while
        ``data.download`` is false.
    """
    overrides = dict(overrides or {})
    params = load_params(profile, workspace.params_dir, overrides)
    plan = _with_overrides(build_plan(params, workspace), overrides)
    selected, forced = select_runs(plan, phases, force)
    function = inventory_function or (lambda p: inventory_data(p, workspace.notebooks_dir))
    inventory = function(params)
    if inventory.weeks_by_season is not None:
        validate_against_data(
            params,
            inventory.seasons,
            inventory.weeks_by_season,
            source=_params_source(workspace, profile, overrides),
        )
    elif params.data.download:
        logger.warning(
            "nflverse files missing in %s; the data notebook will download them, and the split "
            "is checked after it runs",
            inventory.data_dir,
        )
    else:
        raise RunnerError(
            f"nflverse files missing in {inventory.data_dir}; set data.nflverse_dir or "
            "NFLVERSE_DIR to the folder that has them, or set data.download to true"
        )
    by_id = {run.run_id: run for run in plan}
    notebooks = dict.fromkeys(str(by_id[run_id].notebook) for run_id in selected)
    missing = [path for path in notebooks if not Path(path).is_file()]
    if missing:
        raise RunnerError(
            f"notebook(s) not found: {', '.join(missing)}; add them or leave their phases out "
            "with --phases"
        )
    return Prepared(
        profile=profile,
        workspace=workspace,
        params=params,
        overrides=overrides,
        plan=plan,
        selected=selected,
        forced=forced,
        inventory=inventory,
        inventory_function=function,
        paths=ProfilePaths(workspace.output_root / profile),
    )


def _params_source(workspace: Workspace, profile: str, overrides: Mapping[str, Any]) -> str:
    """Name the profile file, and the overrides when there are any, for error messages."""
    path = workspace.params_dir / f"{profile}.yaml"
    return f"{path} with overrides {dict(overrides)}" if overrides else str(path)


# ---------------------------------------------------------------------------------------------
# Execution


def _write_blocked(paths: ProfilePaths, run_id: str, key: str, blockers: list[str]) -> str:
    reason = f"blocked by {', '.join(blockers)}"
    earlier = read_json(paths.record(run_id)) or {}
    if earlier.get("status") == "done":
        # Keep a finished run's record: once its dependency is repaired, the run can be reused
        # instead of repeated (a typo in NFLVERSE_DIR must not cost every fit).
        return reason
    record = {"run_id": run_id, "status": "blocked", "key": key, "error": reason}
    record["finished"] = utc_now()
    write_json_atomic(paths.record(run_id), record)
    return reason


def cell_timeout_seconds(
    params: Params, margin_seconds: float = CELL_TIMEOUT_MARGIN_SECONDS, *, phase: str = ""
) -> int:
    """Return papermill's per-cell timeout: the sampling time limit plus a margin, in seconds.

    Parameters
    ----------
    params : Params
        Gives ``sampler.time_limit_minutes`` and, for the backtest, its seasons and models.
    margin_seconds : float, default CELL_TIMEOUT_MARGIN_SECONDS
        Seconds added to the time limit.
    phase : str, optional
        The run's phase. The backtest notebook samples every Bayesian model on every season in
        one cell, so its limit is ``time_limit_minutes`` times the number of those fits.

    Returns
    -------
    int
        Whole seconds, rounded up, because nbclient accepts only an integer timeout.
    """
    fits = 1
    if phase == "backtest":
        backtest = params.backtest
        fits = max(1, len(backtest.seasons) * len(backtest.bayesian_models))
    return math.ceil(params.sampler.time_limit_minutes * 60.0 * fits + margin_seconds)


def execute(
    prepared: Prepared,
    *,
    margin_seconds: float = CELL_TIMEOUT_MARGIN_SECONDS,
    progress_bar: bool = False,
    execution: ExecutionSettings | None = None,
) -> list[RunOutcome]:
    """Run the selected runs under the profile lock, each as soon as its dependencies ended.

    A run whose hard dependency failed or was blocked is blocked; the comparison's dependencies on
    the phases are soft, so it runs with whatever finished. With one worker the runs execute one
    after another in plan order, in this process.

    Parameters
    ----------
    prepared : Prepared
        Output of :func:`prepare`.
    margin_seconds : float, default CELL_TIMEOUT_MARGIN_SECONDS
        Seconds added to the sampler time limit for papermill's per-cell timeout.
    progress_bar : bool, default False
        Show papermill's per-cell progress bar.
    execution : ExecutionSettings, optional
        Executor, workers, Dask scheduler and cores per run; defaults to the parameters'
        ``execution`` section.

    Returns
    -------
    list of RunOutcome
        One per selected run, in plan order.

    Raises
    ------
    LockHeldError
        When another live process runs the same profile.
    rbyards.executors.ExecutorError
        When the Dask scheduler cannot be reached.
    """
    if execution is None:
        execution = execution_settings(prepared.params)
    paths = prepared.paths
    lock = ProfileLock(paths)
    lock.acquire()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    handler = file_handler(paths.logs / f"run_all.{stamp}.log")
    root_logger = logging.getLogger()
    root_logger.addHandler(handler)
    raised_levels = ensure_info_logging(("papermill", "rbyards"))
    try:
        executor = executors.make_executor(execution, run_task)
        try:
            scheduler = _Scheduler(prepared, executor, margin_seconds, progress_bar, stamp)
            return scheduler.run()
        finally:
            executor.close()
    finally:
        for name, level in raised_levels.items():
            logging.getLogger(name).setLevel(level)
        root_logger.removeHandler(handler)
        handler.close()
        lock.release()


def execution_settings(params: Params, **changes: Any) -> ExecutionSettings:
    """Return the executor settings of the parameters, with ``changes`` that are not None."""
    section = params.execution
    values = {
        "executor": section.executor,
        "workers": section.workers,
        "scheduler": section.scheduler,
        "cores_per_run": section.cores_per_run,
    }
    values.update({name: value for name, value in changes.items() if value is not None})
    return ExecutionSettings(**values)


def dependency_keys(run: Run, keys: Mapping[str, str], finished: set[str]) -> dict[str, str | None]:
    """Return the keys of a run's dependencies; a soft one counts only when it finished."""
    keys_by_dependency: dict[str, str | None] = {dep: keys.get(dep) for dep in run.dependencies}
    for dep in run.soft_dependencies:
        keys_by_dependency[dep] = keys.get(dep) if dep in finished else None
    return keys_by_dependency


class _Scheduler:
    """Walk the plan as a graph: block, reuse or start each run once its dependencies ended.

    A run's key depends on its dependencies' keys and, for soft dependencies, on whether they
    finished, so it is computed only when every dependency, hard or soft, has ended. Runs start
    in plan order while the executor has free slots; with one slot this is the plan order.
    """

    def __init__(
        self,
        prepared: Prepared,
        executor: executors.RunExecutor,
        margin_seconds: float,
        progress_bar: bool,
        invocation: str,
    ) -> None:
        self.prepared = prepared
        self.executor = executor
        self.margin_seconds = margin_seconds
        self.progress_bar = progress_bar
        self.invocation = f"{invocation}-{os.getpid()}"
        self.paths = prepared.paths
        self.sources = source_digest(prepared.workspace.source_dir)
        self.keys: dict[str, str] = {}
        self.finished: set[str] = set()
        self.ended: set[str] = set()
        self.waiting: list[Run] = list(prepared.plan)
        self.running: dict[str, Run] = {}
        self.outcomes: dict[str, RunOutcome] = {}
        # The in-process executor logs each run's start and end itself, as the runner did
        # before it had executors. For other executors the runner logs them here.
        self.log_runs = not isinstance(executor, executors.InProcessExecutor)

    def run(self) -> list[RunOutcome]:
        started = time.monotonic()
        logger.info(
            "profile %s: %d run(s) selected; outputs in %s",
            self.prepared.profile,
            len(self.prepared.selected),
            self.paths.base,
        )
        if self.log_runs:
            logger.info("executor: %s", self.executor.description)
        if self.executor.dashboard:
            logger.info("dask dashboard: %s", self.executor.dashboard)
        try:
            while self.waiting or self.running:
                waiting_before = len(self.waiting)
                self._start_ready_runs()
                if not self.running:
                    if len(self.waiting) == waiting_before:
                        stuck = ", ".join(run.run_id for run in self.waiting)
                        raise RunnerError(f"runs wait for runs that are not in the plan: {stuck}")
                    continue
                for run_id, outcome in self.executor.wait():
                    self._finish(self.running.pop(run_id), outcome)
        except BaseException as exc:
            self._record_interrupted(exc)
            raise
        plan_order = [run.run_id for run in self.prepared.plan]
        outcomes = sorted(self.outcomes.values(), key=lambda o: plan_order.index(o.run_id))
        counts = {status: sum(o.status == status for o in outcomes) for status in _OUTCOME_ORDER}
        summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        logger.info(
            "profile %s finished in %.1fs: %s; logs in %s",
            self.prepared.profile,
            time.monotonic() - started,
            summary or "nothing to do",
            self.paths.logs,
        )
        return outcomes

    def _start_ready_runs(self) -> None:
        """Decide every waiting run whose dependencies ended, in plan order, until slots run out."""
        progressed = True
        while progressed:
            progressed = False
            for run in list(self.waiting):
                if self.executor.free_slots() <= 0:
                    return
                dependencies = (*run.dependencies, *run.soft_dependencies)
                if any(dep not in self.ended for dep in dependencies):
                    continue
                self.waiting.remove(run)
                self._decide(run)
                progressed = True

    def _decide(self, run: Run) -> None:
        """Compute the run's key, then skip, block, reuse or start it."""
        prepared, paths = self.prepared, self.paths
        upstream_keys = dependency_keys(run, self.keys, self.finished)
        key = compute_key(run, prepared.params, prepared.inventory, self.sources, upstream_keys)
        self.keys[run.run_id] = key
        if run.run_id not in prepared.selected:
            # Not selected: its earlier outputs still count for the runs that depend on it.
            if _is_reusable(paths, run.run_id, key):
                self.finished.add(run.run_id)
            self.ended.add(run.run_id)
            return

        blockers = [dep for dep in run.dependencies if dep not in self.finished]
        if blockers:
            reason = _write_blocked(paths, run.run_id, key, blockers)
            logger.warning("%s: skipped, %s", run.run_id, reason)
            self._end(RunOutcome(run.run_id, "blocked", error=reason))
            return

        if run.run_id not in prepared.forced and _is_reusable(paths, run.run_id, key):
            record = read_json(paths.record(run.run_id)) or {}
            logger.info("%s: reused (done %s)", run.run_id, record.get("finished", "earlier"))
            self._end(RunOutcome(run.run_id, "reused", notebook=paths.notebook(run.run_id)))
            return

        timeout = cell_timeout_seconds(prepared.params, self.margin_seconds, phase=run.phase)
        task = RunTask(run, paths, key, timeout, self.progress_bar, self.invocation)
        self.executor.submit(run.run_id, task)
        self.running[run.run_id] = run
        if self.log_runs:
            logger.info("%s: started (notebook %s)", run.run_id, run.notebook.name)
            self._log_progress()

    def _finish(self, run: Run, result: RunOutcome | RunFailure) -> None:
        """Record a run's outcome, rekey the data run after a download, and log progress."""
        if isinstance(result, RunFailure):
            outcome = _record_worker_failure(self.paths, run, self.keys[run.run_id], result)
        else:
            outcome = result
            if self.log_runs:
                _log_outcome(outcome)
        if (
            run.phase == "data"
            and outcome.status == "done"
            and self.prepared.inventory.weeks_by_season is None
        ):
            self.keys[run.run_id], outcome = _recheck_after_download(
                self.prepared, run, self.sources, outcome
            )
        self._end(outcome)
        if self.log_runs:
            self._log_progress()

    def _end(self, outcome: RunOutcome) -> None:
        self.outcomes[outcome.run_id] = outcome
        self.ended.add(outcome.run_id)
        if outcome.status in ("done", "reused"):
            self.finished.add(outcome.run_id)

    def _log_progress(self) -> None:
        statuses = [outcome.status for outcome in self.outcomes.values()]
        selected = set(self.prepared.selected)
        waiting = sum(run.run_id in selected for run in self.waiting)
        logger.info(
            "progress: %d done, %d reused, %d running, %d failed, %d blocked, %d waiting",
            statuses.count("done"),
            statuses.count("reused"),
            len(self.running),
            statuses.count("failed"),
            statuses.count("blocked"),
            waiting,
        )

    def _record_interrupted(self, exc: BaseException) -> None:
        """Mark the runs still running as failed when the runner stops early."""
        if not self.running or not self.log_runs:
            # The in-process executor records its own run when it is interrupted.
            return
        self.executor.close()
        for run_id in self.running:
            record = read_json(self.paths.record(run_id)) or {"run_id": run_id}
            record.update(status="failed", finished=utc_now(), error=f"interrupted: {exc!r}")
            write_json_atomic(self.paths.record(run_id), record)
            logger.error("%s: interrupted: %r", run_id, exc)


def _log_outcome(outcome: RunOutcome) -> None:
    """Log a run's end as the in-process executor does, for runs that ended elsewhere."""
    if outcome.status == "done":
        logger.info("%s: done in %.1fs", outcome.run_id, outcome.elapsed_seconds)
        return
    logger.error(
        "%s: failed after %.1fs: %s; notebook %s; log %s",
        outcome.run_id,
        outcome.elapsed_seconds,
        outcome.error,
        outcome.notebook or "not saved",
        outcome.log,
    )


def _record_worker_failure(
    paths: ProfilePaths, run: Run, key: str, failure: RunFailure
) -> RunOutcome:
    """Record a run whose worker was lost, or whose task raised, as failed with the worker."""
    record = read_json(paths.record(run.run_id)) or {"run_id": run.run_id}
    error = f"worker {failure.worker} lost the run: {failure.error}"
    partial = paths.partial_notebook(run.run_id)
    notebook = paths.notebook(run.run_id) if partial.exists() else None
    if notebook is not None:
        os.replace(partial, notebook)
    record.update(
        run_id=run.run_id,
        status="failed",
        key=key,
        worker=failure.worker,
        finished=utc_now(),
        error=error,
        notebook=str(notebook) if notebook else None,
    )
    write_json_atomic(paths.record(run.run_id), record)
    log = Path(record["log"]) if record.get("log") else None
    logger.error("%s: failed: %s; log %s", run.run_id, error, log or "not written")
    return RunOutcome(run.run_id, "failed", 0.0, error, notebook, log)


_OUTCOME_ORDER = ("done", "reused", "failed", "blocked")


def _recheck_after_download(
    prepared: Prepared, run: Run, sources: str, outcome: RunOutcome
) -> tuple[str, RunOutcome]:
    """Re-read the data the data notebook downloaded, check the split and rekey the data run.

    Updates ``prepared.inventory``, so later runs' keys use the downloaded files' checksums.
    Returns the data run's new key and its outcome, failed when the split does not fit the data.
    """
    paths = prepared.paths
    inventory = prepared.inventory_function(prepared.params)
    record = read_json(paths.record(run.run_id)) or {}
    if inventory.weeks_by_season is None:
        error = f"the data notebook finished but files are still missing in {inventory.data_dir}"
    else:
        try:
            validate_against_data(
                prepared.params,
                inventory.seasons,
                inventory.weeks_by_season,
                source=_params_source(prepared.workspace, prepared.profile, prepared.overrides),
            )
            error = None
        except ParamsError as exc:
            error = str(exc)
    key = compute_key(run, prepared.params, inventory, sources, {})
    record.update(key=key)
    if error:
        record.update(status="failed", error=error)
        outcome = RunOutcome(run.run_id, "failed", outcome.elapsed_seconds, error, outcome.notebook)
        logger.error("%s: failed: %s", run.run_id, error)
    write_json_atomic(paths.record(run.run_id), record)
    prepared.inventory = inventory
    return key, outcome
