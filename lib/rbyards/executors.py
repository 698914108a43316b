"""Executors that run notebook runs: in the runner's process, in local processes, or on Dask.

The runner decides which runs may start and hands each one to an executor as a picklable task.
The executor calls ``function(task)`` in some process and reports the
:class:`~rbyards.run_records.RunOutcome` it returned. Three executors exist:

- :class:`InProcessExecutor`: one run at a time in the runner's own process, the runner's
  behaviour with ``--executor local --workers 1``.
- :class:`LocalProcessExecutor`: up to ``workers`` runs at once, each in a new process started
  with the ``spawn`` method, so a crash or a kill takes down one run only.
- :class:`DaskExecutor`: one Dask task per run on a ``dask.distributed`` cluster, either a
  scheduler given by address or a ``LocalCluster`` started on 127.0.0.1.

When the process or Dask worker of a run dies, the run is retried once on a fresh process or
another worker. A second loss gives a failed outcome that names the worker and the error.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_connections
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import psutil

logger = logging.getLogger(__name__)

# Environment variables that size the thread pools of a run's kernel: the sampler's core budget
# (read by rbyards.sampling), OpenMP and the BLAS libraries NumPy and PyTensor may load.
CORE_BUDGET_VARIABLE = "RBYARDS_CORES"
THREAD_VARIABLES = (
    CORE_BUDGET_VARIABLE,
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
# Losses of a run's process or worker that are retried: one retry, then the run fails.
RETRIES_AFTER_LOST_WORKER = 1
DASK_CONNECT_TIMEOUT = "20s"
# fsspec protocols of the local file system, the only output roots the notebooks can write to.
LOCAL_PROTOCOLS = ("file", "local")


class ExecutorError(RuntimeError):
    """An executor failed to start, for example because the Dask scheduler is unreachable."""


@dataclass(frozen=True)
class ExecutionSettings:
    """Executor choice, worker count, Dask scheduler address and core budget of the runs."""

    executor: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    cores_per_run: int | None = None

    @property
    def worker_count(self) -> int:
        """Processes or LocalCluster workers: ``workers``, else one per CPU core."""
        return self.workers or os.cpu_count() or 1

    def core_budget(self) -> int:
        """CPU cores one run may use: ``cores_per_run``, else CPU cores over workers."""
        if self.cores_per_run:
            return self.cores_per_run
        return max(1, (os.cpu_count() or 1) // self.worker_count)


@dataclass(frozen=True)
class RunFailure:
    """A run that ended without an outcome: its process or worker died, or the task raised."""

    worker: str
    error: str


def thread_environment(cores: int) -> dict[str, str]:
    """Return the environment variables that keep a run's thread pools within ``cores``."""
    return dict.fromkeys(THREAD_VARIABLES, str(cores))


def current_worker() -> str:
    """Describe where this code runs: the Dask worker address, else host and process id."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()} pid {os.getpid()}"


class RunExecutor(Protocol):
    """Interface between the runner and an executor."""

    description: str
    dashboard: str | None

    def free_slots(self) -> int:
        """Return how many more runs may start now."""

    def submit(self, run_id: str, task: Any) -> None:
        """Start ``function(task)`` for the run ``run_id``."""

    def wait(self) -> list[tuple[str, Any]]:
        """Block until at least one run ends; return (run id, outcome or RunFailure) pairs."""

    def close(self) -> None:
        """Stop the runs still running and release processes and connections."""


class InProcessExecutor:
    """Run one task at a time in the calling process, when :meth:`wait` is called."""

    dashboard = None

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function
        self.description = "local, 1 process: runs one after another in this process"
        self._queued: list[tuple[str, Any]] = []

    def free_slots(self) -> int:
        return 0 if self._queued else 1

    def submit(self, run_id: str, task: Any) -> None:
        self._queued.append((run_id, task))

    def wait(self) -> list[tuple[str, Any]]:
        run_id, task = self._queued.pop(0)
        return [(run_id, self.function(task))]

    def close(self) -> None:
        self._queued.clear()


def _process_main(function: Callable[[Any], Any], task: Any, sender: Connection, env: dict) -> None:
    """Entry point of a run's process: set the thread budget, run, send the outcome back."""
    os.environ.update(env)
    try:
        outcome = function(task)
    except Exception:
        # A bug outside the notebook (the notebook's own errors are outcomes): report it as the
        # run's error instead of letting the process die like a lost worker.
        outcome = RunFailure(f"pid {os.getpid()}", traceback.format_exc(limit=5).strip())
        sender.send(("raised", outcome))
    else:
        sender.send(("outcome", outcome))
    finally:
        sender.close()


@dataclass
class _LocalRun:
    task: Any
    process: Any
    receiver: Connection
    attempt: int


class LocalProcessExecutor:
    """Run up to ``workers`` tasks at once, each in a fresh process started with ``spawn``.

    ``spawn`` starts clean interpreters, so no JAX or BLAS state of the runner leaks into a run.
    Each run's kernel inherits :func:`thread_environment` of the core budget.
    """

    dashboard = None

    def __init__(self, function: Callable[[Any], Any], workers: int, cores_per_run: int) -> None:
        self.function = function
        self.workers = workers
        self.cores_per_run = cores_per_run
        self.description = (
            f"local, {workers} processes, {cores_per_run} CPU core(s) per run for sampling"
        )
        self._context = multiprocessing.get_context("spawn")
        self._running: dict[str, _LocalRun] = {}

    def free_slots(self) -> int:
        return self.workers - len(self._running)

    def submit(self, run_id: str, task: Any, attempt: int = 1) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_process_main,
            args=(self.function, task, sender, thread_environment(self.cores_per_run)),
            name=f"rbyards-run-{run_id}",
        )
        process.start()
        sender.close()
        self._running[run_id] = _LocalRun(task, process, receiver, attempt)

    def wait(self) -> list[tuple[str, Any]]:
        sentinels = {entry.process.sentinel: run_id for run_id, entry in self._running.items()}
        wait_for_connections(list(sentinels))
        ended = []
        for run_id, entry in list(self._running.items()):
            if entry.process.is_alive():
                continue
            entry.process.join()
            del self._running[run_id]
            message = _receive(entry.receiver)
            if message is not None:
                ended.append((run_id, message[1]))
                continue
            worker = f"local process pid {entry.process.pid}"
            error = f"process exited with code {entry.process.exitcode} before the run ended"
            if entry.attempt <= RETRIES_AFTER_LOST_WORKER:
                logger.warning("%s: %s %s; retrying once", run_id, worker, error)
                self.submit(run_id, entry.task, attempt=entry.attempt + 1)
                continue
            ended.append((run_id, RunFailure(worker, error)))
        return ended

    def close(self) -> None:
        for run_id, entry in self._running.items():
            logger.warning("%s: stopping its process pid %s", run_id, entry.process.pid)
            kill_process_tree(entry.process.pid)
            entry.process.join(timeout=10)
            entry.receiver.close()
        self._running.clear()


def _receive(receiver: Connection) -> Any:
    """Return the message an ended process sent, or None when it died before sending one."""
    try:
        return receiver.recv() if receiver.poll() else None
    except EOFError:
        return None
    finally:
        receiver.close()


def kill_process_tree(pid: int | None) -> None:
    """Kill a process and its descendants, such as a run's process and its Jupyter kernel."""
    if not pid:
        return
    try:
        parent = psutil.Process(pid)
        processes = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


class DaskExecutor:
    """Run each task as one Dask task, on a scheduler given by address or a new LocalCluster.

    A LocalCluster listens on 127.0.0.1 only, has ``workers`` worker processes of one thread
    each, and fails a task after its second lost worker (``allowed-failures`` of 1). A scheduler
    given by address keeps its own ``distributed.scheduler.allowed-failures`` (3 by default);
    the executor logs a warning when it differs from 1.
    """

    def __init__(
        self,
        function: Callable[[Any], Any],
        *,
        scheduler: str | None,
        workers: int,
        cores_per_run: int,
    ) -> None:
        import dask
        from distributed import Client, LocalCluster

        self.function = function
        self.cores_per_run = cores_per_run
        self._futures: dict[str, Any] = {}
        self._closed = False
        self.cluster = None
        try:
            if scheduler:
                self.client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT)
            else:
                # The scheduler reads allowed-failures when it starts, inside the LocalCluster.
                with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
                    self.cluster = LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        scheduler_port=0,
                        dashboard_address="127.0.0.1:0",
                        worker_dashboard_address=None,
                    )
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            target = scheduler or "a LocalCluster on 127.0.0.1"
            raise ExecutorError(
                f"cannot connect to the Dask scheduler at {target}: {exc}; check that "
                "`dask scheduler` runs there and the address is reachable"
            ) from exc
        self.address = self.client.scheduler.address
        self.dashboard = self._dashboard_link()
        where = f"scheduler {self.address}" if scheduler else f"LocalCluster {self.address}"
        self.description = (
            f"dask, {where} with {self._worker_count()} worker(s), {cores_per_run} CPU core(s) "
            "per run for sampling"
        )
        if scheduler:
            self._check_allowed_failures()

    def _dashboard_link(self) -> str | None:
        services = self.client.scheduler_info().get("services", {})
        if "dashboard" not in services:
            return None
        link = self.client.dashboard_link
        if self.cluster is not None and importlib.util.find_spec("bokeh") is None:
            # Without bokeh the scheduler serves its plain HTML pages only.
            pages = link.replace("/status", "/info/main/workers.html")
            return f"{pages} (install bokeh>=3.1 for the full dashboard at {link})"
        return link

    def _worker_count(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def _check_allowed_failures(self) -> None:
        def read_allowed_failures(dask_scheduler: Any) -> int:
            return dask_scheduler.allowed_failures

        allowed = self.client.run_on_scheduler(read_allowed_failures)
        if allowed != RETRIES_AFTER_LOST_WORKER:
            logger.warning(
                "the scheduler retries a run %s time(s) after its worker is lost, not once; start "
                "it with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1 to fail a run after one "
                "retry",
                allowed,
            )

    def free_slots(self) -> int:
        # One run per worker thread, so that "running" in the progress lines means running.
        threads = sum(self.client.nthreads().values())
        return max(threads, 1) - len(self._futures)

    def submit(self, run_id: str, task: Any) -> None:
        env = thread_environment(self.cores_per_run)
        self._futures[run_id] = self.client.submit(
            _run_with_environment, self.function, task, env, pure=False, key=f"run-{run_id}"
        )

    def wait(self) -> list[tuple[str, Any]]:
        from distributed import wait
        from distributed.scheduler import KilledWorker

        wait(list(self._futures.values()), return_when="FIRST_COMPLETED")
        ended = []
        for run_id, future in list(self._futures.items()):
            if not future.done():
                continue
            del self._futures[run_id]
            if future.status == "finished":
                ended.append((run_id, future.result()))
                continue
            if future.status == "cancelled":
                ended.append((run_id, RunFailure(self.address, "the Dask task was cancelled")))
                continue
            exc = future.exception()
            if isinstance(exc, KilledWorker):
                error = (
                    f"KilledWorker: its worker died {exc.allowed_failures + 1} times while "
                    "running it"
                )
                ended.append((run_id, RunFailure(exc.last_worker.address, error)))
            else:
                ended.append((run_id, RunFailure(self.address, f"{type(exc).__name__}: {exc}")))
        return ended

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._futures:
            # NOTE: Dask cannot stop a running thread, so a cancelled task that already runs goes
            # on to its end on its worker. Its record then shows how it ended.
            self.client.cancel(list(self._futures.values()))
        self._futures.clear()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _run_with_environment(function: Callable[[Any], Any], task: Any, env: dict[str, str]) -> Any:
    """Call ``function(task)`` with ``env`` set, then restore the previous environment.

    The environment is process-wide, which is safe on workers with one thread each.
    """
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return function(task)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def make_executor(settings: ExecutionSettings, function: Callable[[Any], Any]) -> RunExecutor:
    """Build the executor that ``settings`` names.

    Raises
    ------
    ExecutorError
        When the Dask scheduler cannot be reached.
    """
    if settings.executor == "dask":
        return DaskExecutor(
            function,
            scheduler=settings.scheduler,
            workers=settings.worker_count,
            cores_per_run=settings.core_budget(),
        )
    if settings.worker_count == 1:
        return InProcessExecutor(function)
    return LocalProcessExecutor(function, settings.worker_count, settings.core_budget())


def resolve_output_root(location: str | Path, base: Path) -> Path:
    """Return the local folder of an output root given as a path or a ``file://`` URL.

    Parameters
    ----------
    location : str or Path
        A folder (relative ones are taken from ``base``) or an fsspec URL.
    base : Path
        Folder of relative paths, the checkout.

    Raises
    ------
    ValueError
        For fsspec URLs of other protocols (``s3://``, ``gcs://``, ...): notebooks and the runner
        write through the local file system, so such storage must be mounted as a folder.
    """
    text = str(location)
    if "://" in text:
        from fsspec.core import split_protocol
        from fsspec.implementations.local import LocalFileSystem

        protocol, _ = split_protocol(text)
        if protocol not in LOCAL_PROTOCOLS:
            raise ValueError(
                f"output root {text} is invalid: only local folders and file:// URLs are "
                "supported, because the notebooks write with local file operations; mount that "
                "storage as a folder on every worker and give the folder's path"
            )
        # File URLs escape special characters (RFC 8089), as Path.as_uri writes them.
        return Path(unquote(LocalFileSystem._strip_protocol(text))).resolve()
    folder = Path(text).expanduser()
    return (folder if folder.is_absolute() else base / folder).resolve()
