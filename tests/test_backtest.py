"""Tests of the rolling-origin backtest helpers on small simulated leagues."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_league
from rbyards import backtest, evaluation, tables
from rbyards.params import (
    BACKTEST_MODELS,
    ParamsError,
    load_params,
    validate_against_data,
)

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"
SEASONS = (2022, 2023, 2024)
START_WEEK = 7
CALIBRATION_WEEKS = 2


def _time(rows: pd.DataFrame) -> pd.Series:
    return rows["season"] * 100 + rows["week"]


def _params(**overrides: object):
    values = {"split.calibration_weeks": CALIBRATION_WEEKS, "backtest.seasons": [2023, 2024]}
    values.update(overrides)
    return load_params("quick", PARAMS_DIR, values)


@pytest.fixture(scope="module")
def league(tmp_path_factory: pytest.TempPathFactory) -> backtest.League:
    """Three seasons of 10 REG weeks (and 1 POST week before the last), one file per season."""
    player_weeks, schedule = make_league(seasons=SEASONS, regular_weeks=10, seed=3)
    folder = tmp_path_factory.mktemp("nflverse")
    files = {}
    for season, rows in player_weeks.groupby("season"):
        path = folder / f"player_stats_{season}.csv"
        rows.to_csv(path, index=False)
        files[path.name] = path
    schedule.to_csv(folder / "games.csv", index=False)
    return backtest.League(player_weeks, schedule, folder, files)


@pytest.fixture(scope="module")
def folds(league: backtest.League) -> dict:
    return backtest.build_folds(league, _params(), "pregame", [2024, 2023])


# ---------------------------------------------------------------------------------------------
# Folds


def test_folds_keyed_by_increasing_season(folds: dict) -> None:
    assert list(folds) == [2023, 2024]
    assert [fold.test_season for fold in folds.values()] == [2023, 2024]


def test_training_precedes_test_rows(folds: dict) -> None:
    for season, fold in folds.items():
        last_training = _time(pd.concat([fold.train, fold.calibration])).max()
        assert last_training < _time(fold.test).min(), season
        assert last_training == season * 100 + START_WEEK - 1


def test_calibration_follows_training(folds: dict) -> None:
    for season, fold in folds.items():
        assert _time(fold.train).max() < _time(fold.calibration).min(), season
        assert _time(fold.calibration).max() < _time(fold.test).min(), season
        weeks = fold.calibration[["season", "week"]].drop_duplicates()
        assert len(weeks) == CALIBRATION_WEEKS


def test_test_rows_are_season_from_start_week(folds: dict) -> None:
    for season, fold in folds.items():
        assert set(fold.test["season"]) == {season}
        assert fold.test["week"].min() == START_WEEK
        assert fold.frame["season"].max() == season


def test_fold_2023_includes_2022_playoffs(folds: dict) -> None:
    # 2022 is not the league's last season, so it has a POST week 11 before 2023 starts.
    train = folds[2023].train
    assert ((train["season"] == 2022) & (train["week"] == 11)).any()
    assert set(folds[2023].test["season_type"]) == {"REG", "POST"}


def test_fold_summary_counts_roles(folds: dict) -> None:
    fold = folds[2024]
    summary = backtest.fold_summary(fold)
    assert summary["train_rows"] == len(fold.train)
    assert summary["calibration_rows"] == len(fold.calibration)
    assert summary["test_rows"] == len(fold.test)
    assert summary["train_first"] == "2022 week 1"
    assert summary["calibration_first"] == "2024 week 5"
    assert summary["calibration_last"] == "2024 week 6"
    assert summary["test_first"] == "2024 week 7"


def test_empirical_history_excludes_test_rows(folds: dict) -> None:
    fold = folds[2023]
    histories = backtest.baseline_options(fold, seed=1)["empirical"]["test_history"]
    known = pd.concat([fold.train, fold.calibration])
    totals = known.groupby("player_id")["rushing_yards"].sum()
    assert len(histories) == len(fold.test)
    for player, history in zip(fold.test["player_id"], histories, strict=True):
        # Known games precede every test game, so a history is exactly the player's known games.
        assert history.sum() == pytest.approx(totals.get(player, 0.0))


def test_baseline_options_time_the_training_rows(folds: dict) -> None:
    fold = folds[2024]
    options = backtest.baseline_options(fold, seed=5)
    assert np.array_equal(options["quantile_regression"]["train_time"], _time(fold.train))
    assert options["split_conformal_forest"]["seed"] == 5
    assert options["gradient_boosted_quantiles"]["log_shift"] == fold.log_shift


# ---------------------------------------------------------------------------------------------
# Season validation


def test_check_seasons_accepts_later_seasons(league: backtest.League) -> None:
    assert backtest.check_seasons(_params(), league) == [2023, 2024]


@pytest.mark.parametrize(
    ("seasons", "reason"),
    [
        ([2022, 2023], "2022 has no earlier season to train on"),
        ([2023, 2025], "2025 is not in the data (seasons [2022, 2023, 2024])"),
    ],
)
def test_invalid_backtest_season_rejected(
    league: backtest.League, seasons: list[int], reason: str
) -> None:
    with pytest.raises(ParamsError) as caught:
        backtest.check_seasons(
            _params(**{"backtest.seasons": seasons}), league, source="params/quick.yaml"
        )
    message = str(caught.value)
    assert message.startswith(f"params/quick.yaml: backtest.seasons = {seasons} is invalid")
    assert reason in message
    assert "allowed values: [2023, 2024]" in message


def test_season_outside_data_seasons_rejected(league: backtest.League) -> None:
    params = _params(**{"data.seasons": [2023, 2024]})
    with pytest.raises(ParamsError) as caught:
        backtest.check_seasons(params, league)
    assert "2023 has no earlier season to train on" in str(caught.value)
    assert "allowed values: [2024]" in str(caught.value)


def test_season_without_test_weeks_rejected() -> None:
    weeks = {2022: range(1, 19), 2023: range(1, 19), 2024: range(1, 7)}
    params = _params(**{"split.test_season": 2023})
    with pytest.raises(ParamsError) as caught:
        validate_against_data(params, weeks.keys(), weeks, source="quick.yaml")
    message = str(caught.value)
    assert "2024 has no week >= split.test_start_week = 7 (last week 6)" in message
    assert "allowed values: [2023]" in message


def test_disabled_backtest_not_checked() -> None:
    weeks = {2023: range(1, 19), 2024: range(1, 13)}
    params = _params(**{"backtest.seasons": [2022], "backtest.enabled": False})
    validate_against_data(params, weeks.keys(), weeks)


def test_profiles_backtest_settings() -> None:
    quick = load_params("quick", PARAMS_DIR).backtest
    default = load_params("default", PARAMS_DIR).backtest
    assert quick.enabled is True
    assert quick.seasons == [2023, 2024]
    assert default.seasons == [2022, 2023, 2024]
    assert default.models == list(BACKTEST_MODELS)
    assert default.bayesian_models == ["phase1", "phase2_1", "phase2_2"]
    # The quick profile leaves out phase 2.2, its slowest fit.
    assert quick.bayesian_models == ["phase1", "phase2_1"]
    assert len(quick.baseline_models) == 5


# ---------------------------------------------------------------------------------------------
# Scores and metrics


def _table(season: int, n_rows: int, players: int, spread: float, seed: int) -> pd.DataFrame:
    """A prediction table of ``n_rows`` test rows scored against Normal draws."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "row_id": [f"p{i % players}_{season}_{i:03d}" for i in range(n_rows)],
            "player_id": [f"p{i % players}" for i in range(n_rows)],
            "player_name": "A.Back",
            "season": season,
            "week": 7 + np.arange(n_rows) % 10,
            "rushing_yards": rng.gamma(3.0, 15.0, n_rows).round(),
            "tier": "middle",
        }
    )
    draws = rng.normal(45.0, spread, size=(n_rows, 400))
    quantiles = evaluation.quantile_frame(evaluation.quantiles_from_draws(draws))
    per_row = evaluation.score_forecast(
        rows["rushing_yards"], quantiles=quantiles, row_ids=rows["row_id"].to_numpy()
    )
    return backtest.quantile_prediction_table(rows, quantiles, per_row)


@pytest.fixture(scope="module")
def model_tables() -> dict:
    return {
        "phase2_1": {2023: _table(2023, 120, 12, 25.0, 1), 2024: _table(2024, 40, 8, 25.0, 2)},
        "empirical": {2023: _table(2023, 120, 12, 10.0, 3), 2024: _table(2024, 40, 8, 10.0, 4)},
    }


@pytest.fixture(scope="module")
def metrics(model_tables: dict) -> pd.DataFrame:
    return backtest.backtest_metrics(model_tables, n_boot=50, seed=7)


def _value(frame: pd.DataFrame, model: str, season: str, metric: str) -> float:
    match = frame[(frame.model == model) & (frame.season == season) & (frame.metric == metric)]
    assert len(match) == 1
    return float(match["value"].iloc[0])


def test_prediction_table_keeps_scores(model_tables: dict) -> None:
    table = model_tables["phase2_1"][2023]
    scores = backtest.per_row_scores(table)
    assert list(table.columns[:7]) == list(backtest.ROW_COLUMNS)
    assert "q0.500" in table.columns
    assert "covered_90" in scores.columns
    assert "q0.500" not in scores.columns
    assert scores.index.name == "row_id"
    assert len(scores) == 120


@pytest.mark.parametrize(
    "metric", ["coverage_50", "coverage_90", "width_90_mean", "mae", "crps", "pinball_50"]
)
def test_pooled_mean_is_row_weighted(metrics: pd.DataFrame, metric: str) -> None:
    for model in ("phase2_1", "empirical"):
        first = _value(metrics, model, "2023", metric)
        second = _value(metrics, model, "2024", metric)
        weighted = (120 * first + 40 * second) / 160
        assert _value(metrics, model, "pooled", metric) == pytest.approx(weighted, rel=1e-12)


def test_pooled_rmse_and_rows(metrics: pd.DataFrame) -> None:
    first = _value(metrics, "empirical", "2023", "rmse")
    second = _value(metrics, "empirical", "2024", "rmse")
    pooled = np.sqrt((120 * first**2 + 40 * second**2) / 160)
    assert _value(metrics, "empirical", "pooled", "rmse") == pytest.approx(pooled)
    assert _value(metrics, "empirical", "pooled", "n_rows") == 160


def test_metric_intervals_contain_values(metrics: pd.DataFrame) -> None:
    covered = metrics[metrics.metric.isin(["coverage_90", "crps", "mae"])]
    assert len(covered) == 2 * 3 * 3
    assert (covered["lower"] <= covered["value"] + 1e-12).all()
    assert (covered["upper"] >= covered["value"] - 1e-12).all()
    assert (covered["upper"] > covered["lower"]).all()
    assert metrics[metrics.metric == "n_rows"]["lower"].isna().all()


def test_wider_draws_cover_more(metrics: pd.DataFrame) -> None:
    wide = _value(metrics, "phase2_1", "pooled", "coverage_90")
    narrow = _value(metrics, "empirical", "pooled", "coverage_90")
    assert wide > narrow


def test_mismatched_rows_rejected(model_tables: dict) -> None:
    tables_ = {
        "phase2_1": model_tables["phase2_1"],
        "empirical": {**model_tables["empirical"], 2024: model_tables["empirical"][2024][1:]},
    }
    with pytest.raises(evaluation.RowMismatchError):
        backtest.backtest_metrics(tables_, n_boot=10)


def test_missing_season_rejected(model_tables: dict) -> None:
    tables_ = {"phase2_1": model_tables["phase2_1"], "empirical": {2023: _table(2023, 5, 2, 1, 0)}}
    with pytest.raises(ValueError, match=r"model empirical has seasons \[2023\]"):
        backtest.backtest_metrics(tables_, n_boot=10)


def test_pool_rejects_repeated_rows(model_tables: dict) -> None:
    table = model_tables["phase2_1"][2023]
    with pytest.raises(ValueError, match="appear in more than one season"):
        backtest.pool_tables({2023: table, 2024: table})


def test_metrics_by_model_nests_results(metrics: pd.DataFrame) -> None:
    nested = backtest.metrics_by_model(metrics)
    assert list(nested) == ["phase2_1", "empirical"]
    assert list(nested["empirical"]) == ["2023", "2024", "pooled"]
    pooled = nested["empirical"]["pooled"]
    assert pooled["metrics"]["n_rows"] == 160
    assert isinstance(pooled["metrics"]["n_rows"], int)
    assert pooled["metrics"]["crps"] == _value(metrics, "empirical", "pooled", "crps")
    assert "n_rows" not in pooled["metric_intervals"]
    assert len(pooled["metric_intervals"]["coverage_90"]) == 2


def test_wide_metrics_order(metrics: pd.DataFrame) -> None:
    wide = backtest.wide_metrics(metrics, ["crps", "coverage_90"])
    assert list(wide.columns) == ["crps", "coverage_90"]
    assert list(wide.index)[:3] == [
        ("phase2_1", "2023"),
        ("phase2_1", "2024"),
        ("phase2_1", "pooled"),
    ]
    assert wide.loc[("empirical", "2024"), "crps"] == _value(metrics, "empirical", "2024", "crps")


# ---------------------------------------------------------------------------------------------
# Table and figure


def _body_rows(latex: str) -> list[list[str]]:
    body = latex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [
        [cell.strip() for cell in line.removesuffix(r" \\").split(" & ")]
        for line in body.strip().splitlines()
    ]


def test_backtest_table_numbers_equal_input(metrics: pd.DataFrame) -> None:
    nested = backtest.metrics_by_model(metrics)
    table = tables.backtest_table(
        nested, labels=backtest.MODEL_LABELS, run_ids=["backtest.seed"], label="tab:bt"
    )
    rows = _body_rows(table.fragment)
    assert rows[0] == [r"\multicolumn{4}{l}{\textit{90\% coverage}}"]
    coverage_row, coverage_interval = rows[1], rows[2]
    assert coverage_row[0] == "Phase 2.1"
    for cell, season in zip(coverage_row[1:], ["2023", "2024", "pooled"], strict=True):
        value = nested["phase2_1"][season]["metrics"]["coverage_90"]
        assert cell == f"{100 * value:.1f}\\%"
    low, high = nested["phase2_1"]["pooled"]["metric_intervals"]["coverage_90"]
    assert coverage_interval[3] == f"{{\\footnotesize [{100 * low:.1f}, {100 * high:.1f}]}}"
    crps_rows = rows[rows.index([r"\multicolumn{4}{l}{\textit{CRPS (yd)}}"]) + 1 :]
    assert crps_rows[2][0] == "Empirical"
    for cell, season in zip(crps_rows[2][1:], ["2023", "2024", "pooled"], strict=True):
        assert cell == f"{nested['empirical'][season]['metrics']['crps']:.1f}"


def test_backtest_table_header_and_notes(metrics: pd.DataFrame) -> None:
    table = tables.backtest_table(backtest.metrics_by_model(metrics), label="tab:bt")
    assert "Model & 2023 & 2024 & Pooled \\\\" in table.fragment
    assert "Test games: 2023: 120, 2024: 40, pooled: 160." in table.fragment
    assert re.search(r"\\label\{tab:bt\}", table.float_)
    assert "\\label" not in table.fragment


def test_backtest_table_missing_season_rejected(metrics: pd.DataFrame) -> None:
    nested = backtest.metrics_by_model(metrics)
    del nested["empirical"]["2024"]
    with pytest.raises(tables.TableInputError, match=r"'empirical' has no results.*'2024'"):
        tables.backtest_table(nested)


def test_plot_backtest_draws_each_season(metrics: pd.DataFrame) -> None:
    fig = backtest.plot_backtest(metrics)
    axes = fig.axes
    assert len(axes) == 2
    assert [tick.get_text() for tick in axes[0].get_yticklabels()] == ["Phase 2.1", "Empirical"]
    legend = [text.get_text() for text in axes[1].get_legend().get_texts()]
    assert legend == ["2023", "2024", "pooled"]
    # Each season is one error bar container per panel, its markers at the models' values.
    pooled_crps = [_value(metrics, model, "pooled", "crps") for model in ("phase2_1", "empirical")]
    containers = axes[1].containers
    assert len(containers) == 3
    markers = containers[2].lines[0]
    assert np.allclose(markers.get_xdata(), pooled_crps)
