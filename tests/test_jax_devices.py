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


@pytest.mark.parametrize("chains", [1, 4])
def test_one_device_per_chain(chains: int):
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(chains=chains)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    reported = json.loads(completed.stdout.strip().splitlines()[-1])
    assert reported["devices"] == chains
    assert f"device_count={chains}" in reported["flags"]


def test_devices_are_single_threaded_and_user_flags_are_kept():
    script = SCRIPT.replace(
        'os.environ.pop("XLA_FLAGS", None)',
        'os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=true"',
    ).format(chains=2)
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    flags = json.loads(completed.stdout.strip().splitlines()[-1])["flags"].split()
    assert "--xla_cpu_multi_thread_eigen=true" in flags
    assert "--xla_cpu_multi_thread_eigen=false" not in flags
    assert "intra_op_parallelism_threads=1" in flags
    assert "--xla_force_host_platform_device_count=2" in flags
