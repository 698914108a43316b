"""Tests of atomic writes, checksums, package versions, git commits and result files."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from rbyards import provenance
from rbyards.provenance import (
    ResultFileError,
    git_commit,
    package_versions,
    result_path,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
    write_result,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_write_json_converts_numpy_and_paths(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "out.json"
    write_json_atomic(target, {"x": np.float64(1.5), "n": np.arange(3), "p": Path("/a/b")})
    assert json.loads(target.read_text()) == {"x": 1.5, "n": [0, 1, 2], "p": "/a/b"}
    assert [path.name for path in target.parent.iterdir()] == ["out.json"]


def test_failed_rename_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def failing_replace(source: str, destination: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["out.bin"]


def test_unencodable_value_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(TypeError, match="cannot write object value"):
        write_json_atomic(target, {"bad": object()})
    assert not target.exists()


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    content = b"season,week\n" * 100_000
    path.write_bytes(content)
    assert sha256_file(path, chunk_size=4096) == hashlib.sha256(content).hexdigest()


def test_package_versions_lists_study_packages() -> None:
    versions = package_versions()
    expected = {
        "pymc",
        "pytensor",
        "arviz",
        "nutpie",
        "numpyro",
        "jax",
        "numpy",
        "pandas",
        "scikit-learn",
        "mapie",
        "scoringrules",
        "papermill",
        "python",
    }
    assert set(versions) == expected
    assert versions["numpy"] == np.__version__
    assert versions["mapie"] is not None


def test_git_commit_inside_and_outside_checkout(tmp_path: Path) -> None:
    commit = git_commit(REPO_ROOT)
    assert commit is not None
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert git_commit(tmp_path) is None


def test_write_result_adds_provenance(tmp_path: Path) -> None:
    data_file = tmp_path / "games.csv"
    data_file.write_text("game_id\n1\n")
    path = write_result(
        tmp_path / "outputs",
        "quick",
        "phase2_1.seed",
        {"status": "ok", "metrics": {"mae": 17.0}},
        data_files={"games.csv": data_file},
    )
    assert path == result_path(tmp_path / "outputs", "quick", "phase2_1.seed")
    assert path == tmp_path / "outputs" / "quick" / "results" / "phase2_1.seed.json"
    written = json.loads(path.read_text())
    assert written["run_id"] == "phase2_1.seed"
    assert written["profile"] == "quick"
    assert written["metrics"] == {"mae": 17.0}
    assert written["provenance"]["data_files"] == {"games.csv": sha256_file(data_file)}
    assert written["provenance"]["packages"]["pymc"] == package_versions()["pymc"]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"status": "done"}, "has status 'done'; set status to 'ok' or 'failed'"),
        ({}, "has status None"),
        ({"status": "ok", "run_id": "phase1.seed"}, "differs from the notebook's run_id"),
    ],
)
def test_write_result_rejects_bad_payload(tmp_path: Path, result: dict, expected: str) -> None:
    with pytest.raises(ResultFileError, match=re.escape(expected)):
        write_result(tmp_path, "quick", "phase2_1.seed", result)
    assert not provenance.result_path(tmp_path, "quick", "phase2_1.seed").exists()
