"""Time the jitted log density and gradient of each Bayesian phase's model and print JSON lines.

Usage::

    NFLVERSE_DIR=/path/to/nflverse python benchmarks/gradient.py [--evaluations 500]

NUTS spends most of its time in this function, so its cost sets the sampler's speed: a
draw at tree depth 8 takes 255 evaluations per chain. Each phase is timed in float64 and in
float32, the two values of ``sampler.precision``, computed as NumPyro sampling computes them.
Every line gives the milliseconds per evaluation (median of 5 repeats) and the relative
difference between the float32 and float64 log densities at the same point.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help="parameter file in params/")
    parser.add_argument("--feature-set", default="seed", choices=["seed", "pregame"])
    parser.add_argument("--evaluations", type=int, default=500, help="evaluations per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args(argv)


def milliseconds_per_evaluation(function, point, evaluations: int, repeats: int) -> float:
    """Return the median over repeats of the wall time of one call, in milliseconds."""
    import jax

    jax.block_until_ready(function(point))
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(evaluations):
            output = function(point)
        jax.block_until_ready(output)
        timings.append((time.perf_counter() - start) / evaluations * 1000.0)
    return statistics.median(timings)


def log_density_and_gradient(model):
    """Return the model's JAX log density and its jitted value-and-gradient."""
    import jax
    from pymc.sampling.jax import get_jaxified_logp

    log_density = get_jaxified_logp(model)
    return log_density, jax.jit(jax.value_and_grad(log_density))


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)

    from rbyards import sampling

    sampling.configure_jax_devices(1)
    import jax
    from rbyards import phases, workflow
    from rbyards.params import load_params

    params = load_params(arguments.profile, ROOT / "params")
    dataset, _ = workflow.load_dataset(params, arguments.feature_set)
    rng = np.random.default_rng(params.sampler.seed)

    for phase in ("phase1", "phase2_1", "phase2_2"):
        model = phases.build_model(phase, dataset, phases.model_settings(phase, params))
        start = model.initial_point()
        names = [variable.name for variable in model.value_vars]
        # One random point away from the initial point, the same for both precisions.
        point_values = [
            np.asarray(start[name]) + 0.3 * rng.standard_normal(np.shape(start[name]))
            for name in names
        ]
        line = {
            "phase": phase,
            "training_rows": int(len(dataset.train)),
            "parameters": int(sum(value.size for value in point_values)),
        }
        log_densities = {}
        for precision in ("float64", "float32"):
            with sampling.jax_precision(precision):
                log_density, value_and_gradient = log_density_and_gradient(model)
                point = [jax.numpy.asarray(value) for value in point_values]
                milliseconds = milliseconds_per_evaluation(
                    value_and_gradient, point, arguments.evaluations, arguments.repeats
                )
                line[f"milliseconds_{precision}"] = round(milliseconds, 3)
                log_densities[precision] = float(log_density(point))
        line["float32_speedup"] = round(
            line["milliseconds_float64"] / line["milliseconds_float32"], 2
        )
        relative_error = abs(log_densities["float32"] / log_densities["float64"] - 1.0)
        line["float32_relative_log_density_error"] = float(f"{relative_error:.2e}")
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
