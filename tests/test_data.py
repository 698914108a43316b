"""Tests of the nflverse loaders: file names, formats, column names, errors and downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nflreadpy
import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import make_league
from rbyards import data
from rbyards.data import DataError, DataNotFoundError


def _season_frame(season: int = 2023) -> pd.DataFrame:
    player_weeks, _ = make_league(seasons=(season,), regular_weeks=3)
    return player_weeks.drop(columns=["game_id"])


def _schedule_frame() -> pd.DataFrame:
    _, schedule = make_league(seasons=(2023,), regular_weeks=3)
    return schedule


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)  # pandas compresses .csv.gz from the suffix
    return path


def _as_old_release(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename to the older nflverse release's names and add the renamed extra columns."""
    old = frame.rename(columns={"team": "recent_team"})
    old["interceptions"] = 0
    old["sacks"] = 1.0
    return old


def _as_new_release(frame: pd.DataFrame) -> pd.DataFrame:
    new = frame.copy()
    new["passing_interceptions"] = 0
    new["sacks_suffered"] = 1.0
    new["sack_yards_lost"] = 7.0
    new["game_id"] = "g"
    return new


# resolve_data_dir and discover_seasons


def test_resolve_data_dir_parameter_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("NFLVERSE_DIR", str(tmp_path / "from_env"))
    assert data.resolve_data_dir(str(tmp_path / "param")) == tmp_path / "param"


def test_resolve_data_dir_uses_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NFLVERSE_DIR", str(tmp_path / "from_env"))
    assert data.resolve_data_dir(None) == tmp_path / "from_env"
    assert data.resolve_data_dir("") == tmp_path / "from_env"


def test_resolve_data_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("NFLVERSE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    project_root = Path(__file__).resolve().parents[1]
    # Anchored in the checkout, not in the working directory (notebooks run from notebooks/).
    assert data.resolve_data_dir(None) == project_root / "data" / "nflverse"


def test_discover_seasons_mixed_names(tmp_path):
    for name in (
        "player_stats_2020.csv",
        "stats_player_week_2021.csv.gz",
        "player_stats_2022.parquet",
        "player_stats_2019.json",  # not an accepted format
        "stats_player_reg_2018.csv",  # season totals, not weekly
        "games.csv",
    ):
        (tmp_path / name).write_text("x")
    assert data.discover_seasons(tmp_path) == [2020, 2021, 2022]


def test_discover_seasons_missing_folder(tmp_path):
    assert data.discover_seasons(tmp_path / "absent") == []


# load_player_weeks: names, formats and column variants


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
@pytest.mark.parametrize("stem", ["player_stats_2023", "stats_player_week_2023"])
def test_load_player_weeks_file_variants(tmp_path, stem, suffix):
    expected = _season_frame()
    release = _as_old_release if stem.startswith("player_stats") else _as_new_release
    _write(release(expected), tmp_path / f"{stem}{suffix}")

    loaded = data.load_player_weeks(tmp_path, download=False)

    assert len(loaded) == len(expected)
    assert (
        loaded["team"].tolist()
        == expected.sort_values(["season", "week", "player_id"], kind="stable")["team"].tolist()
    )
    assert "recent_team" not in loaded.columns
    assert loaded["interceptions"].eq(0).all()
    assert loaded["sacks"].eq(1.0).all()
    assert loaded["season"].dtype == np.int64
    assert loaded["week"].dtype == np.int64
    assert loaded["carries"].dtype == np.float64
    assert loaded["rushing_yards"].sum() == expected["rushing_yards"].sum()


def test_load_player_weeks_keeps_game_id(tmp_path):
    _write(_as_new_release(_season_frame()), tmp_path / "stats_player_week_2023.csv")
    loaded = data.load_player_weeks(tmp_path, download=False)
    assert loaded["game_id"].eq("g").all()
    assert loaded["sack_yards"].eq(7.0).all()


def test_load_player_weeks_canonical_column_order(tmp_path):
    _write(_as_old_release(_season_frame()), tmp_path / "player_stats_2023.csv")
    loaded = data.load_player_weeks(tmp_path, download=False)
    assert loaded.columns[:13].tolist() == [
        "player_id",
        "player_name",
        "position_group",
        "team",
        "opponent_team",
        "season",
        "week",
        "season_type",
        "carries",
        "rushing_yards",
        "receptions",
        "targets",
        "receiving_yards",
    ]


def test_load_player_weeks_selects_seasons(tmp_path):
    _write(_season_frame(2022), tmp_path / "player_stats_2022.csv")
    _write(_season_frame(2023), tmp_path / "stats_player_week_2023.parquet")
    assert sorted(data.load_player_weeks(tmp_path, download=False)["season"].unique()) == [
        2022,
        2023,
    ]
    only = data.load_player_weeks(tmp_path, [2023], download=False)
    assert only["season"].unique().tolist() == [2023]


def test_load_player_weeks_sorted_by_week(tmp_path):
    shuffled = _season_frame().sample(frac=1.0, random_state=1)
    _write(shuffled, tmp_path / "player_stats_2023.csv")
    loaded = data.load_player_weeks(tmp_path, download=False)
    keys = list(zip(loaded["week"], loaded["player_id"], strict=True))
    assert keys == sorted(keys)


# load_player_weeks: errors


def test_missing_column_names_file_and_column(tmp_path):
    path = _write(
        _season_frame().drop(columns=["rushing_yards"]), tmp_path / "player_stats_2023.csv"
    )
    with pytest.raises(DataError, match="rushing_yards") as caught:
        data.load_player_weeks(tmp_path, download=False)
    assert str(path) in str(caught.value)


def test_non_numeric_carries_rejected(tmp_path):
    frame = _season_frame().astype({"carries": object})
    frame.loc[4, "carries"] = "twelve"
    path = _write(frame, tmp_path / "player_stats_2023.csv")
    with pytest.raises(DataError, match=r"'carries'.*twelve.*line.*6") as caught:
        data.load_player_weeks(tmp_path, download=False)
    assert str(path) in str(caught.value)


def test_fractional_week_rejected(tmp_path):
    frame = _season_frame().astype({"week": float})
    frame.loc[0, "week"] = 1.5
    _write(frame, tmp_path / "player_stats_2023.csv")
    with pytest.raises(DataError, match=r"'week' must hold whole numbers.*1\.5"):
        data.load_player_weeks(tmp_path, download=False)


def test_empty_rushing_yards_rejected(tmp_path):
    frame = _season_frame()
    frame.loc[3, "rushing_yards"] = np.nan
    _write(frame, tmp_path / "player_stats_2023.csv")
    with pytest.raises(DataError, match=r"'rushing_yards' is empty in 1 rows"):
        data.load_player_weeks(tmp_path, download=False)


def test_duplicate_player_game_rejected(tmp_path):
    frame = _season_frame()
    frame = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)
    path = _write(frame, tmp_path / "player_stats_2023.csv")
    repeated = frame.iloc[5]
    with pytest.raises(DataError, match="repeat a player-game") as caught:
        data.load_player_weeks(tmp_path, download=False)
    assert f"{repeated['player_id']} week {repeated['week']}" in str(caught.value)
    assert str(path) in str(caught.value)


def test_header_only_file_rejected(tmp_path):
    _write(_season_frame().iloc[:0], tmp_path / "player_stats_2023.csv")
    with pytest.raises(DataError, match="has no rows"):
        data.load_player_weeks(tmp_path, download=False)


def test_season_not_matching_file_name(tmp_path):
    _write(_season_frame(2022), tmp_path / "player_stats_2023.csv")
    with pytest.raises(DataError, match=r"\[2022\] but the file name is for season 2023"):
        data.load_player_weeks(tmp_path, download=False)


def test_season_totals_rejected(tmp_path):
    frame = _season_frame()
    frame["season_type"] = "REG+POST"
    _write(frame, tmp_path / "player_stats_2023.csv")
    with pytest.raises(DataError, match=r"season_type.*REG\+POST"):
        data.load_player_weeks(tmp_path, download=False)


def test_two_files_for_one_season_rejected(tmp_path):
    _write(_season_frame(), tmp_path / "player_stats_2023.csv")
    _write(_season_frame(), tmp_path / "stats_player_week_2023.parquet")
    with pytest.raises(DataError, match="player_stats_2023.csv, stats_player_week_2023.parquet"):
        data.load_player_weeks(tmp_path, download=False)


def test_empty_seasons_list_rejected(tmp_path):
    with pytest.raises(DataError, match="seasons is empty"):
        data.load_player_weeks(tmp_path, [], download=False)


def test_missing_season_without_download(tmp_path):
    with pytest.raises(DataNotFoundError) as caught:
        data.load_player_weeks(tmp_path, [2023], download=False)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "player_stats_2023.csv" in message
    assert "stats_player_week_2023.parquet" in message
    assert "NFLVERSE_DIR" in message
    assert "download is disabled" in message


def test_no_files_and_no_seasons(tmp_path):
    with pytest.raises(DataNotFoundError, match="no nflverse player statistics files"):
        data.load_player_weeks(tmp_path, download=False)


def test_empty_folder_downloads_study_seasons(tmp_path, monkeypatch):
    requested = []

    def offline(seasons, summary_level):
        requested.append(seasons)
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(nflreadpy, "load_player_stats", offline)
    with pytest.raises(DataNotFoundError, match="nflreadpy failed: ConnectionError") as caught:
        data.load_player_weeks(tmp_path)
    # Seasons are fetched one by one, and the first failure stops the download.
    assert requested == [[2020]]
    assert "player_stats_2020.csv" in str(caught.value)
    assert "player_stats_2024.csv" in str(caught.value)


def test_failed_download_raises_not_found(tmp_path, monkeypatch):
    requested = []

    def offline(seasons, summary_level):
        requested.append((seasons, summary_level))
        raise ConnectionError("Failed to download stats_player_week_2023.parquet")

    monkeypatch.setattr(nflreadpy, "load_player_stats", offline)
    with pytest.raises(DataNotFoundError) as caught:
        data.load_player_weeks(tmp_path, [2023])
    message = str(caught.value)
    assert "nflreadpy failed: ConnectionError" in message
    assert "player_stats_2023.csv" in message
    assert "data.nflverse_dir" in message
    assert requested == [([2023], "week")]


def test_download_writes_csv_and_loads(tmp_path, monkeypatch):
    frame = _as_new_release(_season_frame())

    def fake_load(seasons, summary_level):
        assert seasons == [2023]
        return pl.from_pandas(frame)

    monkeypatch.setattr(nflreadpy, "load_player_stats", fake_load)
    folder = tmp_path / "new"
    loaded = data.load_player_weeks(folder, [2023])

    assert (folder / "stats_player_week_2023.csv").is_file()
    assert not list(folder.glob("*.part"))
    assert len(loaded) == len(frame)
    assert (
        loaded["team"].tolist()
        == frame.sort_values(["season", "week", "player_id"], kind="stable")["team"].tolist()
    )


def test_download_only_missing_seasons(tmp_path, monkeypatch):
    _write(_season_frame(2022), tmp_path / "player_stats_2022.csv")
    requested = []

    def fake_load(seasons, summary_level):
        requested.extend(seasons)
        return pl.from_pandas(_season_frame(seasons[0]))

    monkeypatch.setattr(nflreadpy, "load_player_stats", fake_load)
    loaded = data.load_player_weeks(tmp_path, [2022, 2023])
    assert requested == [2023]
    assert sorted(loaded["season"].unique()) == [2022, 2023]


# load_schedule


@pytest.mark.parametrize("name", ["games.csv", "games.csv.gz", "games.parquet"])
def test_load_schedule_formats(tmp_path, name):
    expected = _schedule_frame()
    _write(expected, tmp_path / name)
    schedule = data.load_schedule(tmp_path, download=False)
    assert len(schedule) == len(expected)
    assert schedule["spread_line"].tolist() == expected["spread_line"].tolist()
    assert schedule["week"].dtype == np.int64


def test_schedule_allows_missing_lines(tmp_path):
    frame = _schedule_frame()
    frame.loc[0, ["spread_line", "total_line", "home_score"]] = np.nan
    _write(frame, tmp_path / "games.csv")
    schedule = data.load_schedule(tmp_path, download=False)
    assert np.isnan(schedule.loc[0, "spread_line"])


def test_schedule_non_numeric_spread(tmp_path):
    frame = _schedule_frame().astype({"spread_line": object})
    frame.loc[1, "spread_line"] = "PK"
    path = _write(frame, tmp_path / "games.csv")
    with pytest.raises(DataError, match=r"'spread_line'.*PK") as caught:
        data.load_schedule(tmp_path, download=False)
    assert str(path) in str(caught.value)


def test_schedule_missing_column(tmp_path):
    _write(_schedule_frame().drop(columns=["home_rest"]), tmp_path / "games.csv")
    with pytest.raises(DataError, match=r"missing required columns \['home_rest'\]"):
        data.load_schedule(tmp_path, download=False)


def test_schedule_repeated_game_id(tmp_path):
    frame = _schedule_frame()
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    _write(frame, tmp_path / "games.csv")
    with pytest.raises(DataError, match=f"repeats \\['{frame.loc[0, 'game_id']}'\\]"):
        data.load_schedule(tmp_path, download=False)


def test_schedule_missing_without_download(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"looked for games.csv, games.csv.gz"):
        data.load_schedule(tmp_path, download=False)


def test_schedule_failed_download(tmp_path, monkeypatch):
    def offline(seasons=True):
        raise ConnectionError("Failed to download schedules/games.parquet")

    monkeypatch.setattr(nflreadpy, "load_schedules", offline)
    with pytest.raises(DataNotFoundError, match="nflreadpy failed: ConnectionError"):
        data.load_schedule(tmp_path)


def test_schedule_download_writes_games_csv(tmp_path, monkeypatch):
    expected = _schedule_frame()
    monkeypatch.setattr(nflreadpy, "load_schedules", lambda seasons=True: pl.from_pandas(expected))
    schedule = data.load_schedule(tmp_path)
    assert (tmp_path / "games.csv").is_file()
    assert schedule["game_id"].tolist() == expected["game_id"].tolist()


# file_checksums


def test_file_checksums_of_used_files(tmp_path):
    (tmp_path / "player_stats_2023.csv").write_bytes(b"abc")
    (tmp_path / "stats_player_week_2024.csv.gz").write_bytes(b"")
    (tmp_path / "games.parquet").write_bytes(b"abc")
    checksums = data.file_checksums(tmp_path, [2023])
    # SHA-256 test vector of "abc" (FIPS 180-2).
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert checksums == {"games.parquet": abc, "player_stats_2023.csv": abc}
    every = data.file_checksums(tmp_path)
    assert every["stats_player_week_2024.csv.gz"] == hashlib.sha256(b"").hexdigest()


def test_file_checksums_missing_file(tmp_path):
    (tmp_path / "games.csv").write_bytes(b"abc")
    with pytest.raises(DataNotFoundError, match="player_stats_2023.csv"):
        data.file_checksums(tmp_path, [2023])


# real data


@pytest.mark.realdata
def test_real_player_weeks(real_data_dir):
    player_weeks = data.load_player_weeks(real_data_dir, download=False)
    assert data.discover_seasons(real_data_dir)[:5] == [2020, 2021, 2022, 2023, 2024]
    five = player_weeks[player_weeks["season"].between(2020, 2024)]
    assert len(five) == 25_923
    assert not five.duplicated(["player_id", "season", "week"]).any()
    assert set(five["season_type"]) == {"REG", "POST"}
    backs = five[(five["position_group"] == "RB") & (five["carries"] >= 5)]
    assert len(backs) == 4_174


@pytest.mark.realdata
def test_real_schedule(real_data_dir):
    schedule = data.load_schedule(real_data_dir, download=False)
    played = schedule[schedule["season"].between(2020, 2024)]
    # 13 playoff games a season; 256 regular season games in 2020, 272 from 2021, except 271
    # in 2022 because Buffalo at Cincinnati (week 17) was cancelled.
    assert len(played) == 256 + 272 * 3 + 271 + 13 * 5
    assert played["spread_line"].notna().all()
