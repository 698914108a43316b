"""Execute one run's notebook with papermill and record how it ended.

:func:`run_task` is what every executor calls, in the runner's process, in a local process or
on a Dask worker. It writes the run's record before and after the notebook, keeps the executed
notebook and a log per run, and checks that the notebook wrote a result file with status ok.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from rbyards import executors
from rbyards.provenance import write_json_atomic
from rbyards.run_records import ProfilePaths, Run, RunOutcome, read_json, utc_now

logger = logging.getLogger(__name__)

# Lines papermill logs around every cell; they go to the run's log file but not to the terminal.
PAPERMILL_NOISE = (
    "Executing Cell",
    "Ending Cell",
    "Input Notebook",
    "Output Notebook",
    "Working directory",
    "Executing notebook with kernel",
)


class PapermillNoiseFilter(logging.Filter):
    """Logging filter that drops papermill's per-cell lines and keeps the notebook's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for papermill's per-cell and start-up lines."""
        message = record.getMessage()
        return not (record.name.startswith("papermill") and message.startswith(PAPERMILL_NOISE))


def file_handler(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    return handler


def _failure_reason(exc: Exception, timeout: float) -> str:
    """Describe why papermill failed in one line."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        lines = str(exc.evalue).strip().splitlines() or [""]
        first_line = lines[0][:300]
        return f"{exc.ename}: {first_line} (cell {exc.exec_count})"
    if isinstance(exc, CellTimeoutError):
        return f"timed out: a cell ran longer than {timeout:.0f} s"
    if isinstance(exc, DeadKernelError):
        return f"kernel died: {exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to execute one run; it is pickled to other processes."""

    run: Run
    paths: ProfilePaths
    key: str
    timeout: int
    progress_bar: bool
    invocation: str


def run_task(task: RunTask) -> RunOutcome:
    """Execute one run's notebook wherever this is called: the runner, a process or a worker."""
    raised_levels = ensure_info_logging(("papermill", "rbyards"))
    try:
        return _execute_notebook(
            task.run, task.paths, task.key, task.timeout, task.progress_bar, task.invocation
        )
    finally:
        for name, level in raised_levels.items():
            logging.getLogger(name).setLevel(level)


def _attempt_number(paths: ProfilePaths, run_id: str, invocation: str) -> int:
    """Count this start of a run: 2 when the same runner invocation started it before."""
    earlier = read_json(paths.record(run_id)) or {}
    if earlier.get("status") == "running" and earlier.get("invocation") == invocation:
        return int(earlier.get("attempt", 1)) + 1
    return 1


def _execute_notebook(
    run: Run,
    paths: ProfilePaths,
    key: str,
    timeout: int,
    progress_bar: bool,
    invocation: str = "",
) -> RunOutcome:
    """Execute one run's notebook and record its outcome."""
    import papermill

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_path = paths.logs / f"{run.run_id}.{stamp}.log"
    partial = paths.partial_notebook(run.run_id)
    me = psutil.Process()
    record = {
        "run_id": run.run_id,
        "status": "running",
        "key": key,
        "worker": executors.current_worker(),
        "host": socket.gethostname(),
        "pid": me.pid,
        "create_time": me.create_time(),
        "invocation": invocation,
        "attempt": _attempt_number(paths, run.run_id, invocation),
        "started": utc_now(),
        "notebook": str(partial),
        "log": str(log_path),
        "result": str(paths.result(run.run_id)),
    }
    write_json_atomic(paths.record(run.run_id), record)
    partial.parent.mkdir(parents=True, exist_ok=True)
    started_wall = time.time()
    started = time.monotonic()
    handler = file_handler(log_path)
    logging.getLogger().addHandler(handler)
    logger.info(
        "%s: started (notebook %s, worker %s)", run.run_id, run.notebook.name, record["worker"]
    )
    error: str | None = None
    try:
        try:
            papermill.execute_notebook(
                str(run.notebook),
                str(partial),
                parameters=run.parameters,
                cwd=str(run.notebook.parent),
                log_output=True,
                progress_bar=progress_bar,
                execution_timeout=timeout,
            )
        except Exception as exc:
            error = _failure_reason(exc, timeout)
            logger.debug("%s: papermill raised", run.run_id, exc_info=True)
        if error is None:
            error = _check_result(paths.result(run.run_id), started_wall)
    except BaseException as exc:
        # KeyboardInterrupt or SystemExit: record the run as failed, then stop the runner.
        _finish_record(paths, record, "failed", started, f"interrupted: {exc!r}", partial)
        _set_aside_earlier_result(paths, run.run_id, started_wall)
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    status = "failed" if error else "done"
    if error:
        _set_aside_earlier_result(paths, run.run_id, started_wall)
    final = _finish_record(paths, record, status, started, error, partial)
    elapsed = time.monotonic() - started
    if error:
        logger.error(
            "%s: failed after %.1fs: %s; notebook %s; log %s",
            run.run_id,
            elapsed,
            error,
            final or "not saved",
            log_path,
        )
    else:
        logger.info("%s: done in %.1fs", run.run_id, elapsed)
    return RunOutcome(run.run_id, status, elapsed, error, final, log_path)


def _check_result(path: Path, started_wall: float) -> str | None:
    """Return why the result file at ``path`` does not show a successful run, or None."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return f"the notebook finished but wrote no result file {path}"
    if modified < started_wall - 1.0:
        return f"the notebook finished but did not rewrite its result file {path}"
    result = read_json(path)
    if result is None:
        return f"result file {path} is not a JSON object"
    if result.get("status") != "ok":
        reason = result.get("error") or "no error given"
        return f"result status is {result.get('status')!r}: {reason}"
    return None


def _set_aside_earlier_result(paths: ProfilePaths, run_id: str, started_wall: float) -> None:
    """Move a failed run's result file from an earlier run to ``results/superseded/``.

    The comparison and phase 2.3 read every result file in ``results/``, so a file left by an
    earlier success would pass for the output of the run that just failed.
    """
    result = paths.result(run_id)
    try:
        written = result.stat().st_mtime
    except FileNotFoundError:
        return
    if written >= started_wall - 1.0:
        return  # Written by this run with a status other than ok, so it explains the failure.
    superseded = paths.results / "superseded" / result.name
    superseded.parent.mkdir(parents=True, exist_ok=True)
    os.replace(result, superseded)
    logger.info("%s: moved the earlier result file to %s", run_id, superseded)


def _finish_record(
    paths: ProfilePaths,
    record: dict[str, Any],
    status: str,
    started: float,
    error: str | None,
    partial: Path,
) -> Path | None:
    """Move the partial notebook to its final name and write the run's final record.

    Returns the executed notebook, or None when papermill failed before saving one.
    """
    final: Path | None = paths.notebook(record["run_id"])
    if partial.exists():
        os.replace(partial, final)
    else:
        final = None
    record.update(
        status=status,
        finished=utc_now(),
        elapsed_seconds=round(time.monotonic() - started, 3),
        error=error,
        notebook=str(final) if final else None,
    )
    write_json_atomic(paths.record(record["run_id"]), record)
    return final


def ensure_info_logging(names: Iterable[str]) -> dict[str, int]:
    """Set the named loggers to INFO where INFO is filtered out; return their old levels."""
    previous = {}
    for name in names:
        named = logging.getLogger(name)
        if not named.isEnabledFor(logging.INFO):
            previous[name] = named.level
            named.setLevel(logging.INFO)
    return previous
