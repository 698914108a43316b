"""JAX device setup for parallel NumPyro chains, checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import json, os
os.environ.pop("XLA_FLAGS", None)
from rbyards import sampling
sampling.configure_jax_devices({chains})
import jax
print(json.dumps({{"devices": jax.local_device_count(), "flags": os.environ["XLA_FLAGS"]}}))
"""


@pytest.mark.parametrize("chains", [1, 4, 120])
def test_at_least_one_device_per_chain(chains: int):
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(chains=chains)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    reported = json.loads(completed.stdout.strip().splitlines()[-1])
    assert reported["devices"] >= chains
    assert reported["flags"].count("device_count=") == 1


def test_other_xla_flags_survive_pymc_rewrite():
    script = SCRIPT.replace(
        'os.environ.pop("XLA_FLAGS", None)',
        'os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 '
        '--xla_cpu_enable_fast_math=false"',
    ).format(chains=2)
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    reported = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "--xla_cpu_enable_fast_math=false" in reported["flags"].split()
    assert reported["devices"] >= 2
