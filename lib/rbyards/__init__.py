"""Bayesian neural network forecasts of NFL running back rushing yards, with honest intervals."""

__version__ = "0.1.0"
