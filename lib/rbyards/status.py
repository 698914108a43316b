"""Report the state of every run of a profile from its files, without taking the lock."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rbyards.params import load_params
from rbyards.run_records import ProfilePaths, process_alive, read_json, read_lock_holder
from rbyards.runner import (
    InventoryFunction,
    Workspace,
    build_plan,
    compute_key,
    dependency_keys,
    inventory_data,
    source_digest,
)


@dataclass
class RunStatus:
    """One line of the status report."""

    run_id: str
    state: str
    detail: str
    notebook: Path | None = None
    log: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StatusReport:
    """Status of every run in a profile's plan."""

    profile: str
    runs: list[RunStatus]
    logs_dir: Path
    lock_holder: dict[str, Any] | None


def collect_status(
    profile: str,
    workspace: Workspace,
    *,
    overrides: Mapping[str, Any] | None = None,
    inventory_function: InventoryFunction | None = None,
) -> StatusReport:
    """Describe every run of a profile from its state files, without taking the lock.

    Parameters
    ----------
    profile : str
        Profile name.
    workspace : Workspace
        Folders to use.
    overrides : mapping of str to value, optional
        Overrides to compare keys against (a run done with other overrides shows as stale).
    inventory_function : callable, optional
        As in :func:`prepare`.

    Returns
    -------
    StatusReport
        One :class:`RunStatus` per planned run, with state done, running, interrupted, failed,
        blocked, stale or pending.

    Raises
    ------
    ParamsError
        When the profile's parameters are invalid.
    """
    params = load_params(profile, workspace.params_dir, overrides)
    plan = build_plan(params, workspace)
    function = inventory_function or (lambda p: inventory_data(p, workspace.notebooks_dir))
    inventory = function(params)
    paths = ProfilePaths(workspace.output_root / profile)
    sources = source_digest(workspace.source_dir)
    keys: dict[str, str] = {}
    finished: set[str] = set()
    statuses = []
    holder = read_lock_holder(paths)
    for run in plan:
        key = compute_key(run, params, inventory, sources, dependency_keys(run, keys, finished))
        keys[run.run_id] = key
        status = _run_status(paths, run.run_id, key, runner_alive=holder is not None)
        if status.state == "pending" and not run.notebook.is_file():
            status.detail = f"not run yet; notebook {run.notebook} not found"
        if status.state == "done":
            finished.add(run.run_id)
        statuses.append(status)
    return StatusReport(profile, statuses, paths.logs, holder)


def _run_status(
    paths: ProfilePaths, run_id: str, key: str, *, runner_alive: bool = False
) -> RunStatus:
    """Build one run's status from its record and result file.

    A run recorded as running on another host cannot be checked from here. It counts as running
    while a runner holds the profile's lock, and as interrupted otherwise.
    """
    record = read_json(paths.record(run_id))
    if record is None:
        return RunStatus(run_id, "pending", "not run yet")
    log = Path(record["log"]) if record.get("log") else None
    notebook = Path(record["notebook"]) if record.get("notebook") else None
    state = record.get("status")

    if state == "running":
        host = record.get("host")
        remote = bool(host) and host != socket.gethostname()
        worker = f" on worker {record['worker']}" if record.get("worker") else ""
        if remote:
            alive = runner_alive
        else:
            alive = process_alive(record.get("pid"), record.get("create_time"))
        if alive:
            started = datetime.fromisoformat(record["started"])
            elapsed = (datetime.now(UTC) - started).total_seconds()
            detail = f"running for {elapsed:.0f}s in pid {record['pid']}{worker}"
            if record.get("attempt", 1) > 1:
                detail += f", attempt {record['attempt']}"
            return RunStatus(run_id, "running", detail, notebook, log)
        if remote:
            detail = f"the runner stopped while the run ran{worker}; the next run starts it again"
        else:
            detail = f"pid {record.get('pid')} stopped during the run; the next run starts it again"
        return RunStatus(run_id, "interrupted", detail, notebook, log)
    if state == "failed":
        return RunStatus(run_id, "failed", str(record.get("error")), notebook, log)
    if state == "blocked":
        return RunStatus(run_id, "blocked", str(record.get("error")), notebook, log)

    result = read_json(paths.result(run_id)) or {}
    if result.get("status") != "ok":
        return RunStatus(run_id, "stale", "result file missing or not ok", notebook, log)
    if record.get("key") != key:
        detail = "parameters, data, code or notebook changed since it ran"
        return RunStatus(run_id, "stale", detail, notebook, log)

    metrics = result.get("metrics") or {}
    key_metrics = {name: metrics[name] for name in ("coverage_90", "mae") if name in metrics}
    values = " ".join(
        f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}"
        for name, value in key_metrics.items()
    )
    detail = f"finished {record.get('finished')} in {record.get('elapsed_seconds', 0):.1f}s"
    return RunStatus(run_id, "done", f"{detail} {values}".strip(), notebook, log, key_metrics)


def format_status(report: StatusReport) -> str:
    """Render a :class:`StatusReport` as text, one line per run.

    Parameters
    ----------
    report : StatusReport
        Output of :func:`collect_status`.

    Returns
    -------
    str
        Lines for the terminal.
    """
    lines = [f"profile {report.profile}"]
    holder = report.lock_holder
    if holder:
        lines.append(f"  run in progress: pid {holder.get('pid')} since {holder.get('started')}")
    width = max(len(status.run_id) for status in report.runs)
    for status in report.runs:
        lines.append(f"  {status.run_id:<{width}}  {status.state:<11}  {status.detail}")
        indent = f"  {'':<{width}}  {'':<11}  "
        if status.state in ("running", "failed", "interrupted"):
            if status.notebook:
                lines.append(f"{indent}notebook {status.notebook}")
            if status.log:
                lines.append(f"{indent}log {status.log}")
    lines.append(f"logs in {report.logs_dir}")
    return "\n".join(lines)
