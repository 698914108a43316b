"""Checks on the notebooks as stored in git: no outputs, a tagged parameters cell, a title."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Every notebook reads these from its parameters cell; the runner passes them by name.
SHARED_PARAMETERS = ("profile", "params_dir", "output_root", "overrides", "run_id")


def _parameters_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "expected exactly one cell tagged 'parameters'"
    return tagged[0]


def test_every_phase_has_a_notebook():
    stems = {path.stem for path in NOTEBOOKS}
    expected = {
        "00_data",
        "10_phase1",
        "21_phase2_1",
        "22_phase2_2",
        "23_phase2_3",
        "30_baselines",
        "90_comparison",
    }
    assert expected <= stems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_stored_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    assert [cell.outputs for cell in code_cells if cell.outputs] == []
    assert [cell.execution_count for cell in code_cells if cell.execution_count] == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_valid_nbformat(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_starts_with_title(path: Path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_parameters_cell_defines_shared_names(path: Path):
    notebook = nbformat.read(path, as_version=4)
    cell = _parameters_cell(notebook)
    namespace: dict = {}
    exec(cell.source, namespace)  # the parameters cell contains plain assignments only
    missing = [name for name in SHARED_PARAMETERS if name not in namespace]
    assert missing == []
    assert namespace["params_dir"] == "../params"
    assert namespace["output_root"] == "../outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_imports_helpers_from_package(path: Path):
    notebook = nbformat.read(path, as_version=4)
    sources = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "from rbyards import" in sources
    # Notebooks stay thin: no function longer than a few lines is defined in them.
    definitions = [line for line in sources.splitlines() if line.startswith("def ")]
    assert len(definitions) <= 2
