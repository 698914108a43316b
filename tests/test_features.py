"""Tests of build_dataset: exact feature values, gap fill, split, tiers and leakage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from rbyards import data
from rbyards.data import DataError
from rbyards.features import (
    PREGAME_FEATURES,
    SEED_FEATURES,
    Dataset,
    build_dataset,
    modelled_weeks,
)

# Hand-built two-team league: AAA plays BBB every week. 2023 has REG weeks 1-4 and one POST
# week numbered 19; 2024 has REG weeks 1-3. (player_id, group, team, season, week, carries,
# rushing_yards). P1 has a 3-carry game (not qualifying) in 2023 week 2; P2 has a 4-carry game.
# W1 (a WR) and Q1 (a QB) run the ball but are never modelled or counted as RB yards allowed.
HAND_ROWS = [
    ("P1", "RB", "AAA", 2023, 1, 10, 40),
    ("P1", "RB", "AAA", 2023, 2, 3, 30),
    ("P1", "RB", "AAA", 2023, 3, 12, 60),
    ("P1", "RB", "AAA", 2023, 4, 8, 20),
    ("P1", "RB", "AAA", 2023, 19, 15, 100),
    ("P1", "RB", "AAA", 2024, 1, 20, 80),
    ("P1", "RB", "AAA", 2024, 2, 6, -5),
    ("P1", "RB", "AAA", 2024, 3, 10, 50),
    ("P2", "RB", "BBB", 2023, 1, 5, 10),
    ("P2", "RB", "BBB", 2023, 2, 4, 50),
    ("P2", "RB", "BBB", 2023, 4, 20, 90),
    ("P2", "RB", "BBB", 2023, 19, 8, 14),
    ("P2", "RB", "BBB", 2024, 3, 9, 27),
]
HAND_WEEKS = [
    (2023, 1),
    (2023, 2),
    (2023, 3),
    (2023, 4),
    (2023, 19),
    (2024, 1),
    (2024, 2),
    (2024, 3),
]
# spread_line per game (positive: home team favoured). AAA is at home in odd weeks.
HAND_SPREADS = [3.0, -2.5, 7.0, 1.0, 4.5, -1.0, 6.0, 2.0]
HAND_TOTALS = [44.0, 41.5, 47.0, 39.0, 50.5, 43.0, 45.5, 42.0]


def _hand_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = list(HAND_ROWS)
    for season, week in HAND_WEEKS:
        rows.append(("W1", "WR", "AAA", season, week, 6, 25))
        rows.append(("Q1", "QB", "BBB", season, week, 7, 35))
    player_weeks = pd.DataFrame(
        rows,
        columns=["player_id", "position_group", "team", "season", "week", "carries", "yards"],
    ).rename(columns={"yards": "rushing_yards"})
    player_weeks["player_name"] = player_weeks["player_id"]
    player_weeks["opponent_team"] = player_weeks["team"].map({"AAA": "BBB", "BBB": "AAA"})
    player_weeks["season_type"] = np.where(player_weeks["week"] > 18, "POST", "REG")
    player_weeks[["receptions", "targets", "receiving_yards"]] = 1.0
    player_weeks[["carries", "rushing_yards"]] = player_weeks[["carries", "rushing_yards"]].astype(
        float
    )

    games = []
    for (season, week), spread, total in zip(HAND_WEEKS, HAND_SPREADS, HAND_TOTALS, strict=True):
        home, away = ("AAA", "BBB") if week % 2 else ("BBB", "AAA")
        games.append(
            {
                "game_id": f"{season}_{week:02d}_{away}_{home}",
                "season": season,
                "game_type": "WC" if week > 18 else "REG",
                "week": week,
                "away_team": away,
                "home_team": home,
                "spread_line": spread,
                "total_line": total,
                "away_rest": 13.0 if (season, week) == (2023, 4) else 6.0,
                "home_rest": 10.0 if (season, week) == (2023, 4) else 7.0,
            }
        )
    return player_weeks, pd.DataFrame(games)


def _hand_dataset(feature_set: str = "seed", **kwargs) -> Dataset:
    player_weeks, schedule = _hand_tables()
    settings = {"test_season": 2024, "test_start_week": 3, "feature_set": feature_set}
    settings.update(kwargs)
    return build_dataset(player_weeks, schedule, **settings)


def _column(dataset, player_id: str, column: str) -> list[float]:
    rows = dataset.frame[dataset.frame["player_id"] == player_id]
    return rows[column].round(4).tolist()


# Exact feature values on the hand-built league


def test_modelled_rows_are_qualifying_backs():
    dataset = _hand_dataset()
    assert dataset.frame["player_id"].value_counts().to_dict() == {"P1": 7, "P2": 4}
    assert _column(dataset, "P1", "week") == [1, 3, 4, 19, 1, 2, 3]
    assert dataset.frame.loc[0, "row_id"] == "P1_2023_01"
    assert _column(dataset, "P1", "season_type") == ["REG"] * 3 + ["POST"] + ["REG"] * 3


def test_seed_features_exact():
    dataset = _hand_dataset()
    assert dataset.feature_names == SEED_FEATURES
    assert _column(dataset, "P1", "carries") == [10, 12, 8, 15, 20, 6, 10]
    # Previous three qualifying games, across the season boundary and the POST week; the
    # 3-carry game is skipped. The first game is filled with the training median, 50.
    assert _column(dataset, "P1", "avg_rushing_l3") == [50, 40, 50, 40, 60, 66.6667, 58.3333]
    assert _column(dataset, "P2", "avg_rushing_l3") == [50, 10, 50, 38]
    # Earlier qualifying games of the same season; first games are filled with 45.
    assert _column(dataset, "P1", "season_avg") == [45, 40, 50, 40, 45, 80, 37.5]
    assert _column(dataset, "P2", "season_avg") == [45, 10, 50, 45]


def test_gap_fill_uses_training_rows_only():
    dataset = _hand_dataset()
    # Training season_avg values: 40, 50, 40, 80 (P1) and 10, 50 (P2): median 45. Counting the
    # test row of P1 (37.5) would give 40.
    assert dataset.fill_values["season_avg"] == 45.0
    assert dataset.fill_values["avg_rushing_l3"] == 50.0
    assert dataset.fill_values["expected_carries"] == 11.0
    test_p2 = dataset.test[dataset.test["player_id"] == "P2"]
    assert test_p2["season_avg"].tolist() == [45.0]


def test_gap_fill_ignores_calibration_rows():
    dataset = _hand_dataset(calibration_weeks=2)
    # Calibration takes 2024 weeks 1-2, leaving season_avg 40, 50, 40 (P1) and 10, 50 (P2).
    assert dataset.calibration[["season", "week"]].drop_duplicates().values.tolist() == [
        [2024, 1],
        [2024, 2],
    ]
    assert dataset.fill_values["season_avg"] == 40.0
    assert _column(dataset, "P1", "season_avg")[4] == 40.0


def test_pregame_history_features_exact():
    dataset = _hand_dataset("pregame")
    assert dataset.feature_names == PREGAME_FEATURES
    assert _column(dataset, "P1", "expected_carries") == [11, 10, 11, 10, 11.6667, 14.3333, 13.6667]
    assert _column(dataset, "P2", "expected_carries") == [11, 5, 12.5, 11]
    assert _column(dataset, "P1", "games_played_season") == [0, 1, 2, 3, 0, 1, 2]
    assert _column(dataset, "P2", "games_played_season") == [0, 1, 2, 0]


def test_pregame_lines_signed_for_team():
    dataset = _hand_dataset("pregame")
    assert _column(dataset, "P1", "home") == [1, 1, 0, 1, 1, 0, 1]
    assert _column(dataset, "P1", "team_spread") == [3.0, 7.0, -1.0, 4.5, -1.0, -6.0, 2.0]
    assert _column(dataset, "P2", "team_spread") == [-3.0, 1.0, -4.5, -2.0]
    assert _column(dataset, "P1", "total_line") == [44.0, 47.0, 39.0, 50.5, 43.0, 45.5, 42.0]
    assert _column(dataset, "P1", "rest_days") == [7, 7, 13, 7, 7, 6, 7]
    assert _column(dataset, "P2", "rest_days") == [6, 10, 6, 6]
    assert _column(dataset, "P1", "game_id")[:2] == ["2023_01_BBB_AAA", "2023_03_BBB_AAA"]


def test_pregame_opponent_yards_allowed():
    dataset = _hand_dataset("pregame")
    # BBB allowed 40, 30, 60, 20, 100 RB yards in 2023 (the 3-carry game counts, the WR's
    # carries do not), and 80, -5 before 2024 week 3.
    assert _column(dataset, "P1", "opponent_rush_yards_allowed") == [
        40.4167,
        35.0,
        43.3333,
        37.5,
        40.4167,
        80.0,
        37.5,
    ]
    # AAA allowed 10 and 50 (P2's 4-carry game counts) before week 4, then 90.
    assert _column(dataset, "P2", "opponent_rush_yards_allowed") == [40.4167, 30.0, 50.0, 40.4167]
    assert dataset.fill_values["opponent_rush_yards_allowed"] == pytest.approx(40.416667)


def test_missing_spread_filled_from_training():
    player_weeks, schedule = _hand_tables()
    schedule.loc[schedule["week"] == 3, "spread_line"] = np.nan
    dataset = build_dataset(
        player_weeks, schedule, test_season=2024, test_start_week=3, feature_set="pregame"
    )
    # Training team_spread of P1: -1, 4.5, -1, -6 and of P2: -3, 1, -4.5 (week 3 is missing).
    assert dataset.fill_values["team_spread"] == -1.0
    assert _column(dataset, "P1", "team_spread")[1] == -1.0
    assert not dataset.frame[list(PREGAME_FEATURES)].isna().any().any()


def test_tiers_cut_at_training_tertiles():
    dataset = _hand_dataset()
    # Training expected_carries after fill: 5, 10, 10, 11, 11, 11, 11.67, 12.5, 14.33.
    assert dataset.tier_cuts == pytest.approx((10 + 2 / 3, 11 + 2 / 9))
    assert _column(dataset, "P1", "tier") == [
        "middle",
        "low",
        "middle",
        "low",
        "high",
        "high",
        "high",
    ]
    assert _column(dataset, "P2", "tier") == ["middle", "low", "high", "middle"]


# Split


def test_roles_with_calibration(league):
    player_weeks, schedule = league
    dataset = build_dataset(player_weeks, schedule, test_start_week=7, calibration_weeks=2)
    weeks = dataset.frame.groupby(["season", "week"])["role"].unique()
    assert all(len(roles) == 1 for roles in weeks)
    roles = {key: roles[0] for key, roles in weeks.items()}
    assert [key for key, role in roles.items() if role == "test"] == [(2024, 7), (2024, 8)]
    assert [key for key, role in roles.items() if role == "calibration"] == [(2024, 5), (2024, 6)]
    assert sum(role == "train" for role in roles.values()) == 9 + 4
    assert len(dataset.train) + len(dataset.calibration) + len(dataset.test) == len(dataset.frame)


def test_calibration_crosses_season_boundary(league):
    player_weeks, schedule = league
    dataset = build_dataset(player_weeks, schedule, test_start_week=1, calibration_weeks=2)
    held_out = dataset.calibration[["season", "week", "season_type"]].drop_duplicates()
    assert held_out.values.tolist() == [[2023, 8, "REG"], [2023, 9, "POST"]]
    assert dataset.test["season"].unique().tolist() == [2024]


def test_no_calibration_rows_by_default(league):
    dataset = build_dataset(*league)
    assert dataset.calibration.empty
    assert dataset.calibration_weeks == 0


def test_later_seasons_dropped(league_factory):
    player_weeks, schedule = league_factory(seasons=(2023, 2024, 2025))
    dataset = build_dataset(player_weeks, schedule, test_season=2024)
    assert sorted(dataset.frame["season"].unique()) == [2023, 2024]


def test_split_without_test_rows(league):
    with pytest.raises(ValueError, match=r"test_start_week = 20 leaves no test rows") as caught:
        build_dataset(*league, test_start_week=20)
    assert "2023 weeks 1-9; 2024 weeks 1-8" in str(caught.value)


def test_split_without_training_rows(league):
    with pytest.raises(ValueError, match=r"test_season = 2023.* leaves no training rows"):
        build_dataset(*league, test_season=2023, test_start_week=1)


def test_calibration_takes_all_training_weeks(league):
    with pytest.raises(ValueError, match=r"calibration_weeks = 15 .* has 15 weeks"):
        build_dataset(*league, test_start_week=7, calibration_weeks=15)


# Leakage


def _scramble_game(player_weeks: pd.DataFrame, season: int, week: int, teams: set[str]):
    """Replace one game's outcome columns with random values that keep its modelled rows."""
    rng = np.random.default_rng(7)
    scrambled = player_weeks.copy()
    in_game = (
        (scrambled["season"] == season)
        & (scrambled["week"] == week)
        & scrambled["team"].isin(teams)
    )
    modelled = in_game & (scrambled["position_group"] == "RB") & (scrambled["carries"] >= 5)
    count = int(in_game.sum())
    scrambled.loc[in_game, "rushing_yards"] = rng.integers(-5, 200, count).astype(float)
    scrambled.loc[in_game, "receptions"] = rng.integers(0, 10, count).astype(float)
    scrambled.loc[in_game, "targets"] = rng.integers(10, 15, count).astype(float)
    scrambled.loc[in_game, "receiving_yards"] = rng.integers(0, 150, count).astype(float)
    scrambled.loc[modelled, "carries"] = rng.integers(5, 35, int(modelled.sum())).astype(float)
    return scrambled


def _game_rows(dataset, season: int, week: int, teams: set[str]) -> pd.DataFrame:
    frame = dataset.frame
    mask = (frame["season"] == season) & (frame["week"] == week) & frame["team"].isin(teams)
    return frame[mask].set_index("row_id")


def test_pregame_features_ignore_own_game(league):
    player_weeks, schedule = league
    teams = {"AAA", "BBB"}
    before = build_dataset(player_weeks, schedule, feature_set="pregame")
    scrambled = _scramble_game(player_weeks, 2024, 7, teams)
    after = build_dataset(scrambled, schedule, feature_set="pregame")

    rows_before = _game_rows(before, 2024, 7, teams)
    rows_after = _game_rows(after, 2024, 7, teams)
    assert len(rows_before) >= 2
    assert rows_after.index.tolist() == rows_before.index.tolist()
    features = list(PREGAME_FEATURES)
    pd.testing.assert_frame_equal(rows_after[features], rows_before[features])
    assert rows_after["tier"].tolist() == rows_before["tier"].tolist()
    # The scramble changed the game itself: its carries, a seed feature, differ.
    assert not rows_after["carries"].equals(rows_before["carries"])


def test_features_ignore_later_games(league):
    player_weeks, schedule = league
    full = build_dataset(player_weeks, schedule, feature_set="pregame", test_start_week=7)
    early = player_weeks[(player_weeks["season"] < 2024) | (player_weeks["week"] <= 7)]
    cut = build_dataset(early, schedule, feature_set="pregame", test_start_week=7)
    shared = full.frame[full.frame["row_id"].isin(cut.frame["row_id"])].reset_index(drop=True)
    assert len(shared) == len(cut.frame)
    columns = [*PREGAME_FEATURES, "role", "tier"]
    pd.testing.assert_frame_equal(shared[columns], cut.frame[columns])


# Inputs and errors


def test_min_carries_threshold(league):
    player_weeks, schedule = league
    dataset = build_dataset(player_weeks, schedule, min_carries=10)
    expected = ((player_weeks["position_group"] == "RB") & (player_weeks["carries"] >= 10)).sum()
    assert len(dataset.frame) == expected
    assert dataset.frame["carries"].min() >= 10


def test_modelled_weeks_by_season(league):
    player_weeks, _ = league
    assert modelled_weeks(player_weeks) == {2023: list(range(1, 10)), 2024: list(range(1, 9))}


def test_unmatched_game_rejected(league):
    player_weeks, schedule = league
    dropped = schedule.drop(index=schedule.index[3])
    game = schedule.loc[schedule.index[3]]
    with pytest.raises(DataError, match=r"have no game in the schedule") as caught:
        build_dataset(player_weeks, dropped)
    assert f"{game['season']} week {game['week']}" in str(caught.value)


def test_team_twice_in_week_rejected(league):
    player_weeks, schedule = league
    repeated = pd.concat([schedule, schedule.iloc[[0]].assign(game_id="copy")], ignore_index=True)
    with pytest.raises(DataError, match="lists a team twice in one week"):
        build_dataset(player_weeks, repeated)


def test_playoff_weeks_before_regular_end_rejected(league):
    player_weeks, schedule = league
    swapped = player_weeks.copy()
    in_2023 = swapped["season"] == 2023
    swapped.loc[in_2023 & (swapped["week"] == 8), "season_type"] = "POST"
    swapped.loc[in_2023 & (swapped["week"] == 9), "season_type"] = "REG"
    with pytest.raises(DataError, match=r"season 2023: POST week 8 is not after the last REG"):
        build_dataset(swapped, schedule)


def test_duplicate_player_game_rejected(league):
    player_weeks, schedule = league
    doubled = pd.concat([player_weeks, player_weeks.iloc[[0]]], ignore_index=True)
    with pytest.raises(DataError, match="repeats 2 player-games"):
        build_dataset(doubled, schedule)


def test_missing_player_column_rejected(league):
    player_weeks, schedule = league
    with pytest.raises(DataError, match=r"missing columns \['opponent_team'\]"):
        build_dataset(player_weeks.drop(columns=["opponent_team"]), schedule)


def test_no_modelled_rows_rejected(league):
    player_weeks, schedule = league
    with pytest.raises(DataError, match="no RB rows with carries >= 100"):
        build_dataset(player_weeks, schedule, min_carries=100)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("feature_set", "postgame", r"feature_set = 'postgame' is not one of"),
        ("calibration_weeks", -1, r"calibration_weeks = -1 must be >= 0"),
        ("min_carries", -2, r"min_carries = -2 must be"),
        ("log_shift", float("nan"), r"log_shift = nan must be a finite number"),
    ],
)
def test_invalid_argument_rejected(league, argument, value, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(*league, **{argument: value})


# log_shift, X and y


def test_log_shift_rejects_training_row(league):
    player_weeks, schedule = league
    changed = player_weeks.copy()
    target = (changed["player_id"] == "AAA-RB1") & (changed["season"] == 2023)
    target &= changed["week"] == 2
    changed.loc[target, "rushing_yards"] = -12.0
    with pytest.raises(ValueError, match=r"AAA-RB1_2023_02.*set log_shift above 12"):
        build_dataset(changed, schedule, log_shift=10.0)
    dataset = build_dataset(changed, schedule, log_shift=15.0)
    assert dataset.y_model("train").min() == pytest.approx(np.log(3.0))


def test_y_model_rejects_test_row(league):
    player_weeks, schedule = league
    changed = player_weeks.copy()
    target = (changed["player_id"] == "BBB-RB1") & (changed["season"] == 2024)
    target &= changed["week"] == 8
    changed.loc[target, "rushing_yards"] = -10.0
    dataset = build_dataset(changed, schedule, log_shift=10.0)
    assert dataset.y("test").min() == -10.0
    with pytest.raises(ValueError, match=r"1 test rows .*BBB-RB1_2024_08"):
        dataset.y_model("test")


def test_y_model_is_log_shifted(league):
    dataset = build_dataset(*league, log_shift=10.0)
    np.testing.assert_allclose(dataset.y_model("train"), np.log(dataset.y("train") + 10.0))
    assert dataset.y("test").tolist() == dataset.test["rushing_yards"].tolist()


def test_x_standardized_with_training_statistics(league):
    dataset = build_dataset(*league, feature_set="pregame", calibration_weeks=2)
    train = dataset.X("train")
    assert train.dtype == np.float64
    assert train.shape == (len(dataset.train), len(PREGAME_FEATURES))
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(train.std(axis=0), 1.0)
    raw = dataset.X("test", standardize=False)
    np.testing.assert_array_equal(raw, dataset.test[list(PREGAME_FEATURES)].to_numpy())
    raw_train = dataset.X("train", standardize=False)
    expected = (raw - raw_train.mean(axis=0)) / raw_train.std(axis=0)
    np.testing.assert_allclose(dataset.X("test"), expected)


def test_x_constant_feature_has_unit_scale(league):
    player_weeks, schedule = league
    constant = schedule.assign(total_line=45.0)
    dataset = build_dataset(player_weeks, constant, feature_set="pregame")
    position = PREGAME_FEATURES.index("total_line")
    assert dataset.feature_scales[position] == 1.0
    assert np.all(dataset.X("test")[:, position] == 0.0)


def test_unknown_role_rejected(league):
    dataset = build_dataset(*league)
    with pytest.raises(ValueError, match=r"role = 'validation' is not one of"):
        dataset.X("validation")


def test_dataset_is_frozen(league):
    dataset = build_dataset(*league)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.log_shift = 1.0


# Real data


@pytest.fixture(scope="module")
def real_tables(real_data_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    player_weeks = data.load_player_weeks(real_data_dir, range(2020, 2025), download=False)
    return player_weeks, data.load_schedule(real_data_dir, download=False)


@pytest.mark.realdata
@pytest.mark.parametrize("feature_set", ["seed", "pregame"])
def test_real_dataset(real_tables, feature_set):
    dataset = build_dataset(*real_tables, feature_set=feature_set, calibration_weeks=6)
    frame = dataset.frame
    assert len(frame) == 4_174
    assert len(dataset.test) == 269
    assert dataset.test["season"].unique().tolist() == [2024]
    assert sorted(dataset.test["week"].unique()) == list(range(7, 13))
    assert len(dataset.calibration) == 303
    assert len(dataset.train) == 3_602
    assert not frame[list(dataset.feature_names)].isna().any().any()
    assert frame["game_id"].notna().all()
    assert frame["row_id"].is_unique
    assert set(frame["tier"]) == {"low", "middle", "high"}


@pytest.mark.realdata
def test_real_pregame_ignores_own_game(real_tables):
    player_weeks, schedule = real_tables
    before = build_dataset(player_weeks, schedule, feature_set="pregame")
    first = before.test.iloc[0]
    teams = {first["team"], first["opponent_team"]}
    scrambled = _scramble_game(player_weeks, first["season"], first["week"], teams)
    after = build_dataset(scrambled, schedule, feature_set="pregame")
    rows_before = _game_rows(before, first["season"], first["week"], teams)
    rows_after = _game_rows(after, first["season"], first["week"], teams)
    features = list(PREGAME_FEATURES)
    pd.testing.assert_frame_equal(rows_after[features], rows_before[features])
