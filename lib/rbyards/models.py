"""PyMC models of the study's phases and their posterior predictive distributions.

Every model works on the log scale: ``y_model = log(rushing_yards + log_shift)`` (see
:class:`rbyards.features.Dataset`). The shift makes losses of yards (negative values) usable.
Predictive draws are mapped back with ``exp(y) - log_shift``. Because that map is increasing,
each quantile of the distribution in yards is the back-transformed quantile on the model scale.
Sample quantiles are taken from the draws in yards, so that interpolation between draws happens
on the scale that is scored. Means are never back-transformed: the exponential of a Student-t
variable has no finite mean.

The networks' forward passes are written twice, once in PyTensor for sampling and once in NumPy
for prediction from stored posterior draws. Predicting with NumPy keeps forecasts for new rows
free of recompilation and lets a saved posterior forecast next week's games directly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy import special, stats

logger = logging.getLogger(__name__)

PHASES = ("phase1", "phase2_1", "phase2_2")
"""Phases with a Bayesian network, in the study's order."""

NOISE_VARIABLES = {"phase1": ["sigma"], "phase2_1": ["sigma"], "phase2_2": ["sigma"]}
"""Posterior variables holding each phase's observation noise scale."""


def build_phase1_model(
    X: np.ndarray,  # noqa: N803 (design matrix)
    y_model: np.ndarray,
    player_idx: np.ndarray,
    n_players: int,
    *,
    hidden_units: int = 16,
    sigma_prior: float = 0.3,
    weight_sd: float = 1.0,
    bias_sd: float = 10.0,
    player_sd_prior: float = 0.5,
) -> pm.Model:
    """Build the hierarchical network of phase 1.

    A player random effect ``player_effect ~ Normal(0, player_sd)`` is added to a
    one-hidden-layer ReLU network; the likelihood is Normal on the log scale with
    ``sigma ~ HalfNormal(sigma_prior)``.

    Parameters
    ----------
    X : numpy.ndarray
        Standardized features, shape (n_rows, n_features).
    y_model : numpy.ndarray
        Log-shifted yards, shape (n_rows,).
    player_idx : numpy.ndarray
        Integer code of each row's player in ``range(n_players)``.
    n_players : int
        Number of players with a random effect (the training players).
    hidden_units, sigma_prior, weight_sd, bias_sd, player_sd_prior : float
        Width of the hidden layer and the prior scales.
    """
    coords = {
        "feature": np.arange(X.shape[1]),
        "hidden": np.arange(hidden_units),
        "player": np.arange(n_players),
    }
    with pm.Model(coords=coords) as model:
        w_in = pm.Normal("w_in", 0.0, weight_sd, dims=("feature", "hidden"))
        b_in = pm.Normal("b_in", 0.0, weight_sd, dims="hidden")
        w_out = pm.Normal("w_out", 0.0, weight_sd, dims="hidden")
        b_out = pm.Normal("b_out", 0.0, bias_sd)
        player_sd = pm.HalfNormal("player_sd", player_sd_prior)
        player_raw = pm.Normal("player_raw", 0.0, 1.0, dims="player")
        sigma = pm.HalfNormal("sigma", sigma_prior)

        hidden = pt.maximum(pt.dot(X, w_in) + b_in, 0.0)
        mu = pt.dot(hidden, w_out) + b_out + player_sd * player_raw[player_idx]
        pm.Normal("y", mu=mu, sigma=sigma, observed=y_model)
    return model


def build_phase2_1_model(
    X: np.ndarray,  # noqa: N803 (design matrix)
    y_model: np.ndarray,
    *,
    hidden_units: int = 24,
    nu: float = 4.0,
    sigma_prior: float = 20.0,
    weight_sd: float = 1.0,
    bias_sd: float = 10.0,
) -> pm.Model:
    """Build the phase 2.1 network: features, tanh hidden layer, Student-t likelihood.

    Weights are ``Normal(0, weight_sd)``, the output bias ``Normal(0, bias_sd)`` and the noise
    ``sigma ~ HalfNormal(sigma_prior)``, with ``nu`` degrees of freedom, all on the log scale.
    """
    coords = {"feature": np.arange(X.shape[1]), "hidden": np.arange(hidden_units)}
    with pm.Model(coords=coords) as model:
        w_in = pm.Normal("w_in", 0.0, weight_sd, dims=("feature", "hidden"))
        b_in = pm.Normal("b_in", 0.0, weight_sd, dims="hidden")
        w_out = pm.Normal("w_out", 0.0, weight_sd, dims="hidden")
        b_out = pm.Normal("b_out", 0.0, bias_sd)
        sigma = pm.HalfNormal("sigma", sigma_prior)

        mu = pt.dot(pt.tanh(pt.dot(X, w_in) + b_in), w_out) + b_out
        pm.StudentT("y", nu=nu, mu=mu, sigma=sigma, observed=y_model)
    return model


def build_phase2_2_model(
    X: np.ndarray,  # noqa: N803 (design matrix)
    y_model: np.ndarray,
    *,
    experts: int = 3,
    hidden_units: int = 16,
    sigma_priors: tuple[float, ...] = (10.0, 15.0, 20.0),
    nu: float = 4.0,
    weight_sd: float = 1.0,
    bias_sd: float = 10.0,
) -> pm.Model:
    """Build the phase 2.2 mixture of experts.

    A softmax gate on the features gives each row a weight per expert; each expert is a tanh
    network with its own Student-t noise ``sigma[k] ~ HalfNormal(sigma_priors[k])``. The
    likelihood is the gate-weighted mixture of the experts' Student-t densities, so the
    predictive distribution mixes whole distributions, not means and scales. The first expert's
    gate logit is fixed at zero, which removes the softmax's shift invariance.
    """
    if len(sigma_priors) != experts:
        raise ValueError(
            f"sigma_priors has {len(sigma_priors)} values but experts is {experts}; "
            "give one noise prior per expert"
        )
    coords = {
        "feature": np.arange(X.shape[1]),
        "hidden": np.arange(hidden_units),
        "expert": np.arange(experts),
        "gated_expert": np.arange(1, experts),
    }
    with pm.Model(coords=coords) as model:
        gate_w = pm.Normal("gate_w", 0.0, weight_sd, dims=("feature", "gated_expert"))
        gate_b = pm.Normal("gate_b", 0.0, weight_sd, dims="gated_expert")
        w_in = pm.Normal("w_in", 0.0, weight_sd, dims=("expert", "feature", "hidden"))
        b_in = pm.Normal("b_in", 0.0, weight_sd, dims=("expert", "hidden"))
        w_out = pm.Normal("w_out", 0.0, weight_sd, dims=("expert", "hidden"))
        b_out = pm.Normal("b_out", 0.0, bias_sd, dims="expert")
        sigma = pm.HalfNormal("sigma", np.asarray(sigma_priors, dtype=float), dims="expert")

        logits = pt.dot(X, gate_w) + gate_b
        logits = pt.concatenate([pt.zeros((X.shape[0], 1)), logits], axis=1)
        gate = pt.special.softmax(logits, axis=1)

        # All experts' hidden layers in one matrix product: the same values as an einsum over
        # (expert, feature, hidden), but its gradient runs about 1.5 times faster in JAX.
        n_rows, n_features = X.shape
        stacked_w_in = w_in.transpose(1, 0, 2).reshape((n_features, experts * hidden_units))
        stacked_b_in = b_in.reshape((experts * hidden_units,))
        hidden = pt.tanh(pt.dot(X, stacked_w_in) + stacked_b_in)
        hidden = hidden.reshape((n_rows, experts, hidden_units))
        mu = (hidden * w_out[None, :, :]).sum(axis=-1) + b_out[None, :]
        components = pm.StudentT.dist(nu=nu, mu=mu, sigma=sigma[None, :])
        pm.Mixture("y", w=gate, comp_dists=components, observed=y_model)
    return model


# --- NumPy forward passes on posterior draws -------------------------------------------------


def _stacked(posterior: xr.Dataset, name: str) -> np.ndarray:
    """Return a variable's draws with chain and draw merged into a leading sample axis."""
    values = posterior[name].values
    return values.reshape((-1, *values.shape[2:]))


def phase1_location(
    posterior: xr.Dataset,
    X: np.ndarray,  # noqa: N803 (design matrix)
    player_idx: np.ndarray,
    rng: np.random.Generator,
    player_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Return phase 1's predictive location (mean = median on the log scale) per draw and row.

    Rows whose ``player_idx`` is -1 belong to players unseen in training. Each draw gives every
    unseen player one new effect from the population distribution ``Normal(0, player_sd)`` of
    that draw, shared by all of that player's rows. ``player_ids`` (one per row) tells which
    unseen rows belong to the same player; without it, each unseen row counts as its own player.
    """
    w_in, b_in = _stacked(posterior, "w_in"), _stacked(posterior, "b_in")
    w_out, b_out = _stacked(posterior, "w_out"), _stacked(posterior, "b_out")
    player_sd, player_raw = _stacked(posterior, "player_sd"), _stacked(posterior, "player_raw")

    hidden = np.maximum(np.einsum("nf,sfh->snh", X, w_in) + b_in[:, None, :], 0.0)
    network = np.einsum("snh,sh->sn", hidden, w_out) + b_out[:, None]

    seen = player_idx >= 0
    effect = np.empty_like(network)
    effect[:, seen] = player_raw[:, player_idx[seen]]
    unseen = ~seen
    if unseen.any():
        if player_ids is None:
            new_player = np.arange(int(unseen.sum()))
        else:
            _, new_player = np.unique(np.asarray(player_ids)[unseen], return_inverse=True)
        new_effects = rng.standard_normal((network.shape[0], int(new_player.max()) + 1))
        effect[:, unseen] = new_effects[:, new_player]
    return network + player_sd[:, None] * effect


def phase2_1_location(posterior: xr.Dataset, X: np.ndarray) -> np.ndarray:  # noqa: N803
    """Return phase 2.1's network output (the Student-t location) per draw and row."""
    w_in, b_in = _stacked(posterior, "w_in"), _stacked(posterior, "b_in")
    w_out, b_out = _stacked(posterior, "w_out"), _stacked(posterior, "b_out")
    hidden = np.tanh(np.einsum("nf,sfh->snh", X, w_in) + b_in[:, None, :])
    return np.einsum("snh,sh->sn", hidden, w_out) + b_out[:, None]


def phase2_2_gate(posterior: xr.Dataset, X: np.ndarray) -> np.ndarray:  # noqa: N803
    """Return the gate weights of phase 2.2, shape (samples, rows, experts).

    The gate alone needs far less memory than :func:`phase2_2_components`, whose hidden layers
    take samples x rows x experts x hidden units values: 1.4 GB for 1,000 draws of the 3,602
    training rows.
    """
    gate_w, gate_b = _stacked(posterior, "gate_w"), _stacked(posterior, "gate_b")
    logits = np.einsum("nf,sfk->snk", X, gate_w) + gate_b[:, None, :]
    logits = np.concatenate([np.zeros((*logits.shape[:2], 1)), logits], axis=2)
    return special.softmax(logits, axis=2)


def phase2_2_components(
    posterior: xr.Dataset,
    X: np.ndarray,  # noqa: N803 (design matrix)
) -> tuple[np.ndarray, np.ndarray]:
    """Return the gate weights and expert locations, each of shape (samples, rows, experts)."""
    gate = phase2_2_gate(posterior, X)

    w_in, b_in = _stacked(posterior, "w_in"), _stacked(posterior, "b_in")
    w_out, b_out = _stacked(posterior, "w_out"), _stacked(posterior, "b_out")
    hidden = np.tanh(np.einsum("nf,sefh->sneh", X, w_in) + b_in[:, None, :, :])
    mu = np.einsum("sneh,seh->sne", hidden, w_out) + b_out[:, None, :]
    return gate, mu


def mixture_median(
    gate: np.ndarray, mu: np.ndarray, sigma: np.ndarray, nu: float, iterations: int = 40
) -> np.ndarray:
    """Return the median of a Student-t mixture per sample and row, by bisection on its CDF.

    ``gate`` and ``mu`` have shape (samples, rows, experts), ``sigma`` (samples, experts).
    """
    scale = sigma[:, None, :]
    low = (mu - 10.0 * scale).min(axis=2)
    high = (mu + 10.0 * scale).max(axis=2)
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        cdf = (gate * stats.t.cdf((middle[..., None] - mu) / scale, df=nu)).sum(axis=2)
        below = cdf < 0.5
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
    return 0.5 * (low + high)


def thin_posterior(posterior: xr.Dataset, max_samples: int) -> xr.Dataset:
    """Keep at most ``max_samples`` draws in total, evenly spaced within every chain.

    Every chain keeps at least one draw, so that draws can still be split by chain. When
    ``max_samples`` is below the number of chains, the result therefore has one draw per
    chain, which is more than ``max_samples``.
    """
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    per_chain = max(1, min(n_draws, max_samples // n_chains))
    keep = np.linspace(0, n_draws - 1, per_chain).round().astype(int)
    return posterior.isel(draw=np.unique(keep))


def predictive_draws_model_scale(
    phase: str,
    posterior: xr.Dataset,
    X: np.ndarray,  # noqa: N803 (design matrix)
    settings: Mapping[str, float],
    rng: np.random.Generator,
    player_idx: np.ndarray | None = None,
    player_ids: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Draw the posterior predictive on the log scale for new rows.

    Phase 1 needs ``player_idx`` (the training player code of each row, -1 for a player unseen
    in training) and takes ``player_ids`` so that an unseen player's rows share one effect.

    Returns a dict with ``predictive`` (samples, rows): location plus the likelihood's noise,
    ``location`` (samples, rows): the draw's conditional median, which is the network mean
    for phases 1 and 2.1, and for phase 2.2 also ``gate`` (samples, rows, experts).
    """
    if phase == "phase1":
        if player_idx is None:
            raise ValueError("phase1 needs player_idx: -1 marks a player unseen in training")
        location = phase1_location(posterior, X, player_idx, rng, player_ids)
        sigma = _stacked(posterior, "sigma")
        predictive = location + sigma[:, None] * rng.standard_normal(location.shape)
        return {"predictive": predictive, "location": location}

    if phase == "phase2_1":
        location = phase2_1_location(posterior, X)
        sigma = _stacked(posterior, "sigma")
        noise = rng.standard_t(settings["nu"], size=location.shape)
        return {"predictive": location + sigma[:, None] * noise, "location": location}

    if phase == "phase2_2":
        gate, mu = phase2_2_components(posterior, X)
        sigma = _stacked(posterior, "sigma")
        cumulative = gate.cumsum(axis=2)
        uniform = rng.random(gate.shape[:2])[..., None]
        expert = np.minimum((uniform > cumulative).sum(axis=2), gate.shape[2] - 1)
        chosen_mu = np.take_along_axis(mu, expert[..., None], axis=2)[..., 0]
        chosen_sigma = np.take_along_axis(sigma[:, None, :], expert[..., None], axis=2)[..., 0]
        noise = rng.standard_t(settings["nu"], size=chosen_mu.shape)
        location = mixture_median(gate, mu, sigma, settings["nu"])
        return {
            "predictive": chosen_mu + chosen_sigma * noise,
            "location": location,
            "gate": gate,
        }

    raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")


def to_yards(values: np.ndarray, log_shift: float) -> np.ndarray:
    """Map model-scale values (draws or quantiles) back to yards: ``exp(v) - log_shift``."""
    return np.exp(values) - log_shift
