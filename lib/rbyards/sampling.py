"""NUTS sampling with a choice of backend, and the convergence gate every phase applies.

The backends are PyMC's own NUTS (``pymc``), nutpie (``nutpie``) and NumPyro on JAX
(``numpyro``). All sample the same PyMC model; the backend changes speed, not the posterior.
NumPyro can also sample in single precision (``precision="float32"``).
NumPyro runs log their progress (kept draws, divergences, elapsed time) and stop with
:class:`SamplingTimeLimitError` once they pass ``time_limit_minutes``. For every backend the
runner also stops a notebook cell that runs longer than that limit plus a margin, which catches
a sampler that hangs before its first progress report, and records the run as failed.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pymc as pm

from rbyards.executors import CORE_BUDGET_VARIABLE

logger = logging.getLogger(__name__)

BACKENDS = ("numpyro", "nutpie", "pymc")
PRECISIONS = ("float64", "float32")

NUMPYRO_STATISTICS = {
    "diverging": "diverging",
    "num_steps": "n_steps",
    "potential_energy": "lp",
    "energy": "energy",
    "accept_prob": "acceptance_rate",
    "adapt_state.step_size": "step_size",
}
"""NumPyro's per-draw fields and their names in ``sample_stats``, as PyMC names them."""


class SamplingTimeLimitError(RuntimeError):
    """Raised when sampling passes ``time_limit_minutes``; the message gives the progress."""


def core_budget() -> int | None:
    """Return the CPU cores this process may use for sampling, or None when unlimited.

    The runner's executors set ``RBYARDS_CORES`` when several runs share the machine.

    Raises
    ------
    ValueError
        When ``RBYARDS_CORES`` is set but is not a whole number of at least 1.
    """
    text = os.environ.get(CORE_BUDGET_VARIABLE)
    if not text:
        return None
    try:
        cores = int(text)
    except ValueError:
        cores = 0
    if cores < 1:
        raise ValueError(
            f"{CORE_BUDGET_VARIABLE}={text!r} is invalid: expected a whole number >= 1"
        )
    return cores


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings shared by every backend."""

    backend: str = "numpyro"
    chains: int = 4
    tune: int = 1000
    draws: int = 1000
    target_accept: float = 0.95
    seed: int = 20241
    max_treedepth: int = 10
    warmup_max_treedepth: int | None = None
    time_limit_minutes: float | None = None
    progress_reports: int = 5
    precision: str = "float64"

    @property
    def warmup_depth(self) -> int:
        """Return the tree depth cap of the tuning iterations."""
        return self.warmup_max_treedepth or self.max_treedepth

    @classmethod
    def from_params(cls, sampler: Any) -> SamplerSettings:
        """Build the settings from a ``params.sampler`` section (pydantic model or mapping)."""
        values = sampler if isinstance(sampler, Mapping) else sampler.model_dump()
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in values.items() if key in names})


def configure_jax_devices(chains: int) -> None:
    """Give JAX at least one host device per chain, so that NumPyro runs the chains in parallel.

    A core budget (:func:`core_budget`) does not reduce the devices: with fewer devices than
    chains NumPyro vectorizes the chains, which sampled about 3 times slower, and the memory
    growth below returns. The budget limits BLAS and OpenMP threads and PyMC's processes.

    Host devices are threads, so there may be more of them than cores. Vectorized chains wait
    for the longest tree of each iteration, so parallel chains are faster: phase 2.1 with 4
    chains on 2 cores sampled 1.7 times faster with a device per chain than with 2 devices,
    measured once with 100 + 100 draws and tree depth 8.

    PyMC's JAX sampling module sets 100 host devices when it is imported, and its rewrite of
    ``XLA_FLAGS`` drops flags that follow the device count. This function imports that module
    first and then adds the device count only when a run has more than 100 chains, so other
    flags survive. The count matters: 2 parallel chains of the phase 2.2 mixture grew in memory
    by about 8 MB a second with 2 host devices and stayed flat at 1.1 GB with 100 (2 cores,
    200 + 200 draws, tree depth 6).

    XLA reads ``XLA_FLAGS`` once, when JAX first uses a device. This function must therefore run
    before any JAX computation. Later calls have no effect and are logged.
    """
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        logger.info("JAX is already running; XLA_FLAGS stays %r", os.environ.get("XLA_FLAGS"))
        return
    import pymc.sampling.jax  # noqa: F401 (sets XLA_FLAGS on import)

    name = "--xla_force_host_platform_device_count"
    flags = os.environ.get("XLA_FLAGS", "").split()
    counts = [int(flag.split("=")[1]) for flag in flags if flag.startswith(name + "=")]
    if not counts or counts[-1] < chains:
        flags = [flag for flag in flags if not flag.startswith(name + "=")]
        flags.append(f"{name}={max(1, chains)}")
    os.environ["XLA_FLAGS"] = " ".join(flags)


def sample_posterior(
    model: pm.Model,
    settings: SamplerSettings,
    *,
    progressbar: bool = True,
) -> tuple[az.InferenceData, dict[str, Any]]:
    """Sample a model's posterior with NUTS and return it with sampler statistics.

    Parameters
    ----------
    model : pymc.Model
        The model to sample.
    settings : SamplerSettings
        Backend, chains, tuning and kept draws per chain, target acceptance, seed and
        maximum tree depth.
    progressbar : bool, default True
        Show the backend's progress bar (draws done, and divergences for nutpie and PyMC).

    Returns
    -------
    idata : arviz.InferenceData
        Posterior and sample statistics.
    report : dict
        Backend, settings, wall time, gradient evaluations per second, tree depth statistics
        and divergences (see :func:`sampler_report`).
    """
    if settings.backend not in BACKENDS:
        raise ValueError(
            f"unknown sampler backend {settings.backend!r}; use one of {', '.join(BACKENDS)}"
        )
    if settings.precision not in PRECISIONS:
        raise ValueError(
            f"invalid sampler precision {settings.precision!r}: use one of {', '.join(PRECISIONS)}"
        )
    if settings.precision == "float32" and settings.backend != "numpyro":
        raise ValueError(
            f"precision float32 requires the numpyro backend, not {settings.backend}: set "
            "sampler.backend to numpyro or sampler.precision to float64"
        )
    if settings.warmup_depth != settings.max_treedepth and settings.backend != "numpyro":
        raise ValueError(
            f"a warmup tree depth cap ({settings.warmup_depth}) different from max_treedepth "
            f"({settings.max_treedepth}) requires the numpyro backend, not {settings.backend}: "
            "set sampler.warmup_max_treedepth to null"
        )
    if settings.backend == "numpyro":
        configure_jax_devices(settings.chains)

    logger.info(
        "sampling with %s: %d chains x (%d tune + %d draws)",
        settings.backend,
        settings.chains,
        settings.tune,
        settings.draws,
    )
    start = time.perf_counter()
    if settings.backend == "numpyro":
        idata = _sample_numpyro(model, settings, progressbar=progressbar)
    else:
        idata = _sample_pymc(model, settings, progressbar=progressbar)
    elapsed = time.perf_counter() - start
    report = sampler_report(idata, settings, elapsed)
    logger.info(
        "sampled in %.1f s: %d divergences, mean tree depth %.2f",
        elapsed,
        report["divergences"],
        report["tree_depth_mean"],
    )
    return idata, report


def _sample_pymc(
    model: pm.Model, settings: SamplerSettings, *, progressbar: bool
) -> az.InferenceData:
    """Sample with ``pm.sample``, on nutpie or PyMC's own NUTS, within the core budget."""
    budget = core_budget()
    kwargs: dict[str, Any] = {
        "draws": settings.draws,
        "tune": settings.tune,
        "chains": settings.chains,
        "target_accept": settings.target_accept,
        "random_seed": settings.seed,
        "progressbar": progressbar,
        "model": model,
        "compute_convergence_checks": False,
    }
    if settings.backend == "nutpie":
        kwargs["nuts_sampler"] = "nutpie"
        kwargs["nuts_sampler_kwargs"] = {"maxdepth": settings.max_treedepth}
        if budget is not None:
            kwargs["cores"] = min(settings.chains, budget)
    else:
        kwargs["cores"] = min(settings.chains, budget or os.cpu_count() or 1)
        kwargs["nuts"] = {"max_treedepth": settings.max_treedepth}
    return pm.sample(**kwargs)


def _sample_numpyro(
    model: pm.Model, settings: SamplerSettings, *, progressbar: bool
) -> az.InferenceData:
    """Sample with NumPyro's NUTS: warmup in one call, then kept draws in chunks.

    Sampling the kept draws in ``settings.progress_reports`` chunks, each continuing from the
    last state, lets every chunk log the draws done, divergences so far and elapsed time, and
    stops the run at ``settings.time_limit_minutes`` with that progress in the error. Chunks
    leave the Markov chains unchanged (the draws equal those of one chunk), but each chunk
    compiles the sampling loop again, which took about 2 s per chunk on 2 cores.

    With ``settings.precision == "float32"``, JAX runs the log density and the sampler in single
    precision (the model's float64 data and constants are rounded once). The draws are returned
    as float64, and the map to the model's variables runs in float64.

    The model's log density, the jittered initial points and the map from sampled values to
    the model's variables come from PyMC's JAX sampling module.
    """
    with jax_precision(settings.precision):
        raw_draws, sample_stats, start, warmup_steps = _run_numpyro(
            model, settings, progressbar=progressbar
        )
    raw_draws = [np.asarray(draws, dtype=np.float64) for draws in raw_draws]
    idata = _numpyro_inference_data(model, settings, raw_draws, sample_stats, start)
    idata.posterior.attrs["warmup_gradient_evaluations"] = warmup_steps
    return idata


@contextmanager
def jax_precision(precision: str) -> Iterator[None]:
    """Make JAX compute in ``precision`` ("float64" or "float32") inside the block."""
    import jax

    # The process-wide setting, not the thread-local jax.enable_x64 context: NumPyro's progress
    # bar runs on a callback thread, whose integers must have the precision the sampler traced.
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", precision == "float64")
    try:
        with warnings.catch_warnings():
            # JAX warns each time it rounds one of the model's float64 constants to float32.
            warnings.filterwarnings("ignore", message="Explicitly requested dtype float64")
            yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def _run_numpyro(
    model: pm.Model, settings: SamplerSettings, *, progressbar: bool
) -> tuple[list[np.ndarray], dict[str, np.ndarray], float, int]:
    """Run warmup, then the kept draws in chunks.

    Returns the raw draws, their statistics, the start time and the number of leapfrog steps
    (gradient evaluations) of the warmup, summed over chains.
    """
    import jax
    from numpyro.infer import MCMC, NUTS
    from pymc.sampling import jax as pymc_jax

    parallel = jax.local_device_count() >= settings.chains
    logp = pymc_jax.get_jaxified_logp(model, negative_logp=False)
    initial_points = pymc_jax._get_batched_jittered_initial_points(
        model=model, chains=settings.chains, initvals=None, random_seed=settings.seed, logp_fn=logp
    )
    kernel = NUTS(
        potential_fn=logp,
        target_accept_prob=settings.target_accept,
        max_tree_depth=(settings.warmup_depth, settings.max_treedepth),
        adapt_step_size=True,
        adapt_mass_matrix=True,
        dense_mass=False,
    )
    chunk = math.ceil(settings.draws / settings.progress_reports)
    mcmc = MCMC(
        kernel,
        num_warmup=settings.tune,
        num_samples=chunk,
        num_chains=settings.chains,
        chain_method="parallel" if parallel else "vectorized",
        progress_bar=progressbar,
    )
    key = jax.random.PRNGKey(settings.seed)
    if settings.chains > 1:
        key = jax.random.split(key, settings.chains)
    limit = settings.time_limit_minutes * 60.0 if settings.time_limit_minutes else math.inf
    fields = tuple(NUMPYRO_STATISTICS)

    start = time.perf_counter()
    if settings.tune > 0:
        mcmc.warmup(
            key, init_params=initial_points, extra_fields=("num_steps",), collect_warmup=True
        )
        warmup_steps = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())
    else:
        # NumPyro cannot collect the fields of zero warmup iterations.
        mcmc.warmup(key, init_params=initial_points)
        warmup_steps = 0
    jax.block_until_ready(mcmc.post_warmup_state)
    logger.info(
        "warmup: %d iterations per chain in %.0f s", settings.tune, time.perf_counter() - start
    )

    mcmc.progress_bar = False
    draws, statistics, done = [], [], 0
    while done < settings.draws:
        mcmc.num_samples = min(chunk, settings.draws - done)
        mcmc.post_warmup_state = mcmc.last_state
        mcmc.run(mcmc.last_state.rng_key, extra_fields=fields)
        draws.append([np.asarray(value) for value in mcmc.get_samples(group_by_chain=True)])
        statistics.append(
            {name: np.asarray(value) for name, value in mcmc.get_extra_fields(True).items()}
        )
        done += mcmc.num_samples
        divergences = sum(int(part["diverging"].sum()) for part in statistics)
        elapsed = time.perf_counter() - start
        progress = (
            f"{done}/{settings.draws} kept draws per chain, {divergences} divergences, "
            f"{elapsed:.0f} s elapsed"
        )
        logger.info("sampling: %s", progress)
        if elapsed > limit and done < settings.draws:
            raise SamplingTimeLimitError(
                f"sampling timed out: over the limit of {settings.time_limit_minutes:g} minutes at "
                f"{progress}"
            )

    raw_draws = [np.concatenate(parts, axis=1) for parts in zip(*draws, strict=True)]
    sample_stats = {
        NUMPYRO_STATISTICS[name]: np.concatenate([part[name] for part in statistics], axis=1)
        for name in fields
    }
    sample_stats["tree_depth"] = np.log2(sample_stats["n_steps"]).astype(int) + 1
    return raw_draws, sample_stats, start, warmup_steps


def _numpyro_inference_data(
    model: pm.Model,
    settings: SamplerSettings,
    raw_draws: list[np.ndarray],
    sample_stats: dict[str, np.ndarray],
    start: float,
) -> az.InferenceData:
    """Map NumPyro's raw draws to the model's variables and build the InferenceData."""
    import jax
    from pymc.backends.arviz import (
        coords_and_dims_for_inferencedata,
        find_constants,
        find_observations,
    )
    from pymc.sampling import jax as pymc_jax
    from pymc.util import get_default_varnames

    outputs = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    constrain = pymc_jax.get_jaxified_graph(inputs=model.value_vars, outputs=outputs)
    values = jax.vmap(jax.vmap(constrain))(*raw_draws)
    posterior = {
        variable.name: np.asarray(value) for variable, value in zip(outputs, values, strict=True)
    }
    coords, dims = coords_and_dims_for_inferencedata(model)
    return az.from_dict(
        posterior=posterior,
        sample_stats=sample_stats,
        observed_data=find_observations(model),
        constant_data=find_constants(model),
        coords=coords,
        dims=dims,
        attrs={"sampling_time": time.perf_counter() - start, "tuning_steps": settings.tune},
    )


def sampler_report(
    idata: az.InferenceData, settings: SamplerSettings, elapsed_seconds: float
) -> dict[str, Any]:
    """Summarise a run's sample statistics: divergences, tree depth, gradient evaluations.

    NumPyro runs count the tuning iterations' leapfrog steps too, so for them
    ``gradient_evaluations_per_second`` is exact. The other backends do not all store tuning
    statistics; for them it is ``kept steps x (tune + draws) / draws / wall time``, an estimate
    that assumes tuning trajectories as long as kept ones.
    """
    stats = idata.sample_stats
    depth_name = "tree_depth" if "tree_depth" in stats else "depth"
    depth = stats[depth_name].values
    if "n_steps" in stats:
        steps = float(stats["n_steps"].values.sum())
    else:
        steps = float((2.0 ** depth.astype(float) - 1).sum())
    warmup_steps = None
    if "posterior" in idata.groups():
        warmup_steps = idata.posterior.attrs.get("warmup_gradient_evaluations")
    if warmup_steps is None:
        total_steps = steps * (settings.tune + settings.draws) / settings.draws
    else:
        total_steps = steps + float(warmup_steps)
    hits = stats["reached_max_treedepth"].values if "reached_max_treedepth" in stats else None
    if hits is None:
        hits = depth >= settings.max_treedepth
    return {
        "backend": settings.backend,
        "settings": {
            "chains": settings.chains,
            "tune": settings.tune,
            "draws": settings.draws,
            "target_accept": settings.target_accept,
            "seed": settings.seed,
            "max_treedepth": settings.max_treedepth,
            "warmup_max_treedepth": settings.warmup_depth,
            "precision": settings.precision,
        },
        "wall_seconds": round(elapsed_seconds, 2),
        "divergences": int(stats["diverging"].values.sum()),
        "tree_depth_mean": float(depth.mean()),
        "tree_depth_hits": int(np.asarray(hits).sum()),
        "tree_depth_hit_share": float(np.asarray(hits).mean()),
        "kept_gradient_evaluations": int(steps),
        "gradient_evaluations": int(total_steps),
        "gradient_evaluations_per_second": total_steps / max(elapsed_seconds, 1e-9),
    }


def convergence_diagnostics(
    noise_draws: Mapping[str, np.ndarray],
    location_draws: np.ndarray,
    sampler: Mapping[str, Any],
    *,
    max_rhat: float = 1.01,
    min_ess_bulk: float = 400.0,
    max_divergences: int = 0,
    elapsed_seconds: float | None = None,
) -> dict[str, Any]:
    """Apply the convergence gate to a phase's noise scales and test predictive medians.

    Parameters
    ----------
    noise_draws : mapping of str to numpy.ndarray
        Each noise-scale variable's draws, shape (chain, draw) or (chain, draw, k).
    location_draws : numpy.ndarray
        Conditional predictive medians of the test rows, shape (chain, draw, rows).
    sampler : mapping
        Output of :func:`sampler_report` (divergences and tree depth hits).
    max_rhat, min_ess_bulk, max_divergences : float
        Thresholds of the gate.
    elapsed_seconds : float, optional
        Wall time, used to report ESS per second.

    Returns
    -------
    dict
        R-hat and bulk ESS of the noise scale(s) (worst over components) and of the test
        predictive medians (maximum R-hat and minimum ESS over rows), divergences, tree depth
        hits, ``converged`` and the list of ``reasons`` when it did not converge.
    """
    noise_rhat, noise_ess = [], []
    for draws in noise_draws.values():
        values = np.asarray(draws)
        if values.ndim == 2:
            values = values[..., None]
        for k in range(values.shape[2]):
            noise_rhat.append(float(az.rhat(values[:, :, k])))
            noise_ess.append(float(az.ess(values[:, :, k], method="bulk")))

    location = np.asarray(location_draws)
    location_dataset = az.convert_to_dataset({"location": location})
    rhat_rows = az.rhat(location_dataset)["location"].values
    ess_rows = az.ess(location_dataset, method="bulk")["location"].values

    diagnostics: dict[str, Any] = {
        "divergences": int(sampler["divergences"]),
        "tree_depth_hits": int(sampler["tree_depth_hits"]),
        "rhat_sigma": max(noise_rhat),
        "ess_bulk_sigma": min(noise_ess),
        "rhat_pred_median_max": float(np.nanmax(rhat_rows)),
        "ess_bulk_pred_median_min": float(np.nanmin(ess_rows)),
        "thresholds": {
            "max_rhat": max_rhat,
            "min_ess_bulk": min_ess_bulk,
            "max_divergences": max_divergences,
        },
    }
    if elapsed_seconds:
        diagnostics["ess_bulk_pred_median_min_per_second"] = (
            diagnostics["ess_bulk_pred_median_min"] / elapsed_seconds
        )

    reasons = []
    if diagnostics["divergences"] > max_divergences:
        reasons.append(f"{diagnostics['divergences']} divergences (allowed {max_divergences})")
    for name in ("rhat_sigma", "rhat_pred_median_max"):
        if not diagnostics[name] <= max_rhat:
            reasons.append(f"{name} = {diagnostics[name]:.3f} > {max_rhat}")
    for name in ("ess_bulk_sigma", "ess_bulk_pred_median_min"):
        if not diagnostics[name] >= min_ess_bulk:
            reasons.append(f"{name} = {diagnostics[name]:.0f} < {min_ess_bulk:g}")
    diagnostics["converged"] = not reasons
    diagnostics["reasons"] = reasons
    return diagnostics


def describe_convergence(diagnostics: Mapping[str, Any], phase: str) -> str:
    """Return one plain sentence saying whether a phase converged, and why not."""
    if diagnostics["converged"]:
        return (
            f"{phase} converged: R-hat <= {diagnostics['thresholds']['max_rhat']}, bulk ESS >= "
            f"{diagnostics['thresholds']['min_ess_bulk']:g} and no excess divergences."
        )
    return f"{phase} did NOT converge: " + "; ".join(diagnostics["reasons"]) + "."


def location_by_chain(location: np.ndarray, n_chains: int) -> np.ndarray:
    """Reshape (samples, rows) draws, stacked chain by chain, to (chain, draw, rows)."""
    return location.reshape(n_chains, -1, location.shape[-1])


def noise_by_chain(posterior: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Return the named noise-scale variables' draws keyed by name, shape (chain, draw, ...)."""
    return {name: posterior[name].values for name in names}
