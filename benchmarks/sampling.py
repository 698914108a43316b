"""Benchmark one Bayesian phase's sampling on the default split and print one JSON line.

Usage::

    NFLVERSE_DIR=/path/to/nflverse python benchmarks/sampling.py --phase phase2_1 \
        [--profile default] [--set phases.phase2_1.sampler.max_treedepth=8] [--compare]

The line contains wall time, gradient evaluations per second, mean tree depth and the share of
draws at the maximum depth, divergences, R-hat and bulk ESS of the noise scale and of the test
rows' predictive medians (worst row), ESS per second and peak memory. With ``--compare`` the
same model, data, draws and seed are also sampled with PyMC's NUTS in the same process, with the
phase's target acceptance and tree depth cap, in float64 and tuned at that cap. A second line
gives that run, the speed ratio and the mean absolute differences between the two runs' test
predictive quantiles (5%, 50%, 95%). ``--reference-predictions`` compares the
same quantiles with a predictions file of an earlier run, such as a notebook's
``predictions/phase2_1.seed.parquet``, and adds the differences to the first line.
``--save-quantiles`` writes this run's test quantiles in the same form, to serve as a reference.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_COLUMNS = ["q0.050", "q0.500", "q0.950"]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", default="phase2_1", choices=["phase1", "phase2_1", "phase2_2"])
    parser.add_argument("--profile", default="default", help="parameter file in params/")
    parser.add_argument("--feature-set", default="seed", choices=["seed", "pregame"])
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter, for example sampler.draws=200 (YAML value)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run PyMC's own NUTS with the phase's settings and print the ratio",
    )
    parser.add_argument(
        "--reference-predictions",
        type=Path,
        metavar="PARQUET",
        help="predictions file of an earlier run of the phase to compare test quantiles with",
    )
    parser.add_argument(
        "--save-quantiles",
        type=Path,
        metavar="PARQUET",
        help="write this run's test quantiles, in the form --reference-predictions reads",
    )
    return parser.parse_args(argv)


def run_once(phase, dataset, params, backend: str) -> dict:
    """Sample one phase with one backend and measure it."""
    from rbyards import phases, sampling

    settings = phases.model_settings(phase, params)
    sampler = sampling.SamplerSettings.from_params(params.sampler_for(phase))
    changes: dict = {"backend": backend}
    if backend != "numpyro":
        # Only NumPyro caps tuning trees separately and samples in float32. The other backends
        # tune at max_treedepth and sample in float64.
        changes["warmup_max_treedepth"] = None
        changes["precision"] = "float64"
    sampler = sampling.SamplerSettings(**{**sampler.__dict__, **changes})
    model = phases.build_model(phase, dataset, settings)

    start = time.perf_counter()
    idata, report = sampling.sample_posterior(model, sampler, progressbar=False)
    wall = time.perf_counter() - start
    test_forecast = phases.forecast(
        phase,
        idata.posterior,
        dataset,
        "test",
        settings,
        max_samples=sampler.chains * sampler.draws,
        seed=sampler.seed,
    )
    convergence = params.evaluation.convergence
    diagnostics = sampling.convergence_diagnostics(
        sampling.noise_by_chain(idata.posterior, ["sigma"]),
        sampling.location_by_chain(test_forecast.location_model_scale, sampler.chains),
        report,
        max_rhat=convergence.max_rhat,
        min_ess_bulk=convergence.min_ess_bulk,
        max_divergences=convergence.max_divergences,
        elapsed_seconds=wall,
    )
    predictive_quantiles = np.quantile(test_forecast.predictive_yards, [0.05, 0.5, 0.95], axis=0)
    measured = {
        "phase": phase,
        "backend": backend,
        "chains": sampler.chains,
        "tune": sampler.tune,
        "draws": sampler.draws,
        "max_treedepth": sampler.max_treedepth,
        "warmup_max_treedepth": sampler.warmup_depth,
        "precision": sampler.precision,
        "wall_seconds": round(wall, 1),
        "gradient_evaluations_per_second": round(report["gradient_evaluations_per_second"]),
        "tree_depth_mean": round(report["tree_depth_mean"], 2),
        "tree_depth_hit_share": round(report["tree_depth_hit_share"], 3),
        "divergences": report["divergences"],
        "rhat_sigma": round(diagnostics["rhat_sigma"], 4),
        "ess_bulk_sigma": round(diagnostics["ess_bulk_sigma"]),
        "rhat_pred_median_max": round(diagnostics["rhat_pred_median_max"], 4),
        "ess_bulk_pred_median_min": round(diagnostics["ess_bulk_pred_median_min"]),
        "ess_bulk_pred_median_min_per_second": round(
            diagnostics["ess_bulk_pred_median_min"] / wall, 3
        ),
        "converged": diagnostics["converged"],
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "test_width_90_mean_yards": round(
            float((predictive_quantiles[2] - predictive_quantiles[0]).mean()), 1
        ),
    }
    return measured, pd.DataFrame(
        predictive_quantiles.T, index=test_forecast.row_ids, columns=REFERENCE_COLUMNS
    )


def read_reference_quantiles(path: Path, row_ids: pd.Index) -> pd.DataFrame:
    """Read the 5%, 50% and 95% quantile columns of a predictions file, in ``row_ids`` order."""
    if not path.is_file():
        raise SystemExit(f"reference predictions file {path} not found")
    table = pd.read_parquet(path).set_index("row_id")
    missing_columns = [column for column in REFERENCE_COLUMNS if column not in table]
    if missing_columns:
        raise SystemExit(
            f"{path} is missing the quantile columns {missing_columns}; pass a predictions "
            "file written by a phase notebook"
        )
    missing_rows = row_ids.difference(table.index)
    if len(missing_rows):
        raise SystemExit(
            f"{path} is missing {len(missing_rows)} of the benchmark's test rows; pass the "
            "predictions of a run on the same split and feature set"
        )
    return table.loc[row_ids, REFERENCE_COLUMNS]


def quantile_agreement(fast: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """Return the mean absolute difference in yards of the test rows' 5/50/95% quantiles."""
    differences = (fast - reference).abs().mean(axis=0)
    return {
        f"mean_abs_difference_q{label}_yards": round(float(value), 2)
        for label, value in zip(("05", "50", "95"), differences, strict=True)
    }


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    import yaml
    from rbyards import sampling, workflow
    from rbyards.params import load_params

    overrides = {}
    for item in arguments.overrides:
        key, separator, value = item.partition("=")
        if not separator:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    params = load_params(arguments.profile, ROOT / "params", overrides)
    sampling.configure_jax_devices(params.sampler.chains)

    dataset, _ = workflow.load_dataset(params, arguments.feature_set)

    fast, fast_quantiles = run_once(arguments.phase, dataset, params, params.sampler.backend)
    if arguments.reference_predictions:
        earlier = read_reference_quantiles(arguments.reference_predictions, fast_quantiles.index)
        agreement = quantile_agreement(fast_quantiles, earlier)
        fast.update({f"reference_{name}": value for name, value in agreement.items()})
    if arguments.save_quantiles:
        arguments.save_quantiles.parent.mkdir(parents=True, exist_ok=True)
        fast_quantiles.rename_axis("row_id").reset_index().to_parquet(arguments.save_quantiles)
    print(json.dumps(fast), flush=True)
    if arguments.compare:
        reference, reference_quantiles = run_once(arguments.phase, dataset, params, "pymc")
        # Both runs target the same posterior, so their predictive quantiles should differ by
        # Monte Carlo error only.
        reference.update(quantile_agreement(fast_quantiles, reference_quantiles))
        reference["speedup_of_" + fast["backend"]] = round(
            reference["wall_seconds"] / fast["wall_seconds"], 2
        )
        reference["ess_per_second_ratio"] = round(
            fast["ess_bulk_pred_median_min_per_second"]
            / max(reference["ess_bulk_pred_median_min_per_second"], 1e-9),
            2,
        )
        print(json.dumps(reference), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
