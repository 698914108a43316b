"""What the terminal shows of notebook output, with and without ``--quiet``."""

from __future__ import annotations

import logging

import pytest

import run_all


@pytest.fixture
def terminal(capsys: pytest.CaptureFixture[str]):
    """Install run_all's handlers for one test and remove them afterwards."""
    installed: list[logging.Handler] = []

    def configure(quiet: bool) -> None:
        installed.extend(run_all._configure_logging(quiet))

    yield configure
    for handler in installed:
        logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_hides_notebook_output(terminal, capsys, quiet):
    terminal(quiet)
    papermill = logging.getLogger("papermill")
    papermill.info("sampling: 200/1000 kept draws per chain, 0 divergences, 60 s elapsed")
    papermill.warning("  5%|5         | 100/2000 [00:10<03:10]")
    logging.getLogger("rbyards.runner").warning("phase2_2.seed: blocked by phase2_1.seed")

    captured = capsys.readouterr()

    assert ("kept draws per chain" in captured.out) is not quiet
    assert ("100/2000" in captured.err) is not quiet
    assert "WARNING: phase2_2.seed: blocked by phase2_1.seed" in captured.err
