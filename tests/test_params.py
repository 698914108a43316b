"""Tests of parameter profiles: loading, overrides, error messages and the data split check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rbyards.params import (
    Params,
    ParamsError,
    apply_overrides,
    available_profiles,
    load_params,
    validate_against_data,
)

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"
WEEKS = {2022: range(1, 23), 2023: range(1, 23), 2024: range(1, 13)}


def test_profiles_in_repo() -> None:
    assert available_profiles(PARAMS_DIR) == ["default", "quick"]


def test_default_profile_values() -> None:
    params = load_params("default", PARAMS_DIR)
    assert params.profile == "default"
    assert params.data.seasons is None
    assert params.split.test_season == 2024
    assert params.split.test_start_week == 7
    assert params.features.feature_sets == ["seed", "pregame"]
    assert params.sampler.chains == 4
    assert params.sampler.draws == 1000
    assert params.sampler.time_limit_minutes == 90
    assert params.sampler.precision == "float64"
    assert params.sampler.max_treedepth == 8
    phase2_1_sampler = params.sampler_for("phase2_1")
    assert phase2_1_sampler.max_treedepth == 9
    assert phase2_1_sampler.warmup_max_treedepth == 8
    assert phase2_1_sampler.target_accept == 0.97
    assert phase2_1_sampler.precision == "float32"
    assert phase2_1_sampler.draws == 1000
    phase2_2_sampler = params.sampler_for("phase2_2")
    assert phase2_2_sampler.warmup_max_treedepth == 6
    assert phase2_2_sampler.max_treedepth == 8
    assert phase2_2_sampler.precision == "float32"
    assert params.sampler_for("phase1") == params.sampler
    assert params.phases.phase2_2.sigma_priors == [10.0, 15.0, 20.0]
    assert params.phases.phase2_3.method == "cqr"
    assert len(params.phases.baselines.models) == 5
    assert params.evaluation.convergence.min_ess_bulk == 400


def test_quick_profile_is_small() -> None:
    params = load_params("quick", PARAMS_DIR)
    assert params.sampler.chains == 2
    assert params.sampler.tune == 100
    assert params.sampler.draws == 100
    assert params.sampler.max_treedepth == 5
    assert params.sampler.predictive_draws == 200
    assert params.sampler.time_limit_minutes == 4
    assert params.evaluation.bootstrap_replicates == 200
    assert params.data.seasons is None


@pytest.mark.parametrize("profile", ["default", "quick"])
def test_model_dump_round_trips_through_json(profile: str) -> None:
    params = load_params(profile, PARAMS_DIR)
    text = json.dumps(params.model_dump())
    assert Params.model_validate(json.loads(text)) == params


def test_overrides_set_dotted_keys() -> None:
    params = load_params(
        "quick",
        PARAMS_DIR,
        {"sampler.draws": 200, "phases.phase1.enabled": False, "data.seasons": [2023, 2024]},
    )
    assert params.sampler.draws == 200
    assert params.sampler.tune == 100
    assert params.phases.phase1.enabled is False
    assert params.data.seasons == [2023, 2024]


def test_apply_overrides_leaves_input_unchanged() -> None:
    raw = {"sampler": {"draws": 10}}
    merged = apply_overrides(raw, {"sampler.draws": 20, "sampler.chains": 1})
    assert merged == {"sampler": {"draws": 20, "chains": 1}}
    assert raw == {"sampler": {"draws": 10}}


@pytest.mark.parametrize("profile", ["../quick", "", "quick.yaml"])
def test_profile_name_must_be_plain(profile: str) -> None:
    with pytest.raises(ParamsError, match="is invalid: use letters, digits"):
        load_params(profile, PARAMS_DIR)


def test_missing_profile_lists_existing() -> None:
    with pytest.raises(ParamsError) as caught:
        load_params("study", PARAMS_DIR)
    message = str(caught.value)
    assert "profile 'study' not found" in message
    assert "study.yaml" in message
    assert "default, quick" in message


# (override, text the message must contain)
BAD_OVERRIDES = [
    ({"sampler.draws": -5}, "sampler.draws = -5 is invalid"),
    ({"sampler.draws": 0}, "greater than or equal to 1"),
    ({"sampler.draws": 10.5}, "sampler.draws = 10.5 is invalid"),
    ({"sampler.draws": "100"}, "sampler.draws = '100' is invalid"),
    ({"sampler.drawz": 5}, "unknown key sampler.drawz = 5; allowed keys: backend, chains"),
    ({"extra_section": {}}, "unknown key extra_section"),
    ({"sampler.backend": "stan"}, "allowed values: 'nutpie', 'numpyro' or 'pymc'"),
    ({"sampler.target_accept": 1.0}, "sampler.target_accept = 1.0 is invalid"),
    ({"evaluation.levels": [0.5, 0.9, 1.2]}, "evaluation.levels.2 = 1.2 is invalid"),
    ({"evaluation.levels": [0.0, 0.9]}, "evaluation.levels.0 = 0.0 is invalid"),
    ({"evaluation.levels": [0.9, 0.5]}, "levels must be increasing"),
    ({"evaluation.levels": [0.5, 0.8]}, "levels must include 0.9"),
    ({"features.feature_sets": ["seed", "odds"]}, "'odds' is not allowed"),
    ({"features.feature_sets": []}, "features.feature_sets = [] is invalid"),
    ({"features.feature_sets": ["seed", "seed"]}, "must not repeat"),
    ({"phases.phase2_2.experts": 2}, "experts is 2 but sigma_priors has 3 values"),
    (
        {"phases.phase2_3.method": "isotonic"},
        "method = 'isotonic' is not allowed; allowed values: 'cqr'",
    ),
    ({"phases.baselines.models": ["knn"]}, "'knn' is not allowed"),
    ({"data.download": "yes"}, "data.download = 'yes' is invalid"),
    ({"backtest.seasons": [2024, 2023]}, "seasons must be increasing without repeats"),
    ({"backtest.seasons": []}, "backtest.seasons = [] is invalid"),
    ({"backtest.models": ["phase2_3"]}, "'phase2_3' is not allowed"),
    ({"backtest.models": ["empirical", "empirical"]}, "models must not repeat a name"),
    ({"data.seasons": []}, "seasons must list at least one season"),
    ({"data.seasons": [2022]}, "split.test_season 2024 is not in data.seasons [2022]"),
    ({"split.test_start_week": 0}, "split.test_start_week = 0 is invalid"),
    ({"profile": "other"}, "does not match the file name"),
    (
        {"sampler.backend": "nutpie", "sampler.precision": "float32"},
        "precision float32 requires backend numpyro",
    ),
    (
        {"sampler.backend": "pymc", "sampler.warmup_max_treedepth": 3},
        "warmup_max_treedepth different from max_treedepth requires backend numpyro",
    ),
    ({"sampler.draws.low": 1}, "sampler.draws is the value 100, not a section"),
]


def test_phase_sampler_changes_only_its_phase() -> None:
    params = load_params(
        "quick",
        PARAMS_DIR,
        {"phases.phase2_2.sampler": {"max_treedepth": 3, "precision": "float32"}},
    )
    own = params.sampler_for("phase2_2")
    assert own.max_treedepth == 3
    assert own.precision == "float32"
    # Settings the phase leaves out come from the sampler section.
    assert own.draws == params.sampler.draws
    assert params.sampler_for("phase2_1") == params.sampler
    assert params.sampler_for("phase2_1").max_treedepth == 5


def test_phase_sampler_checked_with_the_shared_backend() -> None:
    with pytest.raises(ParamsError) as caught:
        load_params(
            "quick",
            PARAMS_DIR,
            {"sampler.backend": "nutpie", "phases.phase1.sampler.precision": "float32"},
        )
    assert "phases.phase1.sampler is invalid" in str(caught.value)
    assert "precision float32 requires backend numpyro" in str(caught.value)


@pytest.mark.parametrize(("overrides", "expected"), BAD_OVERRIDES)
def test_invalid_value_message(overrides: dict, expected: str) -> None:
    with pytest.raises(ParamsError) as caught:
        load_params("quick", PARAMS_DIR, overrides)
    assert expected in str(caught.value)


def test_message_names_file_and_override() -> None:
    with pytest.raises(ParamsError) as caught:
        load_params("quick", PARAMS_DIR, {"sampler.chains": -1})
    assert str(caught.value).startswith(f"{PARAMS_DIR / 'quick.yaml'} (value from overrides): ")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("profile: broken\nsampler: {draws: -1}\n")
    with pytest.raises(ParamsError) as caught:
        load_params("broken", tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'broken.yaml'}: sampler.draws = -1 is invalid: "
        "Input should be greater than or equal to 1"
    )


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("profile: bad\nsampler: {draws: [1,\n")
    with pytest.raises(ParamsError, match="bad.yaml: invalid YAML"):
        load_params("bad", tmp_path)


def test_split_valid_for_data() -> None:
    params = load_params("quick", PARAMS_DIR)
    validate_against_data(params, WEEKS.keys(), WEEKS)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"split.test_season": 2021}, "split.test_season = 2021 is not in the data"),
        ({"data.seasons": [2021, 2024]}, "data.seasons lists [2021] but the data has seasons"),
        ({"split.test_start_week": 13}, "leaves no test rows: season 2024 has weeks up to 12"),
        ({"split.calibration_weeks": 50}, "training period has 50 weeks"),
    ],
)
def test_split_invalid_for_data(overrides: dict, expected: str) -> None:
    params = load_params("quick", PARAMS_DIR, overrides)
    with pytest.raises(ParamsError) as caught:
        validate_against_data(params, WEEKS.keys(), WEEKS)
    assert expected in str(caught.value)


def test_split_uses_listed_seasons_only() -> None:
    # Only 2024 is listed, so training has its 6 weeks before week 7 and 6 go to calibration.
    params = load_params("quick", PARAMS_DIR, {"data.seasons": [2024]})
    with pytest.raises(ParamsError, match="training period has 6 weeks"):
        validate_against_data(params, WEEKS.keys(), WEEKS)
    # The quick profile's backtest needs 2023 as a fold, which data.seasons leaves out.
    shorter = load_params(
        "quick",
        PARAMS_DIR,
        {"data.seasons": [2024], "split.calibration_weeks": 5, "backtest.enabled": False},
    )
    validate_against_data(shorter, WEEKS.keys(), WEEKS)
