"""Run the study's notebooks in order, or show how far a profile got.

Usage::

    python run_all.py [run] [--profile quick] [--phases phase2_1,comparison] [--force [PHASES]]
                      [--set sampler.draws=200] [--progress-bar] [--quiet]
                      [--executor local|dask] [--workers N] [--scheduler ADDRESS]
                      [--cores-per-run N] [--output-root FOLDER_OR_FILE_URL]
    python run_all.py status [--profile quick]

Exit codes: 0 when every selected run is done or reused, 1 when a run failed or was blocked,
2 for invalid parameters, names or options, or when another process runs the same profile.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rbyards.executors import ExecutorError, resolve_output_root
from rbyards.notebook_runs import PapermillNoiseFilter
from rbyards.params import EXECUTORS, ParamsError, load_params
from rbyards.run_records import LockHeldError, Workspace
from rbyards.runner import (
    CELL_TIMEOUT_MARGIN_SECONDS,
    PHASES,
    SWEEP_SELECTION,
    InventoryFunction,
    RunnerError,
    execute,
    execution_settings,
    prepare,
)
from rbyards.status import collect_status, format_status

REPO_ROOT = Path(__file__).resolve().parent
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _MaxLevelFilter(logging.Filter):
    def __init__(self, below: int) -> None:
        super().__init__()
        self.below = below

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.below


class _ClusterInfoFilter(logging.Filter):
    """Drop the INFO lines of a Dask LocalCluster; its warnings still reach stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("distributed", "tornado"))


class _NotebookOutputFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("papermill")


class _StripFormatter(logging.Formatter):
    """Formatter that drops the trailing newlines of notebook output lines."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).rstrip()


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE such as sampler.draws=200, got {text!r}"
        )
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"value of {key} is not valid YAML: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``run_all.py``."""
    parser = argparse.ArgumentParser(
        description="Execute the study notebooks with papermill, reusing finished runs.",
        epilog=(
            f"Phases: {', '.join(PHASES)}; {SWEEP_SELECTION} selects every sweep run. Run ids "
            "add the feature set (phase2_1.seed) and, for sweep runs, the value "
            "(phase2_1.seed.sweep-sigma_prior=10)."
        ),
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "status"),
        default="run",
        help="run the plan (default) or show the state of every run",
    )

    parser.add_argument("--profile", default="default", help="parameter profile in params/")
    parser.add_argument(
        "--phases",
        type=_names,
        metavar="PHASES",
        help="comma-separated phases or run ids to bring up to date (their dependencies too)",
    )
    parser.add_argument(
        "--force",
        nargs="?",
        const=True,
        type=_names,
        metavar="PHASES",
        help="rerun finished runs: all selected ones, or the comma-separated phases given",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        type=_setting,
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter by dotted key, value in YAML syntax; repeatable",
    )

    parser.add_argument(
        "--progress-bar", action="store_true", help="show papermill's per-cell progress bar"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="show only the runner's lines, not notebook output"
    )
    parser.add_argument("--params-dir", type=Path, help="folder of profile files (params/)")
    parser.add_argument(
        "--output-root",
        help="root of all outputs: a folder or file:// URL that every worker can write to "
        "(default: execution.output_root, else outputs/)",
    )

    execution = parser.add_argument_group(
        "execution",
        "override the parameters' execution section; runs that do not depend on "
        "each other execute at the same time",
    )
    execution.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="local: processes on this machine; dask: tasks on a dask.distributed cluster "
        "(default: execution.executor, else local)",
    )
    execution.add_argument(
        "--workers",
        type=_positive_int,
        help="runs at once: local processes, or the workers of the LocalCluster that dask "
        "starts without --scheduler (default: one per CPU core; 1 runs one after another)",
    )
    execution.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running dask scheduler, such as tcp://10.0.0.5:8786; implies "
        "--executor dask (default: start a LocalCluster on 127.0.0.1)",
    )
    execution.add_argument(
        "--cores-per-run",
        type=_positive_int,
        help="CPU cores one run may use for sampling threads (default: CPU cores / workers)",
    )

    # Test seams: another notebooks folder and another package folder for the resume key.
    parser.add_argument("--notebooks-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--source-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--timeout-margin",
        type=float,
        default=CELL_TIMEOUT_MARGIN_SECONDS,
        help=argparse.SUPPRESS,
    )
    return parser


def _configure_logging(quiet: bool) -> list[logging.Handler]:
    """Send INFO lines to stdout and warnings and errors to stderr; return the handlers."""
    info = logging.StreamHandler(sys.stdout)
    info.setLevel(logging.INFO)
    info.addFilter(_MaxLevelFilter(logging.WARNING))
    info.addFilter(PapermillNoiseFilter())
    info.addFilter(_ClusterInfoFilter())
    if quiet:
        info.addFilter(_NotebookOutputFilter())
    info.setFormatter(_StripFormatter("%(message)s"))
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    problems.setFormatter(_StripFormatter("%(levelname)s: %(message)s"))
    if quiet:
        # Notebooks' stderr (progress bars, Python warnings) arrives as papermill warnings.
        problems.addFilter(_NotebookOutputFilter())
    root = logging.getLogger()
    for handler in (info, problems):
        root.addHandler(handler)
    for name in ("rbyards", "papermill"):
        logging.getLogger(name).setLevel(logging.INFO)
    return [info, problems]


def _execution(args: argparse.Namespace, params: Any):
    """Merge the execution options into the parameters' execution section.

    Raises
    ------
    RunnerError
        When --scheduler is combined with --executor local.
    """
    executor = args.executor
    if args.scheduler:
        if executor == "local":
            raise RunnerError(
                "--scheduler needs --executor dask; leave out --executor local, or --scheduler "
                "to run on this machine"
            )
        executor = "dask"
    return execution_settings(
        params,
        executor=executor,
        workers=args.workers,
        scheduler=args.scheduler,
        cores_per_run=args.cores_per_run,
    )


def main(
    argv: Sequence[str] | None = None, *, inventory_function: InventoryFunction | None = None
) -> int:
    """Parse arguments, then run the plan or print the status; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.
    inventory_function : callable, optional
        Replacement for the data inventory, for tests that use no real data.

    Returns
    -------
    int
        0 success, 1 a run failed or was blocked, 2 invalid input or profile already running.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    overrides = dict(args.settings)
    handlers = _configure_logging(args.quiet)
    log = logging.getLogger("rbyards.runner")
    try:
        params_dir = (args.params_dir or REPO_ROOT / "params").resolve()
        params = load_params(args.profile, params_dir, overrides)
        output_root = args.output_root or params.execution.output_root or "outputs"
        try:
            output_folder = resolve_output_root(output_root, REPO_ROOT)
        except ValueError as exc:
            raise RunnerError(str(exc)) from exc
        workspace = Workspace.from_root(
            REPO_ROOT,
            notebooks_dir=args.notebooks_dir,
            params_dir=params_dir,
            output_root=output_folder,
            source_dir=args.source_dir,
        )
        if args.command == "status":
            report = collect_status(
                args.profile,
                workspace,
                overrides=overrides,
                inventory_function=inventory_function,
            )
            print(format_status(report))
            return EXIT_OK
        prepared = prepare(
            args.profile,
            workspace,
            overrides=overrides,
            phases=args.phases,
            force=args.force,
            inventory_function=inventory_function,
        )
        execution = _execution(args, prepared.params)
        outcomes = execute(
            prepared,
            margin_seconds=args.timeout_margin,
            progress_bar=args.progress_bar,
            execution=execution,
        )
    except (ParamsError, RunnerError, LockHeldError, ExecutorError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
    failed = [outcome for outcome in outcomes if outcome.status in ("failed", "blocked")]
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
