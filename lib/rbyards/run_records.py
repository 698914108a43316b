"""Output paths of a profile's runs, the run and outcome types, and the lock on a profile.

:class:`ProfilePaths` names every file under ``<output_root>/<profile>/`` (see
:mod:`rbyards.runner` for the layout), :class:`Run` is one notebook execution of the plan and
:class:`ProfileLock` keeps two runners off the same profile.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from rbyards.provenance import write_json_atomic

logger = logging.getLogger(__name__)


class LockHeldError(RuntimeError):
    """Another live process is running the same profile."""


@dataclass(frozen=True)
class Workspace:
    """Folders the runner reads from and writes to; every path is absolute."""

    root: Path
    notebooks_dir: Path
    params_dir: Path
    output_root: Path
    source_dir: Path

    @classmethod
    def from_root(
        cls,
        root: str | Path,
        *,
        notebooks_dir: str | Path | None = None,
        params_dir: str | Path | None = None,
        output_root: str | Path | None = None,
        source_dir: str | Path | None = None,
    ) -> Workspace:
        """Build a workspace for the checkout at ``root`` with the standard folder names.

        Parameters
        ----------
        root : str or Path
            Repository root.
        notebooks_dir, params_dir, output_root : str or Path, optional
            Replacements for ``notebooks``, ``params`` and ``outputs`` under ``root``.
        source_dir : str or Path, optional
            Folder whose ``*.py`` files enter the resume key; defaults to the installed
            ``rbyards`` package folder.

        Returns
        -------
        Workspace
            The resolved folders.
        """
        base = Path(root).resolve()
        return cls(
            root=base,
            notebooks_dir=Path(notebooks_dir or base / "notebooks").resolve(),
            params_dir=Path(params_dir or base / "params").resolve(),
            output_root=Path(output_root or base / "outputs").resolve(),
            source_dir=Path(source_dir or Path(__file__).parent).resolve(),
        )


@dataclass(frozen=True)
class ProfilePaths:
    """Output locations of one profile."""

    base: Path

    @property
    def notebooks(self) -> Path:
        return self.base / "notebooks"

    @property
    def results(self) -> Path:
        return self.base / "results"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def lock_file(self) -> Path:
        return self.state / "run.lock"

    @property
    def pid_file(self) -> Path:
        return self.state / "run.pid"

    def record(self, run_id: str) -> Path:
        """Return the path of a run's state record."""
        return self.state / "runs" / f"{run_id}.json"

    def notebook(self, run_id: str) -> Path:
        """Return the path of a run's executed notebook."""
        return self.notebooks / f"{run_id}.ipynb"

    def partial_notebook(self, run_id: str) -> Path:
        """Return the path papermill saves to while the run executes."""
        return self.notebooks / f".{run_id}.partial.ipynb"

    def result(self, run_id: str) -> Path:
        """Return the path of the result file the run's notebook writes."""
        return self.results / f"{run_id}.json"


@dataclass(frozen=True)
class Run:
    """One notebook execution in the plan."""

    run_id: str
    phase: str
    notebook: Path
    feature_set: str | None
    parameters: dict[str, Any]
    dependencies: tuple[str, ...] = ()
    soft_dependencies: tuple[str, ...] = ()
    # Dotted-key overrides of a sweep point, on top of the profile and its overrides.
    sweep: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """Outcome of one selected run: done, reused, failed or blocked."""

    run_id: str
    status: str
    elapsed_seconds: float = 0.0
    error: str | None = None
    notebook: Path | None = None
    log: Path | None = None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json(path: Path) -> dict[str, Any] | None:
    """Return a JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s (%s); treating it as missing", path, exc)
        return None
    return value if isinstance(value, dict) else None


def process_alive(pid: int | None, create_time: float | None) -> bool:
    """Return whether ``pid`` runs and, when ``create_time`` is given, is the same process."""
    if not pid:
        return False
    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(process.create_time() - float(create_time)) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def read_lock_holder(paths: ProfilePaths) -> dict[str, Any] | None:
    """Return the pid file's content when its process is alive, else None."""
    holder = read_json(paths.pid_file)
    if holder and process_alive(holder.get("pid"), holder.get("create_time")):
        return holder
    return None


class ProfileLock:
    """Exclusive lock on one profile's outputs: a file lock plus a pid file naming the holder.

    The operating system releases the file lock when its process dies, even from ``kill -9``,
    so a pid file whose process is gone marks a stale lock, which :meth:`acquire` clears.
    """

    def __init__(self, paths: ProfilePaths) -> None:
        self.paths = paths
        self._lock = FileLock(paths.lock_file, timeout=0)

    def acquire(self) -> None:
        """Take the lock and write the pid file.

        Raises
        ------
        LockHeldError
            When another process holds the lock; the message names its pid.
        """
        self.paths.state.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = self._wait_for_holder()
            pid = holder.get("pid", "unknown")
            if not process_alive(holder.get("pid"), holder.get("create_time")):
                # Only a lock without operating-system support (filelock's soft fallback on
                # file systems without flock) stays held after its process died.
                raise LockHeldError(
                    f"lock file {self.paths.lock_file} is held, but pid {pid} in "
                    f"{self.paths.pid_file} is not running; if no runner is active, delete the "
                    "lock file and run again"
                ) from None
            raise LockHeldError(
                f"profile {self.paths.base.name} is already being run by pid {pid} (started "
                f"{holder.get('started', 'at an unknown time')}: "
                f"{' '.join(holder.get('argv', []))}); wait for it to finish or stop it "
                f"with kill {pid}"
            ) from None
        previous = read_json(self.paths.pid_file)
        if previous and previous.get("pid") != os.getpid():
            logger.warning(
                "cleared stale lock %s: pid %s (started %s) is no longer running",
                self.paths.lock_file,
                previous.get("pid"),
                previous.get("started"),
            )
        me = psutil.Process()
        write_json_atomic(
            self.paths.pid_file,
            {
                "pid": me.pid,
                "create_time": me.create_time(),
                "started": utc_now(),
                "argv": sys.argv,
            },
        )

    def _wait_for_holder(self, timeout: float = 2.0) -> dict[str, Any]:
        """Return the pid file of the live lock holder, waiting briefly for it to be written.

        A process that has just taken the lock may not have replaced a stale pid file yet.
        """
        deadline = time.monotonic() + timeout
        while True:
            holder = read_json(self.paths.pid_file) or {}
            alive = process_alive(holder.get("pid"), holder.get("create_time"))
            if alive or time.monotonic() > deadline:
                return holder
            time.sleep(0.1)

    def release(self) -> None:
        """Remove the pid file and release the lock."""
        self.paths.pid_file.unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> ProfileLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
