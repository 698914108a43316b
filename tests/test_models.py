"""Tests of the phase models: NumPy forward passes against the PyMC likelihood, predictive draws.

The PyMC likelihoods are evaluated row by row at fixed parameter values and compared with the
densities implied by the NumPy forward passes, so a forward pass that differs from the sampled
model (activation, gate layout, player effect) fails. PyTensor functions are compiled in
FAST_COMPILE mode, which skips the C compiler and keeps the tests fast on a cold cache.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr
from rbyards import models
from scipy import special, stats

NU = 4.0


def random_values(model: pm.Model, rng: np.random.Generator, positive: dict) -> dict:
    """Draw a value for every free variable of ``model``; ``positive`` fixes the scale ones."""
    values = {}
    for rv in model.free_RVs:
        if rv.name in positive:
            values[rv.name] = np.asarray(positive[rv.name], dtype=float)
            continue
        dims = model.named_vars_to_dims.get(rv.name) or ()
        shape = tuple(len(model.coords[dim]) for dim in dims)
        values[rv.name] = rng.normal(0.0, 1.0, size=shape)
    return values


def row_logp(model: pm.Model, values: dict) -> np.ndarray:
    """Return the model's log-likelihood of each observed row at the given parameter values."""
    point = {}
    for value_var in model.value_vars:
        name = value_var.name
        if name.endswith("_log__"):
            point[name] = np.log(values[name.removesuffix("_log__")])
        else:
            point[name] = values[name]
    logp = model.logp(vars=[model["y"]], sum=False)[0]
    function = model.compile_fn(logp, point_fn=True, mode="FAST_COMPILE")
    return np.asarray(function(point))


def posterior_from(model: pm.Model, values: dict, draws: int = 1) -> xr.Dataset:
    """Wrap parameter values as a one-chain posterior with ``draws`` identical draws."""
    variables = {}
    for name, value in values.items():
        dims = model.named_vars_to_dims.get(name) or ()
        stacked = np.broadcast_to(value, (1, draws, *np.shape(value))).copy()
        variables[name] = (("chain", "draw", *dims), stacked)
    return xr.Dataset(variables)


def jitter(posterior: xr.Dataset, rng: np.random.Generator, scale: float) -> xr.Dataset:
    """Add independent noise to every draw, keeping scale parameters positive."""
    varied = posterior.copy()
    for name, variable in posterior.data_vars.items():
        noise = rng.normal(0.0, scale, size=variable.shape)
        if name in ("sigma", "player_sd"):
            varied[name] = variable * np.exp(noise)
        else:
            varied[name] = variable + noise
    return varied


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12)


@pytest.fixture
def rows(rng) -> tuple[np.ndarray, np.ndarray]:
    """Three rows of two standardized features and log-scale outcomes near log(60)."""
    X = rng.normal(size=(3, 2))  # noqa: N806
    y_model = rng.normal(4.0, 0.5, size=3)
    return X, y_model


# --- forward passes against the PyMC likelihood ---------------------------------------------


def test_phase1_location_matches_model(rows, rng):
    X, y_model = rows  # noqa: N806
    player_idx = np.array([2, 0, 2])
    model = models.build_phase1_model(X, y_model, player_idx, 3, hidden_units=4)
    values = random_values(model, rng, {"player_sd": 0.4, "sigma": 0.3})
    posterior = posterior_from(model, values)

    location = models.phase1_location(posterior, X, player_idx, rng)[0]

    expected = np.empty(3)
    for row in range(3):
        hidden = np.maximum(X[row] @ values["w_in"] + values["b_in"], 0.0)
        effect = values["player_sd"] * values["player_raw"][player_idx[row]]
        expected[row] = hidden @ values["w_out"] + values["b_out"] + effect
    np.testing.assert_allclose(location, expected, rtol=1e-12)
    model_logp = row_logp(model, values)
    np.testing.assert_allclose(model_logp, stats.norm.logpdf(y_model, location, 0.3), rtol=1e-9)


def test_phase2_1_location_matches_model(rows, rng):
    X, y_model = rows  # noqa: N806
    model = models.build_phase2_1_model(X, y_model, hidden_units=4, nu=NU)
    values = random_values(model, rng, {"sigma": 0.5})
    posterior = posterior_from(model, values)

    location = models.phase2_1_location(posterior, X)[0]

    expected = np.empty(3)
    for row in range(3):
        hidden = np.tanh(X[row] @ values["w_in"] + values["b_in"])
        expected[row] = hidden @ values["w_out"] + values["b_out"]
    np.testing.assert_allclose(location, expected, rtol=1e-12)
    model_logp = row_logp(model, values)
    student = stats.t.logpdf(y_model, df=NU, loc=location, scale=0.5)
    np.testing.assert_allclose(model_logp, student, rtol=1e-9)


def test_phase2_2_components_match_model(rows, rng):
    X, y_model = rows  # noqa: N806
    sigma = np.array([0.3, 0.5, 0.8])
    model = models.build_phase2_2_model(
        X, y_model, experts=3, hidden_units=4, sigma_priors=(1.0, 1.0, 1.0), nu=NU
    )
    values = random_values(model, rng, {"sigma": sigma})
    posterior = posterior_from(model, values)

    gate, mu = models.phase2_2_components(posterior, X)
    gate, mu = gate[0], mu[0]

    expected_mu = np.empty((3, 3))
    for row in range(3):
        for expert in range(3):
            hidden = np.tanh(X[row] @ values["w_in"][expert] + values["b_in"][expert])
            expected_mu[row, expert] = hidden @ values["w_out"][expert] + values["b_out"][expert]
    np.testing.assert_allclose(mu, expected_mu, rtol=1e-12)
    density = gate * stats.t.pdf(y_model[:, None], df=NU, loc=mu, scale=sigma)
    np.testing.assert_allclose(row_logp(model, values), np.log(density.sum(axis=1)), rtol=1e-9)


def test_phase2_2_gate_first_logit_fixed(rows, rng):
    X, y_model = rows  # noqa: N806
    model = models.build_phase2_2_model(
        X, y_model, experts=3, hidden_units=4, sigma_priors=(1.0, 1.0, 1.0)
    )
    values = random_values(model, rng, {"sigma": np.ones(3)})
    gate = models.phase2_2_components(posterior_from(model, values), X)[0][0]

    np.testing.assert_allclose(gate.sum(axis=1), 1.0, rtol=1e-12)
    # log(gate_k / gate_0) is expert k's logit minus the fixed zero logit of expert 0.
    logits = X @ values["gate_w"] + values["gate_b"]
    np.testing.assert_allclose(np.log(gate[:, 1:] / gate[:, :1]), logits, rtol=1e-10)
    shifted = dict(values, gate_b=values["gate_b"] + 5.0)
    shifted_gate = models.phase2_2_components(posterior_from(model, shifted), X)[0][0]
    assert np.all(shifted_gate[:, 0] < gate[:, 0])


def test_phase2_2_gate_alone_matches_components(rows, rng):
    X, y_model = rows  # noqa: N806
    model = models.build_phase2_2_model(
        X, y_model, experts=3, hidden_units=4, sigma_priors=(1.0, 1.0, 1.0)
    )
    posterior = posterior_from(model, random_values(model, rng, {"sigma": np.ones(3)}))

    gate = models.phase2_2_gate(posterior, X)

    assert gate.shape == (1, len(X), 3)
    np.testing.assert_array_equal(gate, models.phase2_2_components(posterior, X)[0])


def test_phase2_2_rejects_prior_count_mismatch(rows):
    X, y_model = rows  # noqa: N806
    with pytest.raises(ValueError, match="sigma_priors has 2 values but experts is 3"):
        models.build_phase2_2_model(X, y_model, experts=3, sigma_priors=(1.0, 2.0))


# --- players unseen in training ---------------------------------------------------------------


def phase1_posterior(player_sd: float, draws: int) -> tuple[pm.Model, dict, xr.Dataset]:
    """Return a phase 1 model (3 players, 2 features), fixed values and ``draws`` copies."""
    model = models.build_phase1_model(
        np.zeros((1, 2)), np.zeros(1), np.zeros(1, dtype=int), 3, hidden_units=4
    )
    values = random_values(model, np.random.default_rng(3), {"player_sd": player_sd, "sigma": 0.2})
    return model, values, posterior_from(model, values, draws=draws)


@pytest.mark.parametrize("player_sd", [0.3, 0.9])
def test_phase1_unseen_player_from_population(player_sd, rng):
    _, values, posterior = phase1_posterior(player_sd, draws=4000)
    X = rng.normal(size=(3, 2))  # noqa: N806
    player_idx = np.array([1, -1, -1])

    location = models.phase1_location(posterior, X, player_idx, rng)

    # Every draw has the same parameters, so only the unseen rows vary across draws.
    assert np.ptp(location[:, 0]) == 0.0
    hidden = np.maximum(X[1] @ values["w_in"] + values["b_in"], 0.0)
    network = hidden @ values["w_out"] + values["b_out"]
    for row in (1, 2):
        assert location[:, row].std() == pytest.approx(player_sd, rel=0.05)
    assert location[:, 1].mean() == pytest.approx(network, abs=4 * player_sd / np.sqrt(4000))
    # The two unseen rows draw their effects independently of each other.
    assert abs(np.corrcoef(location[:, 1], location[:, 2])[0, 1]) < 0.1
    # No draw reuses a training player's effect.
    training_locations = network + player_sd * values["player_raw"]
    matches = np.isclose(location[:, 1, None], training_locations[None, :], rtol=0, atol=1e-9)
    assert not matches.any()


# --- mixture median -------------------------------------------------------------------------


def mixture_cdf(x: np.ndarray, gate: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return (gate * stats.t.cdf((x[..., None] - mu) / sigma, df=NU)).sum(axis=-1)


def test_mixture_median_between_components_and_exact():
    rng = np.random.default_rng(7)
    gate = special.softmax(rng.normal(size=(2, 4, 3)), axis=2)
    mu = rng.normal(4.0, 1.0, size=(2, 4, 3))
    sigma = np.array([[0.2, 0.5, 1.0], [0.3, 0.3, 0.6]])

    median = models.mixture_median(gate, mu, sigma, NU)

    assert median.shape == (2, 4)
    assert np.all(median >= mu.min(axis=2))
    assert np.all(median <= mu.max(axis=2))
    cdf = mixture_cdf(median, gate, mu, sigma[:, None, :])
    np.testing.assert_allclose(cdf, 0.5, atol=1e-8)


def test_mixture_median_matches_monte_carlo():
    rng = np.random.default_rng(8)
    gate = np.array([[[0.6, 0.3, 0.1]]])
    mu = np.array([[[3.0, 4.5, 5.5]]])
    sigma = np.array([[0.3, 0.6, 1.0]])
    n = 400_000
    expert = rng.choice(3, size=n, p=gate[0, 0])
    draws = mu[0, 0, expert] + sigma[0, expert] * rng.standard_t(NU, size=n)

    median = models.mixture_median(gate, mu, sigma, NU)[0, 0]

    # The Monte Carlo median's standard error, 1 / (2 f(median) sqrt(n)), is about 0.002 here.
    assert median == pytest.approx(np.median(draws), abs=0.01)
    # The mixture median is not the gate-weighted mean of the expert medians.
    assert abs(median - (gate * mu).sum()) > 0.1


def test_mixture_median_symmetric_mixture():
    gate = np.array([[[0.5, 0.5]]])
    mu = np.array([[[2.0, 6.0]]])
    sigma = np.array([[0.5, 0.5]])
    assert models.mixture_median(gate, mu, sigma, NU)[0, 0] == pytest.approx(4.0, abs=1e-9)


# --- predictive draws -------------------------------------------------------------------------


def test_phase2_1_predictive_noise_is_student_t(rows, rng):
    X, y_model = rows  # noqa: N806
    model = models.build_phase2_1_model(X, y_model, hidden_units=4, nu=NU)
    values = random_values(model, rng, {"sigma": 0.5})
    posterior = posterior_from(model, values, draws=20_000)

    draws = models.predictive_draws_model_scale("phase2_1", posterior, X, {"nu": NU}, rng)

    assert draws["predictive"].shape == (20_000, 3)
    standardized = (draws["predictive"] - draws["location"]) / 0.5
    # A Student-t with 4 degrees of freedom has its 95% quantile at 2.13 (a Normal at 1.64).
    upper = np.quantile(standardized, 0.95, axis=0)
    np.testing.assert_allclose(upper, stats.t.ppf(0.95, df=NU), atol=0.08)


def test_phase1_predictive_noise_is_normal(rows, rng):
    X, y_model = rows  # noqa: N806
    _, _, posterior = phase1_posterior(0.4, draws=20_000)

    draws = models.predictive_draws_model_scale(
        "phase1", posterior, X, {}, rng, player_idx=np.array([0, 1, 2])
    )

    noise = draws["predictive"] - draws["location"]
    np.testing.assert_allclose(noise.std(axis=0), 0.2, rtol=0.03)
    assert np.all(np.abs(stats.kurtosis(noise, axis=0)) < 0.2)


def test_phase2_2_predictive_follows_mixture(rows, rng):
    X, y_model = rows  # noqa: N806
    sigma = np.array([0.2, 0.4, 0.8])
    model = models.build_phase2_2_model(
        X, y_model, experts=3, hidden_units=4, sigma_priors=(1.0, 1.0, 1.0), nu=NU
    )
    values = random_values(model, rng, {"sigma": sigma})
    values["b_out"] = np.array([2.0, 4.0, 6.0])
    posterior = posterior_from(model, values, draws=20_000)

    draws = models.predictive_draws_model_scale("phase2_2", posterior, X, {"nu": NU}, rng)

    gate, mu = models.phase2_2_components(posterior, X)
    np.testing.assert_array_equal(draws["gate"], gate)
    expected_median = models.mixture_median(gate[:1], mu[:1], sigma[None, :], NU)[0]
    np.testing.assert_allclose(draws["location"][0], expected_median)
    for point in (2.5, 4.0, 5.5):
        empirical = (draws["predictive"] <= point).mean(axis=0)
        exact = mixture_cdf(np.full(3, point), gate[0], mu[0], sigma)
        np.testing.assert_allclose(empirical, exact, atol=0.015)


@pytest.mark.parametrize("phase", models.PHASES)
def test_predictive_wider_than_location(phase, rows, rng):
    X, y_model = rows  # noqa: N806
    if phase == "phase1":
        model = models.build_phase1_model(X, y_model, np.zeros(3, dtype=int), 2, hidden_units=4)
        positive = {"player_sd": 0.3, "sigma": 0.3}
    elif phase == "phase2_1":
        model = models.build_phase2_1_model(X, y_model, hidden_units=4)
        positive = {"sigma": 0.3}
    else:
        model = models.build_phase2_2_model(
            X, y_model, experts=3, hidden_units=4, sigma_priors=(1.0, 1.0, 1.0)
        )
        positive = {"sigma": np.array([0.2, 0.3, 0.4])}
    values = random_values(model, rng, positive)
    posterior = jitter(posterior_from(model, values, draws=2000), rng, 0.05)

    draws = models.predictive_draws_model_scale(
        phase, posterior, X, {"nu": NU}, rng, player_idx=np.array([0, 1, -1])
    )

    def width(samples: np.ndarray) -> np.ndarray:
        return np.quantile(samples, 0.95, axis=0) - np.quantile(samples, 0.05, axis=0)

    assert np.all(width(draws["location"]) > 0.0)
    assert np.all(width(draws["predictive"]) > 1.2 * width(draws["location"]))


def test_predictive_draws_reject_bad_input(rows, rng):
    X, _ = rows  # noqa: N806
    posterior = phase1_posterior(0.3, draws=2)[2]
    with pytest.raises(ValueError, match="phase1 needs player_idx"):
        models.predictive_draws_model_scale("phase1", posterior, X, {}, rng)
    with pytest.raises(ValueError, match="unknown phase 'phase3'"):
        models.predictive_draws_model_scale("phase3", posterior, X, {}, rng)


# --- back-transform and thinning ------------------------------------------------------------


def test_to_yards_inverts_log_shift():
    yards = np.array([-9.0, -5.0, 0.0, 3.0, 47.0, 212.0])
    for shift in (10.0, 25.0):
        np.testing.assert_allclose(models.to_yards(np.log(yards + shift), shift), yards, atol=1e-10)
    assert models.to_yards(np.array([0.0]), 10.0)[0] == -9.0


def thinning_posterior(chains: int, draws: int) -> xr.Dataset:
    index = np.arange(chains * draws, dtype=float).reshape(chains, draws)
    return xr.Dataset(
        {"sigma": (("chain", "draw"), index)},
        coords={"chain": np.arange(chains), "draw": np.arange(draws)},
    )


def test_thin_posterior_keeps_at_most_max_samples():
    posterior = thinning_posterior(chains=4, draws=100)

    thinned = models.thin_posterior(posterior, max_samples=50)

    assert thinned.sizes["chain"] == 4
    assert thinned.sizes["draw"] == 12
    assert thinned.sizes["chain"] * thinned.sizes["draw"] <= 50
    kept_draws = thinned["draw"].values
    assert kept_draws[0] == 0
    assert kept_draws[-1] == 99
    assert set(np.diff(kept_draws)) <= {9, 10}
    # Every chain keeps the same draws.
    np.testing.assert_array_equal(thinned["sigma"].values[1] - thinned["sigma"].values[0], 100.0)


def test_thin_posterior_keeps_all_when_few():
    posterior = thinning_posterior(chains=2, draws=30)
    thinned = models.thin_posterior(posterior, max_samples=1000)
    np.testing.assert_array_equal(thinned["sigma"].values, posterior["sigma"].values)


def test_thin_posterior_one_draw_per_chain_minimum():
    posterior = thinning_posterior(chains=4, draws=10)
    thinned = models.thin_posterior(posterior, max_samples=2)
    assert thinned.sizes["chain"] == 4
    assert thinned.sizes["draw"] == 1


def test_phase1_unseen_player_rows_share_one_effect(rng):
    player_sd = 0.5
    _, values, posterior = phase1_posterior(player_sd, draws=2000)
    X = rng.normal(size=(4, 2))  # noqa: N806
    player_idx = np.array([-1, -1, -1, 0])
    player_ids = np.array(["new-a", "new-b", "new-a", "old"])

    location = models.phase1_location(posterior, X, player_idx, rng, player_ids)

    hidden = np.maximum(X @ values["w_in"] + values["b_in"], 0.0)
    network = hidden @ values["w_out"] + values["b_out"]
    effects = (location - network) / player_sd
    # Two games of one new player share the effect of each draw.
    np.testing.assert_allclose(effects[:, 0], effects[:, 2], rtol=0, atol=1e-9)
    # Two new players draw their effects independently.
    assert abs(np.corrcoef(effects[:, 0], effects[:, 1])[0, 1]) < 0.1
    assert effects[:, 1].std() == pytest.approx(1.0, rel=0.05)
    # The training player keeps its own effect.
    np.testing.assert_allclose(effects[:, 3], values["player_raw"][0], rtol=0, atol=1e-9)
