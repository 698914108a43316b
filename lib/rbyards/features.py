"""Build the modelling dataset: running back games, features, time split and carry tiers.

A modelled row is one running back game (``position_group == "RB"``) with at least
``min_carries`` carries. Such rows are called qualifying games below. Games of a player are
ordered by (season, week). This puts POST games after the REG games of their season because
nflverse numbers playoff weeks after the regular season's last week, and :func:`build_dataset`
raises when a season's numbering breaks that order.

Feature sets
------------
``seed``: ``carries`` (of the game itself, so known only after kickoff), ``avg_rushing_l3``,
``season_avg`` and ``week``.

``pregame``: only information available before kickoff: ``expected_carries``,
``avg_rushing_l3``, ``season_avg``, ``games_played_season``, ``team_spread``, ``total_line``,
``home``, ``rest_days``, ``opponent_rush_yards_allowed`` and ``week``.

Definitions (every window excludes the game itself):

- ``avg_rushing_l3``: mean rushing yards over the player's previous three qualifying games, or
  fewer when fewer exist, across season boundaries.
- ``expected_carries``: the same window's mean carries. It also sets the row's carry tier.
- ``season_avg``: mean rushing yards over the player's earlier qualifying games of the season.
- ``games_played_season``: count of those earlier qualifying games (0 in the first).
- ``team_spread``: closing spread from the schedule as the player's team's expected margin, so
  positive when the team is favoured (``spread_line`` for the home team, minus it for the away
  team). ``total_line``: closing total. ``home``: 1.0 for the home team, else 0.0.
  ``rest_days``: the team's days of rest (``home_rest`` or ``away_rest``).
- ``opponent_rush_yards_allowed``: the opponent defence's mean, over its earlier games of the
  same season, of the rushing yards that all running backs facing it gained in a game (every RB
  row of the player file counts here, whatever its carries). A game in which no opposing RB
  row exists is left out of the mean rather than counted as 0 yards.

Gap fill: a feature that has no earlier game to use (a player's first qualifying game, a
season's first game, a defence's first game of the season) or has no betting line is filled
with the feature's median over the training rows that have a value (role ``train``, after the
calibration weeks are taken out). Calibration and test rows never contribute to fill values,
tier cut points or standardization.

Split: training rows are seasons before ``test_season`` plus ``test_season`` weeks before
``test_start_week``; test rows are the rest of ``test_season``. Rows of later seasons are
dropped. The last ``calibration_weeks`` (season, week) pairs of the training period become the
calibration rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from rbyards.data import PLAYER_KEY, DataError

logger = logging.getLogger(__name__)

FEATURE_SETS = ("seed", "pregame")
SEED_FEATURES = ("carries", "avg_rushing_l3", "season_avg", "week")
PREGAME_FEATURES = (
    "expected_carries",
    "avg_rushing_l3",
    "season_avg",
    "games_played_season",
    "team_spread",
    "total_line",
    "home",
    "rest_days",
    "opponent_rush_yards_allowed",
    "week",
)
FEATURE_NAMES = {"seed": SEED_FEATURES, "pregame": PREGAME_FEATURES}
# Columns that can be missing before gap fill.
FILLED_FEATURES = (
    "expected_carries",
    "avg_rushing_l3",
    "season_avg",
    "team_spread",
    "total_line",
    "rest_days",
    "opponent_rush_yards_allowed",
)
ROLES = ("train", "calibration", "test")
TIERS = ("low", "middle", "high")
RECENT_GAMES = 3

_PLAYER_COLUMNS = (
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
)
_SCHEDULE_COLUMNS = (
    "game_id",
    "season",
    "week",
    "home_team",
    "away_team",
    "spread_line",
    "total_line",
    "home_rest",
    "away_rest",
)
_BASE_COLUMNS = (
    "row_id",
    "player_id",
    "player_name",
    "team",
    "opponent_team",
    "season",
    "week",
    "season_type",
    "game_id",
    "rushing_yards",
    "carries",
)


@dataclass(frozen=True)
class Dataset:
    """Modelled rows with their features, roles and tiers, plus the training statistics.

    The dataclass is frozen but ``frame`` is a mutable DataFrame: treat it as read-only.
    """

    frame: pd.DataFrame
    """One row per modelled game sorted by season, week and player_id (see module docstring)."""
    feature_names: tuple[str, ...]
    feature_set: str
    log_shift: float
    min_carries: float
    test_season: int
    test_start_week: int
    calibration_weeks: int
    fill_values: Mapping[str, float] = field(default_factory=dict)
    """Training-row median used to fill each feature's missing values."""
    tier_cuts: tuple[float, float] = (np.nan, np.nan)
    """Training-row tertiles of ``expected_carries``: low is <= the first, high is > the second."""
    feature_means: tuple[float, ...] = ()
    feature_scales: tuple[float, ...] = ()
    """Training-row standard deviation (ddof 0) of each feature; 1.0 for a constant feature."""

    def rows(self, role: str) -> pd.DataFrame:
        """Return the rows of one role ("train", "calibration" or "test")."""
        _check_role(role)
        return self.frame[self.frame["role"] == role]

    @property
    def train(self) -> pd.DataFrame:
        """Training rows."""
        return self.rows("train")

    @property
    def calibration(self) -> pd.DataFrame:
        """Calibration rows: the last weeks of the training period (empty when none)."""
        return self.rows("calibration")

    @property
    def test(self) -> pd.DataFrame:
        """Test rows."""
        return self.rows("test")

    def X(self, role: str, standardize: bool = True) -> np.ndarray:  # noqa: N802 (usual name)
        """Return the feature matrix of one role.

        Parameters
        ----------
        role : {"train", "calibration", "test"}
            Rows to return, in ``frame`` order.
        standardize : bool, default True
            Subtract the training means and divide by the training standard deviations.

        Returns
        -------
        numpy.ndarray
            float64 array of shape (n_rows, len(feature_names)).
        """
        values = self.rows(role)[list(self.feature_names)].to_numpy(dtype=np.float64)
        if standardize:
            values = (values - np.asarray(self.feature_means)) / np.asarray(self.feature_scales)
        return values

    def y(self, role: str) -> np.ndarray:
        """Return the rushing yards of one role as a float64 array."""
        return self.rows(role)["rushing_yards"].to_numpy(dtype=np.float64)

    def y_model(self, role: str) -> np.ndarray:
        """Return ``log(rushing_yards + log_shift)`` of one role, the models' scale.

        Raises
        ------
        ValueError
            When a row of the role has rushing_yards <= -log_shift (training rows are checked
            when the dataset is built; calibration and test rows only here).
        """
        yards = self.y(role)
        _check_log_shift(yards, self.rows(role)["row_id"], self.log_shift, role)
        return np.log(yards + self.log_shift)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role = {role!r} is not one of {list(ROLES)}; use one of those")


def _check_log_shift(yards: np.ndarray, row_ids: pd.Series, log_shift: float, role: str) -> None:
    bad = yards <= -log_shift
    if bad.any():
        examples = row_ids.to_numpy()[bad][:3].tolist()
        raise ValueError(
            f"log_shift = {log_shift} is too small: {int(bad.sum())} {role} rows have "
            f"rushing_yards <= {-log_shift} (minimum {yards.min():g}, rows {examples}), so "
            f"log(rushing_yards + log_shift) is undefined; set log_shift above {-yards.min():g}"
        )


def modelled_weeks(player_weeks: pd.DataFrame, min_carries: float = 5) -> dict[int, list[int]]:
    """List the weeks that have modelled rows (RB games with enough carries), by season.

    Parameters
    ----------
    player_weeks : pandas.DataFrame
        Output of :func:`rbyards.data.load_player_weeks`.
    min_carries : float, default 5
        Minimum carries of a modelled row.

    Returns
    -------
    dict of int to list of int
        Season to its sorted weeks.
    """
    rows = _qualifying(player_weeks, min_carries)
    return {
        int(season): sorted(int(w) for w in weeks.unique())
        for season, weeks in rows.groupby("season")["week"]
    }


def _qualifying(player_weeks: pd.DataFrame, min_carries: float) -> pd.DataFrame:
    mask = (player_weeks["position_group"] == "RB") & (player_weeks["carries"] >= min_carries)
    return player_weeks.loc[mask.fillna(False).astype(bool)]


def _check_player_weeks(player_weeks: pd.DataFrame) -> None:
    missing = [column for column in _PLAYER_COLUMNS if column not in player_weeks.columns]
    if missing:
        raise DataError(
            f"player_weeks is missing columns {missing}; load it with "
            "rbyards.data.load_player_weeks"
        )
    repeated = player_weeks.duplicated(list(PLAYER_KEY), keep=False)
    if repeated.any():
        example = player_weeks.loc[repeated, list(PLAYER_KEY)].iloc[0].tolist()
        raise DataError(
            f"player_weeks repeats {int(repeated.sum())} player-games in columns "
            f"{list(PLAYER_KEY)} (for example {example}); keep one row per player and week"
        )
    types = player_weeks.groupby(["season", "season_type"])["week"].agg(["min", "max"])
    for season in types.index.get_level_values("season").unique():
        by_type = types.loc[season]
        if "REG" in by_type.index and "POST" in by_type.index:
            last_regular = by_type.loc["REG", "max"]
            first_playoff = by_type.loc["POST", "min"]
            if first_playoff <= last_regular:
                raise DataError(
                    f"season {season}: POST week {first_playoff} is not after the last REG week "
                    f"{last_regular}, so games cannot be ordered by (season, week); number "
                    "playoff weeks after the regular season as nflverse does"
                )


def _check_arguments(
    feature_set: str,
    min_carries: float,
    test_start_week: int,
    calibration_weeks: int,
    log_shift: float,
) -> None:
    if feature_set not in FEATURE_SETS:
        raise ValueError(
            f"feature_set = {feature_set!r} is not one of {list(FEATURE_SETS)}; use one of those"
        )
    if not np.isfinite(min_carries) or min_carries < 0:
        raise ValueError(f"min_carries = {min_carries} must be a number >= 0")
    if test_start_week < 1:
        raise ValueError(f"test_start_week = {test_start_week} must be >= 1")
    if calibration_weeks < 0:
        raise ValueError(f"calibration_weeks = {calibration_weeks} must be >= 0")
    if not np.isfinite(log_shift):
        raise ValueError(f"log_shift = {log_shift} must be a finite number")


def _add_history_features(rows: pd.DataFrame) -> pd.DataFrame:
    """Add the features computed from each player's earlier qualifying games."""
    rows = rows.sort_values(["player_id", "season", "week"], kind="stable").copy()

    def recent_mean(values: pd.Series) -> pd.Series:
        return values.shift(1).rolling(RECENT_GAMES, min_periods=1).mean()

    def earlier_mean(values: pd.Series) -> pd.Series:
        return values.shift(1).expanding().mean()

    by_player = rows.groupby("player_id", sort=False)
    rows["avg_rushing_l3"] = by_player["rushing_yards"].transform(recent_mean)
    rows["expected_carries"] = by_player["carries"].transform(recent_mean)
    by_season = rows.groupby(["player_id", "season"], sort=False)
    rows["season_avg"] = by_season["rushing_yards"].transform(earlier_mean)
    rows["games_played_season"] = by_season.cumcount().astype("float64")
    return rows


def _team_sides(schedule: pd.DataFrame, seasons: list[int]) -> pd.DataFrame:
    """Return two rows per game, one from each team's side, with the lines signed for it."""
    missing = [column for column in _SCHEDULE_COLUMNS if column not in schedule.columns]
    if missing:
        raise DataError(
            f"schedule is missing columns {missing}; load it with rbyards.data.load_schedule"
        )
    games = schedule.loc[schedule["season"].isin(seasons), list(_SCHEDULE_COLUMNS)]
    shared = games[["game_id", "season", "week", "total_line"]]
    home = shared.assign(
        team=games["home_team"],
        opponent_team=games["away_team"],
        home=1.0,
        team_spread=games["spread_line"],
        rest_days=games["home_rest"],
    )
    away = shared.assign(
        team=games["away_team"],
        opponent_team=games["home_team"],
        home=0.0,
        team_spread=-games["spread_line"],
        rest_days=games["away_rest"],
    )
    sides = pd.concat([home, away], ignore_index=True)
    repeated = sides.duplicated(["season", "week", "team"], keep=False)
    if repeated.any():
        example = sides.loc[repeated, ["season", "week", "team"]].iloc[0].tolist()
        raise DataError(
            f"schedule lists a team twice in one week (season, week, team = {example}); "
            "keep one row per game"
        )
    return sides


def _match_games(rows: pd.DataFrame, schedule: pd.DataFrame) -> pd.DataFrame:
    """Attach game_id and the pre-game context of the player's side to each row."""
    seasons = sorted(int(season) for season in rows["season"].unique())
    sides = _team_sides(schedule, seasons)
    keys = ["season", "week", "team", "opponent_team"]
    rows = rows.drop(columns=[c for c in sides.columns if c not in keys and c in rows.columns])
    matched = rows.merge(sides, on=keys, how="left", validate="many_to_one")
    unmatched = matched["game_id"].isna()
    if unmatched.any():
        examples = matched.loc[unmatched, keys].drop_duplicates().head(3)
        listed = "; ".join(
            f"{r.season} week {r.week} {r.team} v {r.opponent_team}"
            for r in examples.itertuples(index=False)
        )
        raise DataError(
            f"{int(unmatched.sum())} of {len(matched)} modelled rows have no game in the schedule "
            f"with the same season, week and teams (for example {listed}); use a schedule that "
            "covers these seasons with the same team codes as the player files"
        )
    return matched


def _opponent_allowed(player_weeks: pd.DataFrame) -> pd.DataFrame:
    """Return each defence's mean RB rushing yards allowed over its earlier games that season."""
    backs = player_weeks.loc[player_weeks["position_group"] == "RB"]
    allowed = (
        backs.groupby(["season", "week", "opponent_team"], as_index=False)["rushing_yards"]
        .sum()
        .rename(columns={"rushing_yards": "rb_yards_allowed"})
        .sort_values(["opponent_team", "season", "week"], kind="stable")
    )
    by_defence = allowed.groupby(["opponent_team", "season"], sort=False)["rb_yards_allowed"]
    allowed["opponent_rush_yards_allowed"] = by_defence.transform(
        lambda values: values.shift(1).expanding().mean()
    )
    return allowed[["season", "week", "opponent_team", "opponent_rush_yards_allowed"]]


def _describe_weeks(rows: pd.DataFrame) -> str:
    ranges = rows.groupby("season")["week"].agg(["min", "max"])
    return "; ".join(
        f"{season} weeks {int(r['min'])}-{int(r['max'])}" for season, r in ranges.iterrows()
    )


def _assign_roles(
    rows: pd.DataFrame, test_season: int, test_start_week: int, calibration_weeks: int
) -> pd.Series:
    in_test_season = rows["season"] == test_season
    is_test = in_test_season & (rows["week"] >= test_start_week)
    is_train = (rows["season"] < test_season) | (in_test_season & (rows["week"] < test_start_week))
    split = f"test_season = {test_season}, test_start_week = {test_start_week}"
    if not is_train.any() or not is_test.any():
        empty = "training" if not is_train.any() else "test"
        raise ValueError(
            f"{split} leaves no {empty} rows; modelled rows have {_describe_weeks(rows)}; "
            "choose a test season and start week inside those weeks with earlier weeks before"
        )
    roles = pd.Series("train", index=rows.index, dtype="str")
    roles[is_test] = "test"

    training_weeks = (
        rows.loc[is_train, ["season", "week"]].drop_duplicates().sort_values(["season", "week"])
    )
    if calibration_weeks >= len(training_weeks):
        raise ValueError(
            f"calibration_weeks = {calibration_weeks} leaves no training rows: with {split} the "
            f"training period has {len(training_weeks)} weeks ({_describe_weeks(rows[is_train])});"
            " lower calibration_weeks or add earlier seasons"
        )
    if calibration_weeks > 0:
        held_out = training_weeks.tail(calibration_weeks)
        keys = pd.MultiIndex.from_frame(rows[["season", "week"]])
        in_held_out = keys.isin(pd.MultiIndex.from_frame(held_out)) & is_train.to_numpy()
        roles[in_held_out] = "calibration"
    return roles


def _fill_gaps(rows: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    """Fill missing values in place with training-row medians and return those medians."""
    train = rows["role"] == "train"
    fill_values = {}
    for column in columns:
        median = rows.loc[train, column].median()
        fill_values[column] = float(median)
        missing = rows[column].isna()
        if not missing.any():
            continue
        if np.isnan(median):
            raise ValueError(
                f"feature {column!r} is missing in every training row, so its gaps cannot be "
                "filled; use more training seasons or weeks"
            )
        logger.info(
            "filled %d missing %s values with the training median %.3f",
            int(missing.sum()),
            column,
            median,
        )
        rows.loc[missing, column] = median
    return fill_values


def _assign_tiers(expected_carries: pd.Series, train: pd.Series) -> tuple[pd.Series, tuple]:
    low_cut, high_cut = expected_carries[train].quantile([1 / 3, 2 / 3]).to_numpy()
    tiers = pd.Series("middle", index=expected_carries.index, dtype="str")
    tiers[expected_carries <= low_cut] = "low"
    tiers[expected_carries > high_cut] = "high"
    return tiers, (float(low_cut), float(high_cut))


def build_dataset(
    player_weeks: pd.DataFrame,
    schedule: pd.DataFrame,
    *,
    min_carries: float = 5,
    test_season: int = 2024,
    test_start_week: int = 7,
    feature_set: str = "seed",
    calibration_weeks: int = 0,
    log_shift: float = 10.0,
) -> Dataset:
    """Build the modelled rows, their features, roles and tiers (see module docstring).

    Parameters
    ----------
    player_weeks : pandas.DataFrame
        Output of :func:`rbyards.data.load_player_weeks`.
    schedule : pandas.DataFrame
        Output of :func:`rbyards.data.load_schedule`.
    min_carries : float, default 5
        Minimum carries of a modelled row.
    test_season : int, default 2024
        Season of the test rows.
    test_start_week : int, default 7
        First week of the test rows.
    feature_set : {"seed", "pregame"}, default "seed"
        Which features to build.
    calibration_weeks : int, default 0
        Number of the training period's last weeks held out as calibration rows.
    log_shift : float, default 10.0
        Shift of the model scale ``log(rushing_yards + log_shift)``.

    Returns
    -------
    Dataset
        Frame with columns row_id ("{player_id}_{season}_{week:02d}"), player_id, player_name,
        team, opponent_team, season, week, season_type, game_id, rushing_yards, carries, the
        feature columns, expected_carries, role and tier.

    Raises
    ------
    DataError
        When the inputs miss columns, repeat player-games, number playoff weeks before the
        regular season's end, have no modelled rows, or a modelled row has no schedule game.
    ValueError
        When an argument is invalid, the split leaves no training or test rows, the calibration
        weeks take every training week, or a training row has rushing_yards <= -log_shift.
    """
    _check_arguments(feature_set, min_carries, test_start_week, calibration_weeks, log_shift)
    _check_player_weeks(player_weeks)
    player_weeks = player_weeks.loc[player_weeks["season"] <= test_season]
    rows = _qualifying(player_weeks, min_carries)
    if rows.empty:
        raise DataError(
            f"player_weeks has no RB rows with carries >= {min_carries} in seasons up to "
            f"{test_season}; check position_group and carries, or lower min_carries"
        )
    rows = _add_history_features(rows)
    rows = _match_games(rows, schedule)
    rows = rows.merge(
        _opponent_allowed(player_weeks),
        on=["season", "week", "opponent_team"],
        how="left",
        validate="many_to_one",
    )
    rows = rows.sort_values(["season", "week", "player_id"], kind="stable").reset_index(drop=True)
    rows["row_id"] = (
        rows["player_id"].astype(str)
        + "_"
        + rows["season"].astype(str)
        + "_"
        + rows["week"].map("{:02d}".format)
    )
    rows["role"] = _assign_roles(rows, test_season, test_start_week, calibration_weeks)

    features = FEATURE_NAMES[feature_set]
    filled = [c for c in FILLED_FEATURES if c in features or c == "expected_carries"]
    fill_values = _fill_gaps(rows, filled)
    train = rows["role"] == "train"
    rows["tier"], tier_cuts = _assign_tiers(rows["expected_carries"], train)
    _check_log_shift(
        rows.loc[train, "rushing_yards"].to_numpy(dtype=np.float64),
        rows.loc[train, "row_id"],
        log_shift,
        "training",
    )

    columns = list(dict.fromkeys((*_BASE_COLUMNS, *features, "expected_carries", "role", "tier")))
    frame = rows[columns].copy()
    for column in features:
        if column not in _BASE_COLUMNS:
            frame[column] = frame[column].astype("float64")

    scaler = StandardScaler().fit(frame.loc[train, list(features)].to_numpy(dtype=np.float64))
    counts = frame["role"].value_counts()
    logger.info(
        "built %s dataset: %d rows (train %d, calibration %d, test %d)",
        feature_set,
        len(frame),
        counts.get("train", 0),
        counts.get("calibration", 0),
        counts.get("test", 0),
    )
    return Dataset(
        frame=frame,
        feature_names=tuple(features),
        feature_set=feature_set,
        log_shift=float(log_shift),
        min_carries=float(min_carries),
        test_season=int(test_season),
        test_start_week=int(test_start_week),
        calibration_weeks=int(calibration_weeks),
        fill_values=fill_values,
        tier_cuts=tier_cuts,
        feature_means=tuple(float(v) for v in scaler.mean_),
        feature_scales=tuple(float(v) for v in scaler.scale_),
    )
