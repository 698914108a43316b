"""Tests of the sampler settings, the sampler report and the convergence gate.

The gate is checked on synthetic draws with known behaviour: independent chains from one
distribution pass, chains with shifted means or strong autocorrelation fail. One slow test
samples a tiny model with NumPyro to check the shape of what ``sample_posterior`` returns.
"""

from __future__ import annotations

import logging
from pathlib import Path

import arviz as az
import numpy as np
import pymc as pm
import pytest
import xarray as xr
from rbyards import models, sampling
from rbyards.params import load_params

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"
PASSING_SAMPLER = {"divergences": 0, "tree_depth_hits": 0}


def mixed_chains(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Independent standard normal draws: chains that mix perfectly."""
    return rng.normal(size=shape)


def autocorrelated_chains(rng: np.random.Generator, chains: int, draws: int) -> np.ndarray:
    """AR(1) chains with coefficient 0.99, whose bulk ESS is far below their length."""
    values = np.empty((chains, draws))
    values[:, 0] = rng.normal(size=chains)
    for step in range(1, draws):
        values[:, step] = 0.99 * values[:, step - 1] + 0.14 * rng.normal(size=chains)
    return values


# --- settings -------------------------------------------------------------------------------


def test_settings_from_params_quick():
    params = load_params("quick", PARAMS_DIR)

    settings = sampling.SamplerSettings.from_params(params.sampler)

    assert settings.backend == "numpyro"
    assert settings.chains == 2
    assert settings.tune == 100
    assert settings.draws == 100
    assert settings.target_accept == 0.95
    assert settings.seed == 20241
    assert settings.max_treedepth == 5


def test_settings_from_params_override():
    params = load_params("quick", PARAMS_DIR, {"sampler.draws": 40, "sampler.backend": "pymc"})
    settings = sampling.SamplerSettings.from_params(params.sampler)
    assert settings.draws == 40
    assert settings.backend == "pymc"


def test_settings_from_mapping_ignores_extra_keys():
    mapping = {"chains": 3, "tune": 10, "time_limit_minutes": 4.0, "predictive_draws": 300}
    settings = sampling.SamplerSettings.from_params(mapping)
    assert settings.chains == 3
    assert settings.tune == 10
    # Keys that are not given keep the dataclass defaults.
    assert settings.draws == sampling.SamplerSettings().draws


def test_sample_posterior_rejects_unknown_backend():
    settings = sampling.SamplerSettings(backend="stan")
    with pytest.raises(ValueError, match="unknown sampler backend 'stan'"):
        sampling.sample_posterior(None, settings)


def test_float32_needs_numpyro():
    settings = sampling.SamplerSettings(backend="pymc", precision="float32")
    with pytest.raises(ValueError, match="float32 requires the numpyro backend, not pymc"):
        sampling.sample_posterior(None, settings)


def test_warmup_depth_defaults_to_max_treedepth():
    assert sampling.SamplerSettings(max_treedepth=7).warmup_depth == 7
    assert sampling.SamplerSettings(max_treedepth=7, warmup_max_treedepth=5).warmup_depth == 5


def test_separate_warmup_depth_needs_numpyro():
    settings = sampling.SamplerSettings(backend="nutpie", max_treedepth=8, warmup_max_treedepth=6)
    with pytest.raises(ValueError, match=r"warmup tree depth cap \(6\).*not nutpie"):
        sampling.sample_posterior(None, settings)


# --- sampler report -------------------------------------------------------------------------


def test_sampler_report_counts_divergences():
    diverging = np.zeros((2, 5), dtype=bool)
    diverging[0, 1] = diverging[1, 3] = diverging[1, 4] = True
    depth = np.array([[2, 3, 3, 4, 4], [4, 2, 2, 3, 3]])
    stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), diverging),
            "tree_depth": (("chain", "draw"), depth),
            "n_steps": (("chain", "draw"), 2.0**depth - 1),
        }
    )
    idata = az.InferenceData(sample_stats=stats)
    settings = sampling.SamplerSettings(chains=2, tune=15, draws=5, max_treedepth=4)

    report = sampling.sampler_report(idata, settings, elapsed_seconds=2.0)

    assert report["divergences"] == 3
    assert report["tree_depth_hits"] == 3
    assert report["tree_depth_hit_share"] == pytest.approx(0.3)
    assert report["tree_depth_mean"] == pytest.approx(3.0)
    steps = float((2.0**depth - 1).sum())
    assert report["kept_gradient_evaluations"] == int(steps)
    # Tuning steps are estimated from the kept ones: (15 + 5) / 5 = 4 times the kept steps.
    assert report["gradient_evaluations_per_second"] == pytest.approx(4 * steps / 2.0)
    assert report["settings"]["draws"] == 5


def test_sampler_report_uses_counted_warmup_steps():
    depth = np.full((2, 5), 3)
    stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros((2, 5), dtype=bool)),
            "tree_depth": (("chain", "draw"), depth),
            "n_steps": (("chain", "draw"), np.full((2, 5), 7)),
        }
    )
    posterior = xr.Dataset(
        {"sigma": (("chain", "draw"), np.ones((2, 5)))},
        attrs={"warmup_gradient_evaluations": 90},
    )
    idata = az.InferenceData(posterior=posterior, sample_stats=stats)
    settings = sampling.SamplerSettings(chains=2, tune=15, draws=5, max_treedepth=4)

    report = sampling.sampler_report(idata, settings, elapsed_seconds=2.0)

    # 70 kept steps plus the 90 counted in warmup, not 4 times the kept steps.
    assert report["gradient_evaluations"] == 160
    assert report["gradient_evaluations_per_second"] == pytest.approx(80.0)


# --- convergence gate -----------------------------------------------------------------------


def test_convergence_mixed_chains_pass():
    rng = np.random.default_rng(1)
    noise = {"sigma": mixed_chains(rng, (4, 1000))}
    location = mixed_chains(rng, (4, 1000, 3))

    diagnostics = sampling.convergence_diagnostics(noise, location, PASSING_SAMPLER)

    assert diagnostics["rhat_sigma"] == pytest.approx(1.0, abs=0.01)
    assert diagnostics["rhat_pred_median_max"] == pytest.approx(1.0, abs=0.01)
    assert diagnostics["ess_bulk_sigma"] > 2000
    assert diagnostics["ess_bulk_pred_median_min"] > 2000
    assert diagnostics["converged"] is True
    assert diagnostics["reasons"] == []
    message = sampling.describe_convergence(diagnostics, "phase2_1")
    assert message.startswith("phase2_1 converged")


def test_convergence_shifted_noise_chains_fail():
    rng = np.random.default_rng(2)
    sigma = mixed_chains(rng, (4, 1000)) + np.array([0.0, 0.0, 0.0, 1.0])[:, None]
    location = mixed_chains(rng, (4, 1000, 3))

    diagnostics = sampling.convergence_diagnostics({"sigma": sigma}, location, PASSING_SAMPLER)

    assert diagnostics["rhat_sigma"] > 1.01
    assert diagnostics["rhat_pred_median_max"] <= 1.01
    assert diagnostics["converged"] is False
    assert diagnostics["reasons"][0].startswith("rhat_sigma = ")
    # Chains that disagree also lower the bulk ESS, which is computed across chains.
    assert diagnostics["ess_bulk_sigma"] < 400
    assert not any("pred_median" in reason for reason in diagnostics["reasons"])
    message = sampling.describe_convergence(diagnostics, "phase2_1")
    assert message.startswith("phase2_1 did NOT converge: rhat_sigma = ")


def test_convergence_worst_noise_component():
    rng = np.random.default_rng(3)
    sigma = mixed_chains(rng, (4, 1000, 3))
    sigma[2, :, 1] += 1.0

    diagnostics = sampling.convergence_diagnostics(
        {"sigma": sigma}, mixed_chains(rng, (4, 1000, 2)), PASSING_SAMPLER
    )

    component_rhat = az.rhat(sigma[:, :, 1])
    assert diagnostics["rhat_sigma"] == pytest.approx(float(component_rhat))
    assert diagnostics["converged"] is False


def test_convergence_shifted_location_row_fails():
    rng = np.random.default_rng(4)
    location = mixed_chains(rng, (4, 1000, 3))
    location[0, :, 2] += 1.0

    diagnostics = sampling.convergence_diagnostics(
        {"sigma": mixed_chains(rng, (4, 1000))}, location, PASSING_SAMPLER
    )

    assert diagnostics["rhat_pred_median_max"] > 1.01
    assert diagnostics["converged"] is False
    assert any(reason.startswith("rhat_pred_median_max") for reason in diagnostics["reasons"])
    message = sampling.describe_convergence(diagnostics, "phase1")
    assert "did NOT converge" in message
    assert "rhat_pred_median_max" in message


def test_convergence_low_ess_fails():
    rng = np.random.default_rng(5)
    sigma = autocorrelated_chains(rng, chains=4, draws=500)

    diagnostics = sampling.convergence_diagnostics(
        {"sigma": sigma}, mixed_chains(rng, (4, 500, 2)), PASSING_SAMPLER, max_rhat=1.5
    )

    assert diagnostics["ess_bulk_sigma"] < 400
    assert diagnostics["converged"] is False
    assert any(reason.startswith("ess_bulk_sigma") for reason in diagnostics["reasons"])


def test_convergence_reports_divergences():
    rng = np.random.default_rng(6)
    noise = {"sigma": mixed_chains(rng, (4, 1000))}
    location = mixed_chains(rng, (4, 1000, 2))
    sampler = {"divergences": 3, "tree_depth_hits": 7}

    strict = sampling.convergence_diagnostics(noise, location, sampler)
    lenient = sampling.convergence_diagnostics(noise, location, sampler, max_divergences=5)

    assert strict["divergences"] == 3
    assert strict["tree_depth_hits"] == 7
    assert strict["converged"] is False
    assert strict["reasons"] == ["3 divergences (allowed 0)"]
    assert lenient["converged"] is True


def test_convergence_ess_per_second():
    rng = np.random.default_rng(7)
    diagnostics = sampling.convergence_diagnostics(
        {"sigma": mixed_chains(rng, (2, 500))},
        mixed_chains(rng, (2, 500, 2)),
        PASSING_SAMPLER,
        elapsed_seconds=4.0,
    )
    expected = diagnostics["ess_bulk_pred_median_min"] / 4.0
    assert diagnostics["ess_bulk_pred_median_min_per_second"] == pytest.approx(expected)


# --- reshaping by chain ---------------------------------------------------------------------


def test_location_by_chain_order():
    by_chain = np.arange(3 * 4 * 2, dtype=float).reshape(3, 4, 2)
    stacked = by_chain.reshape(12, 2)
    np.testing.assert_array_equal(sampling.location_by_chain(stacked, 3), by_chain)


def test_location_by_chain_matches_posterior_stacking():
    # A phase 2.1 network with zero output weights returns its bias, here 10 * chain + draw.
    chains, draws, features, hidden = 3, 5, 2, 2
    bias = 10.0 * np.arange(chains)[:, None] + np.arange(draws)[None, :]
    posterior = xr.Dataset(
        {
            "w_in": (
                ("chain", "draw", "feature", "hidden"),
                np.ones((chains, draws, features, hidden)),
            ),
            "b_in": (("chain", "draw", "hidden"), np.zeros((chains, draws, hidden))),
            "w_out": (("chain", "draw", "hidden"), np.zeros((chains, draws, hidden))),
            "b_out": (("chain", "draw"), bias),
        }
    )
    location = models.phase2_1_location(posterior, np.zeros((4, features)))

    by_chain = sampling.location_by_chain(location, chains)

    assert by_chain.shape == (chains, draws, 4)
    np.testing.assert_array_equal(by_chain, np.broadcast_to(bias[:, :, None], (chains, draws, 4)))


def test_noise_by_chain_keeps_chain_axis():
    sigma = np.arange(6.0).reshape(2, 3)
    posterior = xr.Dataset({"sigma": (("chain", "draw"), sigma)})
    noise = sampling.noise_by_chain(posterior, models.NOISE_VARIABLES["phase2_1"])
    assert list(noise) == ["sigma"]
    np.testing.assert_array_equal(noise["sigma"], sigma)


# --- real sampling --------------------------------------------------------------------------


@pytest.mark.slow
def test_sample_posterior_numpyro_shape():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(30, 3))  # noqa: N806
    y_model = 4.0 + 0.3 * np.tanh(X[:, 0]) + rng.normal(0.0, 0.4, size=30)
    model = models.build_phase2_1_model(X, y_model, hidden_units=4, sigma_prior=1.0)
    settings = sampling.SamplerSettings(
        backend="numpyro", chains=2, tune=30, draws=30, seed=11, max_treedepth=6
    )

    idata, report = sampling.sample_posterior(model, settings, progressbar=False)

    posterior = idata.posterior
    assert posterior.sizes["chain"] == 2
    assert posterior.sizes["draw"] == 30
    assert posterior["w_in"].shape == (2, 30, 3, 4)
    assert posterior["sigma"].shape == (2, 30)
    assert np.all(posterior["sigma"].values > 0)
    assert report["backend"] == "numpyro"
    assert report["settings"]["draws"] == 30
    assert report["divergences"] == int(idata.sample_stats["diverging"].values.sum())
    assert 0 < report["tree_depth_mean"] <= 6
    assert report["wall_seconds"] > 0


@pytest.mark.slow
def test_sample_posterior_same_seed_same_draws():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(30, 3))  # noqa: N806
    y_model = 4.0 + 0.3 * np.tanh(X[:, 0]) + rng.normal(0.0, 0.4, size=30)
    model = models.build_phase2_1_model(X, y_model, hidden_units=4, sigma_prior=1.0)
    settings = sampling.SamplerSettings(
        backend="numpyro", chains=2, tune=30, draws=30, seed=11, max_treedepth=6
    )
    other_seed = sampling.SamplerSettings(**{**settings.__dict__, "seed": 12})

    first, _ = sampling.sample_posterior(model, settings, progressbar=False)
    second, _ = sampling.sample_posterior(model, settings, progressbar=False)
    third, _ = sampling.sample_posterior(model, other_seed, progressbar=False)

    np.testing.assert_array_equal(first.posterior["sigma"], second.posterior["sigma"])
    assert not np.array_equal(first.posterior["sigma"], third.posterior["sigma"])


def _small_network(seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, 3))  # noqa: N806
    y_model = 4.0 + 0.3 * np.tanh(X[:, 0]) + rng.normal(0.0, 0.4, size=30)
    return models.build_phase2_1_model(X, y_model, hidden_units=4, sigma_prior=1.0)


@pytest.mark.slow
def test_warmup_depth_caps_tuning_trees_only():
    model = _small_network(13)
    settings = sampling.SamplerSettings(
        backend="numpyro",
        chains=2,
        tune=40,
        draws=30,
        seed=11,
        max_treedepth=4,
        warmup_max_treedepth=1,
        progress_reports=1,
    )

    idata, report = sampling.sample_posterior(model, settings, progressbar=False)

    # A depth cap of 1 allows one leapfrog step per tuning iteration: 2 chains x 40.
    assert idata.posterior.attrs["warmup_gradient_evaluations"] == 80
    kept_steps = int(idata.sample_stats["n_steps"].values.sum())
    assert report["gradient_evaluations"] == kept_steps + 80
    assert idata.sample_stats["n_steps"].values.max() > 1
    assert idata.sample_stats["n_steps"].values.max() <= 2**4 - 1
    assert report["settings"]["warmup_max_treedepth"] == 1


@pytest.mark.slow
def test_sampling_without_tuning_counts_no_warmup():
    model = _small_network(14)
    settings = sampling.SamplerSettings(
        backend="numpyro", chains=2, tune=0, draws=10, seed=11, max_treedepth=3
    )

    idata, report = sampling.sample_posterior(model, settings, progressbar=False)

    assert idata.posterior.sizes["draw"] == 10
    assert idata.posterior.attrs["warmup_gradient_evaluations"] == 0
    assert report["gradient_evaluations"] == int(idata.sample_stats["n_steps"].values.sum())


@pytest.mark.slow
def test_progress_chunks_keep_draws(caplog):
    model = _small_network(10)
    one_chunk = sampling.SamplerSettings(
        backend="numpyro",
        chains=2,
        tune=30,
        draws=40,
        seed=11,
        max_treedepth=6,
        progress_reports=1,
    )
    four_chunks = sampling.SamplerSettings(**{**one_chunk.__dict__, "progress_reports": 4})

    whole, _ = sampling.sample_posterior(model, one_chunk, progressbar=False)
    with caplog.at_level(logging.INFO, logger="rbyards.sampling"):
        # Earlier tests may have set the rbyards loggers to INFO, so the first fit logged too.
        caplog.clear()
        chunked, report = sampling.sample_posterior(model, four_chunks, progressbar=False)

    np.testing.assert_array_equal(whole.posterior["w_in"], chunked.posterior["w_in"])
    np.testing.assert_array_equal(whole.sample_stats["n_steps"], chunked.sample_stats["n_steps"])
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sampling: ")]
    assert [line.split(" kept")[0] for line in progress] == [
        "sampling: 10/40",
        "sampling: 20/40",
        "sampling: 30/40",
        "sampling: 40/40",
    ]
    assert progress[-1].split(", ")[1] == f"{report['divergences']} divergences"


@pytest.mark.slow
def test_time_limit_stops_sampling_with_its_progress():
    model = _small_network(11)
    settings = sampling.SamplerSettings(
        backend="numpyro",
        chains=2,
        tune=20,
        draws=40,
        seed=11,
        max_treedepth=5,
        progress_reports=4,
        time_limit_minutes=1e-6,
    )

    with pytest.raises(sampling.SamplingTimeLimitError, match=r"at 10/40 kept draws per chain"):
        sampling.sample_posterior(model, settings, progressbar=False)


@pytest.mark.slow
def test_float32_sampling_recovers_known_posterior():
    import jax

    y = np.random.default_rng(12).normal(3.0, 1.0, size=50)
    with pm.Model() as model:
        mean = pm.Normal("mean", 0.0, 10.0)
        pm.Normal("y", mean, 1.0, observed=y)
    # Conjugate Normal posterior of the mean.
    precision = len(y) + 1.0 / 100.0
    exact_mean, exact_sd = y.sum() / precision, precision**-0.5
    settings = sampling.SamplerSettings(
        backend="numpyro", chains=2, tune=200, draws=400, seed=5, precision="float32"
    )

    # With the progress bar, whose callback thread once saw float64 integers and failed.
    idata, report = sampling.sample_posterior(model, settings, progressbar=True)

    draws = idata.posterior["mean"].values
    assert draws.dtype == np.float64
    assert report["settings"]["precision"] == "float32"
    standard_error = exact_sd / np.sqrt(float(az.ess(idata, var_names=["mean"])["mean"]))
    assert abs(draws.mean() - exact_mean) < 4 * standard_error
    assert abs(draws.std() / exact_sd - 1.0) < 0.15
    # Single precision applies only inside sampling, so later JAX work is float64 again.
    assert jax.numpy.asarray(1.0).dtype == jax.numpy.float64
