"""Time one parameter sweep with each executor and print the wall times as one JSON line.

The sweep repeats phase 2.1 on the seed features with ``phases.phase2_1.sigma_prior`` set to
each of ``--values``. The data run executes once first and is not timed. Then every mode reruns
the same sweep runs (``--phases sweep --force sweep``) into the same output folder, so the
modes differ only in how the runs are executed.

Usage::

    NFLVERSE_DIR=/path/to/nflverse .venv/bin/python benchmarks/sweep.py
    .venv/bin/python benchmarks/sweep.py --values 5,10,20,40 --modes local-1,local-2,dask-2 \\
        --set sampler.draws=50 --set sampler.tune=50

Modes are ``local-N`` (``--executor local --workers N``) and ``dask-N`` (a LocalCluster of N
workers on 127.0.0.1), optionally with ``:C`` for ``--cores-per-run C`` (``local-2:2``). A mode
may repeat, which shows how much the load of other jobs moves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SWEPT_PARAMETER = "phases.phase2_1.sigma_prior"


def parse_mode(text: str) -> list[str]:
    """Turn ``local-2``, ``dask-2`` or ``dask-2:1`` into run_all.py options."""
    executor, _, rest = text.partition("-")
    workers, _, cores = rest.partition(":")
    valid = executor in ("local", "dask") and workers.isdigit() and int(workers) >= 1
    if not valid or (cores and not (cores.isdigit() and int(cores) >= 1)):
        raise ValueError(f"expected a mode such as local-2, dask-2 or dask-2:1, got {text!r}")
    options = ["--executor", executor, "--workers", workers]
    return options + (["--cores-per-run", cores] if cores else [])


def run_all(arguments: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run run_all.py with ``arguments``; return the wall time in seconds and the process."""
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_all.py"), *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", help="parameter profile (default quick)")
    parser.add_argument(
        "--values",
        default="5,10,20,40",
        help=f"comma-separated values of {SWEPT_PARAMETER}, one run each (default 5,10,20,40)",
    )
    parser.add_argument(
        "--modes",
        default="local-1,local-2,dask-2",
        help="comma-separated executors to time, in order (default local-1,local-2,dask-2); "
        "local-1 runs in the runner's process without a core budget",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra parameter override passed to run_all.py; repeatable",
    )
    parser.add_argument("--output-root", type=Path, help="output folder (default: a temporary one)")
    args = parser.parse_args()

    values = [float(value) for value in args.values.split(",")]
    modes = args.modes.split(",")
    try:
        mode_options = {mode: parse_mode(mode) for mode in modes}
    except ValueError as exc:
        parser.error(str(exc))
    output_root = args.output_root or Path(tempfile.mkdtemp(prefix="rbyards-sweep-benchmark-"))
    sweep = json.dumps([{"parameter": SWEPT_PARAMETER, "values": values}])
    common = ["--profile", args.profile, "--output-root", str(output_root), "--quiet"]
    common += ["--set", "features.feature_sets=[seed]", "--set", f"sweep={sweep}"]
    for setting in args.settings:
        common += ["--set", setting]

    _, prepared = run_all(["run", "--phases", "data", *common])
    if prepared.returncode != 0:
        sys.stderr.write(prepared.stdout[-3000:] + prepared.stderr[-3000:])
        return 1

    results_dir = output_root / args.profile / "results"
    figures: list[dict] = []
    for mode in modes:
        wall, process = run_all(
            ["run", "--phases", "sweep", "--force", "sweep", *mode_options[mode], *common]
        )
        if process.returncode != 0:
            sys.stderr.write(process.stdout[-3000:] + process.stderr[-3000:])
            return 1
        run_ids = [path.stem for path in sorted(results_dir.glob("phase2_1.seed.sweep-*.json"))]
        run_seconds = {}
        sampling_seconds = {}
        for run_id in run_ids:
            result = json.loads((results_dir / f"{run_id}.json").read_text())
            run_seconds[run_id] = round(result["elapsed_seconds"], 1)
            sampling_seconds[run_id] = round(result["sampler"]["wall_seconds"], 1)
        figures.append(
            {
                "mode": mode,
                "wall_seconds": round(wall, 1),
                "run_seconds": run_seconds,
                "sampling_seconds": sampling_seconds,
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )

    baseline = figures[0]["wall_seconds"]
    line = {
        "profile": args.profile,
        "settings": args.settings,
        "swept_parameter": SWEPT_PARAMETER,
        "values": values,
        "cpu_count": os.cpu_count(),
        "modes": figures,
        f"speedup_over_first_{modes[0]}": [
            round(baseline / entry["wall_seconds"], 2) for entry in figures
        ],
        "output_root": str(output_root),
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
