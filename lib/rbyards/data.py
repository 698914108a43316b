"""Load nflverse weekly player statistics and the schedule into canonical frames.

Player files are ``player_stats_{season}`` (the older nflverse release name) or
``stats_player_week_{season}`` (the newer one), each as ``.csv``, ``.csv.gz`` or ``.parquet``.
Newer releases rename a few columns (``team`` for ``recent_team``, ``passing_interceptions`` for
``interceptions``, ...); :data:`COLUMN_ALIASES` maps them to one canonical name. The schedule is
``games.csv``, ``games.csv.gz`` or ``games.parquet``.

When files are missing, the loaders try to download them with nflreadpy and write them as csv into
the data folder. When that fails (offline, for example), they raise :class:`DataNotFoundError`
that names the files looked for, the folder, and how to provide them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

ENV_VAR = "NFLVERSE_DIR"
DOWNLOAD_SEASONS = (2020, 2021, 2022, 2023, 2024)
"""Seasons downloaded when no season is configured and the data folder has no player file."""

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The default folder sits in the project checkout, whatever the working directory (papermill
# runs notebooks from notebooks/). Outside a checkout it is relative to the working directory.
DEFAULT_DATA_DIR = (
    _PROJECT_ROOT / "data" / "nflverse"
    if (_PROJECT_ROOT / "pyproject.toml").is_file()
    else Path("data") / "nflverse"
)

PLAYER_FILE_STEMS = ("player_stats_{season}", "stats_player_week_{season}")
SCHEDULE_FILE_STEM = "games"
FILE_SUFFIXES = (".csv", ".csv.gz", ".parquet")
_PLAYER_FILE_PATTERN = re.compile(
    r"^(?:player_stats|stats_player_week)_(\d{4})(?:\.csv|\.csv\.gz|\.parquet)$"
)

# Newer nflverse column name -> canonical name used throughout the package.
COLUMN_ALIASES = {
    "recent_team": "team",
    "passing_interceptions": "interceptions",
    "sacks_suffered": "sacks",
    "sack_yards_lost": "sack_yards",
}

PLAYER_ID_COLUMNS = (
    "player_id",
    "player_name",
    "position_group",
    "team",
    "opponent_team",
    "season_type",
)
PLAYER_INT_COLUMNS = ("season", "week")
PLAYER_STAT_COLUMNS = ("carries", "rushing_yards", "receptions", "targets", "receiving_yards")
PLAYER_REQUIRED_COLUMNS = PLAYER_ID_COLUMNS + PLAYER_INT_COLUMNS + PLAYER_STAT_COLUMNS
# Columns that may not be empty in any row: the row key, the teams and the rushing outcome.
PLAYER_NOT_NULL_COLUMNS = (
    "player_id",
    "team",
    "opponent_team",
    "season_type",
    "season",
    "week",
    "carries",
    "rushing_yards",
)
PLAYER_KEY = ("player_id", "season", "week")
SEASON_TYPES = ("REG", "POST")

SCHEDULE_TEXT_COLUMNS = ("game_id", "game_type", "away_team", "home_team")
SCHEDULE_INT_COLUMNS = ("season", "week")
# Lines and rest days may be empty for games not yet played or not yet priced.
SCHEDULE_FLOAT_COLUMNS = ("spread_line", "total_line", "away_rest", "home_rest")
SCHEDULE_REQUIRED_COLUMNS = SCHEDULE_TEXT_COLUMNS + SCHEDULE_INT_COLUMNS + SCHEDULE_FLOAT_COLUMNS
SCHEDULE_OPTIONAL_FLOAT_COLUMNS = ("away_score", "home_score", "result", "total")

_HOW_TO_PROVIDE = (
    f"put the nflverse files there, point the {ENV_VAR} environment variable or the "
    "data.nflverse_dir parameter at a folder that has them, or go online and load with "
    "download enabled so that nflreadpy fetches them"
)


class DataError(ValueError):
    """Invalid data file: missing columns, non-numeric values, duplicate rows or no rows."""


class DataNotFoundError(DataError):
    """Data files that are missing and could not be downloaded."""


def resolve_data_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    """Choose the nflverse data folder.

    Parameters
    ----------
    configured : str or path-like, optional
        Folder from the parameters (``data.nflverse_dir``). Takes precedence when given.

    Returns
    -------
    Path
        ``configured`` when given, else the ``NFLVERSE_DIR`` environment variable when set and
        not empty, else ``data/nflverse`` in the project checkout. The folder need not exist.
    """
    if configured is not None and str(configured) != "":
        source, folder = "parameter", Path(configured)
    elif os.environ.get(ENV_VAR):
        source, folder = ENV_VAR, Path(os.environ[ENV_VAR])
    else:
        source, folder = "default", DEFAULT_DATA_DIR
    folder = folder.expanduser()
    logger.debug("nflverse data folder %s (from %s)", folder, source)
    return folder


def discover_seasons(data_dir: str | os.PathLike[str]) -> list[int]:
    """List the seasons that have a player statistics file in ``data_dir``.

    Parameters
    ----------
    data_dir : str or path-like
        Folder to scan. A folder that does not exist has no seasons.

    Returns
    -------
    list of int
        Sorted seasons with a ``player_stats_{season}`` or ``stats_player_week_{season}`` file.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        return []
    seasons = set()
    for path in folder.iterdir():
        match = _PLAYER_FILE_PATTERN.match(path.name)
        if match and path.is_file():
            seasons.add(int(match.group(1)))
    return sorted(seasons)


def player_file_names(season: int) -> list[str]:
    """Return every accepted file name for one season's player statistics."""
    return [
        stem.format(season=season) + suffix
        for stem in PLAYER_FILE_STEMS
        for suffix in FILE_SUFFIXES
    ]


def schedule_file_names() -> list[str]:
    """Return every accepted file name for the schedule."""
    return [SCHEDULE_FILE_STEM + suffix for suffix in FILE_SUFFIXES]


def _find_one(folder: Path, names: Sequence[str]) -> Path | None:
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) > 1:
        listed = ", ".join(path.name for path in found)
        raise DataError(
            f"{folder} has more than one file for the same data ({listed}); the copies may "
            "differ, so keep one and remove or rename the others"
        )
    return found[0] if found else None


def find_player_file(data_dir: str | os.PathLike[str], season: int) -> Path | None:
    """Return the player statistics file of ``season`` in ``data_dir``, or None when missing.

    Raises
    ------
    DataError
        When the folder has more than one accepted file for the season.
    """
    return _find_one(Path(data_dir), player_file_names(season))


def find_schedule_file(data_dir: str | os.PathLike[str]) -> Path | None:
    """Return the schedule file in ``data_dir``, or None when missing.

    Raises
    ------
    DataError
        When the folder has more than one accepted schedule file.
    """
    return _find_one(Path(data_dir), schedule_file_names())


def _write_csv_atomic(frame: object, path: Path) -> None:
    """Write a polars frame as csv under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part")
    frame.write_csv(temporary)  # type: ignore[attr-defined]
    temporary.replace(path)


def download_player_stats(data_dir: Path, seasons: Iterable[int]) -> list[Path]:
    """Download weekly player statistics with nflreadpy and write one csv per season.

    Parameters
    ----------
    data_dir : Path
        Folder to write ``stats_player_week_{season}.csv`` into. Created when missing.
    seasons : iterable of int
        Seasons to download.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ImportError, ConnectionError, OSError, ValueError
        When nflreadpy is missing, the download fails or the result cannot be written.
    """
    import nflreadpy  # noqa: PLC0415 (optional at run time: needed only when files are missing)

    written = []
    for season in sorted(set(seasons)):
        logger.info("downloading nflverse weekly player statistics for %d", season)
        frame = nflreadpy.load_player_stats(seasons=[season], summary_level="week")
        path = data_dir / f"stats_player_week_{season}.csv"
        _write_csv_atomic(frame, path)
        logger.info("wrote %s (%d rows)", path, frame.height)
        written.append(path)
    return written


def download_schedule(data_dir: Path) -> Path:
    """Download the nflverse schedule with nflreadpy and write it as ``games.csv``.

    Parameters
    ----------
    data_dir : Path
        Folder to write into. Created when missing.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ImportError, ConnectionError, OSError, ValueError
        When nflreadpy is missing, the download fails or the result cannot be written.
    """
    import nflreadpy  # noqa: PLC0415

    logger.info("downloading the nflverse schedule")
    frame = nflreadpy.load_schedules(seasons=True)
    path = data_dir / f"{SCHEDULE_FILE_STEM}.csv"
    _write_csv_atomic(frame, path)
    logger.info("wrote %s (%d rows)", path, frame.height)
    return path


# nflreadpy 0.1.5 turns request failures into ConnectionError and parse failures into ValueError.
_DOWNLOAD_ERRORS = (ImportError, ConnectionError, OSError, ValueError)


def _not_found(folder: Path, names: Sequence[str], tried: str) -> str:
    looked_for = ", ".join(names)
    return (
        f"missing nflverse files in {folder}: looked for {looked_for}; {tried}. "
        f"To fix: {_HOW_TO_PROVIDE}"
    )


def _download_outcome(download: bool, cause: str | None) -> str:
    if not download:
        return "download is disabled (download=False, parameter data.download)"
    return f"downloading them with nflreadpy failed: {cause}"


def _read_table(path: Path) -> pd.DataFrame:
    """Read a csv, gzip-compressed csv or parquet file."""
    try:
        if path.name.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"{path}: could not be read ({error}); replace the file") from error


def _apply_aliases(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    renames = {}
    for alias, canonical in COLUMN_ALIASES.items():
        if alias in frame.columns and canonical not in frame.columns:
            renames[alias] = canonical
        elif alias in frame.columns:
            logger.debug("%s has both %s and %s; keeping %s", path, alias, canonical, canonical)
    return frame.rename(columns=renames)


def _require_columns(frame: pd.DataFrame, path: Path, required: Sequence[str]) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:60]))
        raise DataError(
            f"{path}: missing required columns {missing} (found: {found}); the file must be a "
            "weekly nflverse player statistics or schedule file, so replace it"
        )


def _to_numeric(frame: pd.DataFrame, path: Path, columns: Sequence[str], *, integer: bool) -> None:
    """Convert ``columns`` in place, raising on values that are not numbers."""
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if integer:
            bad |= values.notna() & (values != values.round())
        if bad.any():
            examples = frame.loc[bad, column].astype(str).unique()[:5].tolist()
            rows = (frame.index[bad][:5] + 2).tolist()  # file line numbers: header is line 1
            kind = "whole numbers" if integer else "numbers"
            raise DataError(
                f"{path}: column {column!r} must hold {kind} but has {examples} (lines {rows}, "
                f"{int(bad.sum())} rows in all); fix or replace the file"
            )
        frame[column] = values.astype("Int64" if integer else "float64")


def _require_not_null(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    for column in columns:
        empty = frame[column].isna()
        if empty.any():
            rows = (frame.index[empty][:5] + 2).tolist()
            raise DataError(
                f"{path}: column {column!r} is empty in {int(empty.sum())} rows (lines {rows}); "
                "fix or replace the file"
            )


def _read_player_file(path: Path, season: int) -> pd.DataFrame:
    frame = _read_table(path).reset_index(drop=True)
    frame = _apply_aliases(frame, path)
    _require_columns(frame, path, PLAYER_REQUIRED_COLUMNS)
    if frame.empty:
        raise DataError(f"{path}: has no rows; replace the file with the season's statistics")
    _to_numeric(frame, path, PLAYER_INT_COLUMNS, integer=True)
    _to_numeric(frame, path, PLAYER_STAT_COLUMNS, integer=False)
    _require_not_null(frame, path, PLAYER_NOT_NULL_COLUMNS)
    frame["season"] = frame["season"].astype("int64")
    frame["week"] = frame["week"].astype("int64")

    other_seasons = sorted({int(value) for value in frame["season"].unique()} - {season})
    if other_seasons:
        raise DataError(
            f"{path}: column 'season' has {other_seasons} but the file name is for season "
            f"{season}; rename the file or remove those rows"
        )
    bad_types = sorted(set(frame["season_type"].astype(str).unique()) - set(SEASON_TYPES))
    if bad_types:
        raise DataError(
            f"{path}: column 'season_type' has {bad_types}, expected only {list(SEASON_TYPES)}; "
            "use a weekly file (summary level 'week')"
        )
    duplicated = frame.duplicated(list(PLAYER_KEY), keep=False)
    if duplicated.any():
        examples = frame.loc[duplicated, list(PLAYER_KEY)].drop_duplicates().head(3)
        listed = "; ".join(
            f"{row.player_id} week {row.week}" for row in examples.itertuples(index=False)
        )
        raise DataError(
            f"{path}: {int(duplicated.sum())} rows repeat a player-game in columns "
            f"{list(PLAYER_KEY)} (for example {listed}); keep one row per player and week"
        )
    for column in ("player_id", "player_name", "position_group", "team", "opponent_team"):
        frame[column] = frame[column].astype("str")
    frame["season_type"] = frame["season_type"].astype("str")
    if "game_id" in frame.columns:
        frame["game_id"] = frame["game_id"].astype("str")
    return frame


def load_player_weeks(
    data_dir: str | os.PathLike[str],
    seasons: Iterable[int] | None = None,
    *,
    download: bool = True,
) -> pd.DataFrame:
    """Load weekly player statistics, one row per player and game, with canonical columns.

    Parameters
    ----------
    data_dir : str or path-like
        Folder with the player statistics files (see :func:`resolve_data_dir`).
    seasons : iterable of int, optional
        Seasons to load. None loads every season found by :func:`discover_seasons`.
    download : bool, default True
        Download missing seasons with nflreadpy into ``data_dir`` before giving up.

    Returns
    -------
    pandas.DataFrame
        Rows sorted by season, week and player_id. Columns start with player_id, player_name,
        position_group, team, opponent_team, season and week (int64), season_type ("REG" or
        "POST"), carries, rushing_yards, receptions, targets and receiving_yards (float64),
        then game_id when the files have it, then every other column of the files.

    Raises
    ------
    DataNotFoundError
        When a season's file is missing and could not be downloaded, or when ``seasons`` is None,
        the folder has no player file and ``download`` is false. With ``download`` true, an
        empty folder gets :data:`DOWNLOAD_SEASONS`.
    DataError
        When a file lacks a required column, has non-numeric or empty values where numbers are
        required, repeats a (player_id, season, week) row, or has no rows.
    """
    folder = Path(data_dir)
    if seasons is None:
        requested = discover_seasons(folder)
        if not requested and download:
            # An empty folder with downloads allowed gets the study's seasons.
            logger.info("no player files in %s; downloading seasons %s", folder, DOWNLOAD_SEASONS)
            requested = list(DOWNLOAD_SEASONS)
        if not requested:
            raise DataNotFoundError(
                f"no nflverse player statistics files in {folder} (looked for "
                "player_stats_{season} and stats_player_week_{season} as .csv, .csv.gz or "
                f".parquet). To fix: {_HOW_TO_PROVIDE}; to download, list the seasons in "
                "data.seasons"
            )
    else:
        requested = sorted({int(season) for season in seasons})
        if not requested:
            raise DataError("seasons is empty; list at least one season or pass None")

    paths = {season: find_player_file(folder, season) for season in requested}
    missing = [season for season, path in paths.items() if path is None]
    if missing:
        names = [name for season in missing for name in player_file_names(season)]
        cause = None
        if download:
            try:
                download_player_stats(folder, missing)
            except _DOWNLOAD_ERRORS as error:
                cause = f"{type(error).__name__}: {error}"
                logger.warning("nflreadpy download of seasons %s failed: %s", missing, cause)
        if cause is not None or not download:
            raise DataNotFoundError(_not_found(folder, names, _download_outcome(download, cause)))
        paths.update({season: find_player_file(folder, season) for season in missing})

    frames = []
    for season, path in paths.items():
        if path is None:
            tried = "nflreadpy returned without writing them"
            raise DataNotFoundError(_not_found(folder, player_file_names(season), tried))
        frame = _read_player_file(path, season)
        logger.info("read %s: %d rows", path, len(frame))
        frames.append(frame)
    combined = pd.concat(frames, ignore_index=True, sort=False)
    front = list(PLAYER_REQUIRED_COLUMNS[:5]) + ["season", "week", "season_type"]
    front += list(PLAYER_STAT_COLUMNS)
    if "game_id" in combined.columns:
        front.append("game_id")
    ordered = front + [column for column in combined.columns if column not in front]
    combined = combined[ordered].sort_values(["season", "week", "player_id"], kind="stable")
    return combined.reset_index(drop=True)


def load_schedule(data_dir: str | os.PathLike[str], *, download: bool = True) -> pd.DataFrame:
    """Load the nflverse schedule (one row per game, with closing lines and rest days).

    Parameters
    ----------
    data_dir : str or path-like
        Folder with ``games.csv``, ``games.csv.gz`` or ``games.parquet``.
    download : bool, default True
        Download the schedule with nflreadpy into ``data_dir`` when it is missing.

    Returns
    -------
    pandas.DataFrame
        Every column of the file. Season and week are int64. Spread_line, total_line, away_rest,
        home_rest and the scores (when present) are float64. Team codes and game_id are strings.

    Raises
    ------
    DataNotFoundError
        When the file is missing and could not be downloaded.
    DataError
        When a required column is missing, a numeric column has non-numeric values, a game_id
        repeats, or the file has no rows.
    """
    folder = Path(data_dir)
    path = find_schedule_file(folder)
    if path is None:
        cause = None
        if download:
            try:
                path = download_schedule(folder)
            except _DOWNLOAD_ERRORS as error:
                cause = f"{type(error).__name__}: {error}"
                logger.warning("nflreadpy download of the schedule failed: %s", cause)
        if path is None:
            tried = _download_outcome(download, cause)
            raise DataNotFoundError(_not_found(folder, schedule_file_names(), tried))

    frame = _read_table(path).reset_index(drop=True)
    _require_columns(frame, path, SCHEDULE_REQUIRED_COLUMNS)
    if frame.empty:
        raise DataError(f"{path}: has no rows; replace it with the nflverse schedule")
    _to_numeric(frame, path, SCHEDULE_INT_COLUMNS, integer=True)
    floats = SCHEDULE_FLOAT_COLUMNS + tuple(
        column for column in SCHEDULE_OPTIONAL_FLOAT_COLUMNS if column in frame.columns
    )
    _to_numeric(frame, path, floats, integer=False)
    _require_not_null(frame, path, SCHEDULE_TEXT_COLUMNS + SCHEDULE_INT_COLUMNS)
    frame["season"] = frame["season"].astype("int64")
    frame["week"] = frame["week"].astype("int64")
    for column in SCHEDULE_TEXT_COLUMNS:
        frame[column] = frame[column].astype("str")
    repeated = frame["game_id"].duplicated(keep=False)
    if repeated.any():
        examples = frame.loc[repeated, "game_id"].unique()[:3].tolist()
        raise DataError(f"{path}: column 'game_id' repeats {examples}; keep one row per game")
    logger.info("read %s: %d games", path, len(frame))
    return frame


_NO_DOWNLOAD = "checksums are computed on existing files only"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(
    data_dir: str | os.PathLike[str], seasons: Iterable[int] | None = None
) -> dict[str, str]:
    """Compute the SHA-256 of the data files that the loaders read.

    Parameters
    ----------
    data_dir : str or path-like
        Data folder.
    seasons : iterable of int, optional
        Seasons whose player files to include; None includes every season found.

    Returns
    -------
    dict of str to str
        File name to hexadecimal SHA-256, for each season's player file and the schedule, sorted
        by file name.

    Raises
    ------
    DataNotFoundError
        When a season's player file or the schedule is missing. Nothing is downloaded.
    """
    folder = Path(data_dir)
    requested = discover_seasons(folder) if seasons is None else sorted({int(s) for s in seasons})
    paths = []
    for season in requested:
        path = find_player_file(folder, season)
        if path is None:
            raise DataNotFoundError(_not_found(folder, player_file_names(season), _NO_DOWNLOAD))
        paths.append(path)
    schedule = find_schedule_file(folder)
    if schedule is None:
        raise DataNotFoundError(_not_found(folder, schedule_file_names(), _NO_DOWNLOAD))
    paths.append(schedule)
    return {path.name: _sha256(path) for path in sorted(paths, key=lambda p: p.name)}
