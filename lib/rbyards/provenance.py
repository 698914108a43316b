"""Provenance and atomic file writes: package versions, git commit, checksums, result files.

Notebooks write results through :func:`write_result`, so a reader never sees a half-written file.
The content goes to a temporary file in the same folder, which is then renamed over the target.
``os.replace`` is atomic on POSIX when both names are on one file system.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Distribution names on PyPI, keyed by the name shown in result files.
TRACKED_PACKAGES = {
    "pymc": "pymc",
    "pytensor": "pytensor",
    "arviz": "arviz",
    "nutpie": "nutpie",
    "numpyro": "numpyro",
    "jax": "jax",
    "numpy": "numpy",
    "pandas": "pandas",
    "scikit-learn": "scikit-learn",
    "mapie": "MAPIE",
    "scoringrules": "scoringrules",
    "papermill": "papermill",
}
RESULT_STATUSES = ("ok", "failed")


class ResultFileError(ValueError):
    """A result payload that the runner could not use (bad status or run id)."""


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed over the target.

    Parameters
    ----------
    path : str or Path
        Target file; missing parent folders are created.
    data : bytes
        Content to write.

    Returns
    -------
    Path
        The target path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
        Target file; missing parent folders are created.
    obj : object
        JSON-serialisable value. Paths and datetimes are written as strings, numpy scalars and
        arrays through their ``tolist()`` method.

    Returns
    -------
    Path
        The target path.
    """
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    return write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def _json_default(value: Any) -> Any:
    """Convert values that ``json`` cannot encode: numpy scalars, paths, datetimes."""
    if isinstance(value, Path | datetime):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} as JSON")


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Return the SHA-256 hex digest of a file's bytes.

    Parameters
    ----------
    path : str or Path
        File to hash.
    chunk_size : int, default 1 MiB
        Bytes read per step.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str | None]:
    """Return the installed versions of the packages the study depends on, and Python's.

    Returns
    -------
    dict of str to str or None
        Keys pymc, pytensor, arviz, nutpie, numpyro, jax, numpy, pandas, scikit-learn, mapie,
        scoringrules, papermill and python; None for a package that is not installed.
    """
    versions: dict[str, str | None] = {}
    for name, distribution in TRACKED_PACKAGES.items():
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def git_commit(repo_root: str | Path) -> str | None:
    """Return the commit checked out in ``repo_root``, or None when it is not a git checkout.

    Parameters
    ----------
    repo_root : str or Path
        Folder inside a git working tree.

    Returns
    -------
    str or None
        The full commit hash, with ``"+dirty"`` appended when tracked files have uncommitted
        changes; None when git is missing or the folder is not in a repository.
    """
    try:
        head = subprocess.run(
            ["git", "-C", str(repo_root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo_root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        logger.debug("no git commit for %s: %s", repo_root, exc)
        return None
    return f"{head}+dirty" if status else head


def result_path(output_root: str | Path, profile: str, run_id: str) -> Path:
    """Return ``<output_root>/<profile>/results/<run_id>.json``, the file a run's notebook writes.

    Parameters
    ----------
    output_root : str or Path
        Root of all outputs (``outputs``).
    profile : str
        Parameter profile.
    run_id : str
        Run id such as ``"phase2_1.seed"``.

    Returns
    -------
    Path
        Path of the result file.
    """
    return Path(output_root) / profile / "results" / f"{run_id}.json"


def write_result(
    output_root: str | Path,
    profile: str,
    run_id: str,
    result: Mapping[str, Any],
    *,
    data_files: Mapping[str, str | Path] | None = None,
    repo_root: str | Path | None = None,
) -> Path:
    """Write a run's result file atomically, adding run id, time stamp and provenance.

    The runner counts a run as done only when this file exists, was written during the run and
    has ``status == "ok"``.

    Parameters
    ----------
    output_root : str or Path
        Root of all outputs, the notebook's ``output_root`` parameter.
    profile : str
        Parameter profile, the notebook's ``profile`` parameter.
    run_id : str
        The notebook's ``run_id`` parameter.
    result : mapping
        Result keys (phase, feature_set, status, parameters, metrics, diagnostics, ...). Must
        contain ``status`` ("ok" or "failed"); a failed result should also give ``error``.
    data_files : mapping of str to path, optional
        Input files whose SHA-256 goes into ``provenance.data_files``.
    repo_root : str or Path, optional
        Checkout whose commit goes into ``provenance.git_commit``.

    Returns
    -------
    Path
        The result file written.

    Raises
    ------
    ResultFileError
        When ``status`` is missing or not one of "ok" and "failed", or ``result["run_id"]``
        differs from ``run_id``.
    """
    payload = dict(result)
    status = payload.get("status")
    if status not in RESULT_STATUSES:
        raise ResultFileError(
            f"result for run {run_id!r} has status {status!r}; set status to 'ok' or 'failed'"
        )
    if payload.setdefault("run_id", run_id) != run_id:
        raise ResultFileError(
            f"result run_id {payload['run_id']!r} differs from the notebook's run_id {run_id!r}"
        )
    provenance = dict(payload.get("provenance") or {})
    provenance.setdefault("packages", package_versions())
    if data_files is not None:
        provenance.setdefault(
            "data_files", {name: sha256_file(path) for name, path in data_files.items()}
        )
    if repo_root is not None:
        provenance.setdefault("git_commit", git_commit(repo_root))
    payload["provenance"] = provenance
    payload.setdefault("profile", profile)
    payload["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = result_path(output_root, profile, run_id)
    write_json_atomic(path, payload)
    logger.info("wrote result %s (status %s)", path, status)
    return path
