"""Study parameters: YAML profiles in ``params/<profile>.yaml`` validated with pydantic.

Every notebook and the runner read the same validated :class:`Params`. A profile file contains every
setting of the study (data, split, features, sampler, phases, evaluation, backtest). Overrides are
dotted keys (``{"sampler.draws": 200}``) applied on top of the file before validation, so the same
checks cover both. Checks that need the data (is the test season there, does the split leave rows
in each role, can each backtest season be a fold) live in :func:`validate_against_data`.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

FEATURE_SETS = ("seed", "pregame")
SAMPLER_BACKENDS = ("nutpie", "numpyro", "pymc")
BAYESIAN_PHASES = ("phase1", "phase2_1", "phase2_2")
# Phase 2.3 methods: "cqr" is the conformalized quantile regression adjustment of
# rbyards.calibration.conformalize_quantiles, the only one implemented.
CALIBRATION_METHODS = ("cqr",)
BASELINE_MODELS = (
    "quantile_regression",
    "gradient_boosted_quantiles",
    "conformalized_quantile_regression",
    "split_conformal_forest",
    "empirical",
)
# Models a backtest can refit: the Bayesian phases with a posterior of their own (phase 2.3 only
# recalibrates phase 2.1 and 2.2 forecasts) and every baseline.
BAYESIAN_MODELS = ("phase1", "phase2_1", "phase2_2")
BACKTEST_MODELS = BAYESIAN_MODELS + BASELINE_MODELS

# Profile names become file and folder names, so path separators are not allowed.
PROFILE_PATTERN = r"^[A-Za-z0-9_-]+$"
EXECUTORS = ("local", "dask")
# Phases a sweep can repeat: each has one notebook run per feature set and no phase
# dependency. Phase 2.3 reads the phase 2.1 and 2.2 runs of its feature set, so it has no
# sweep of its own.
SWEEP_PHASES = ("phase1", "phase2_1", "phase2_2", "baselines", "backtest")

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(gt=0, lt=1)]


class ParamsError(ValueError):
    """Invalid parameters: a missing profile, an unknown key or a value out of range."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(_Section):
    """Location of the nflverse files and the rows to model."""

    nflverse_dir: str | None = None
    seasons: list[Annotated[int, Field(ge=1999, le=2100)]] | None = None
    min_carries: NonNegativeInt = 5
    download: bool = True

    @model_validator(mode="after")
    def _check_seasons(self) -> DataParams:
        if self.seasons is not None:
            if not self.seasons:
                raise ValueError("seasons must list at least one season, or be null to discover")
            if len(set(self.seasons)) != len(self.seasons):
                raise ValueError(f"seasons must not repeat a season, got {self.seasons}")
        return self


class SplitParams(_Section):
    """Time split: test rows are the test season from ``test_start_week`` on."""

    test_season: Annotated[int, Field(ge=1999, le=2100)] = 2024
    test_start_week: Annotated[int, Field(ge=1, le=22)] = 7
    calibration_weeks: NonNegativeInt = 6


class FeaturesParams(_Section):
    """Feature sets to fit and the shift of the log model scale."""

    feature_sets: list[Literal[FEATURE_SETS]] = Field(
        default_factory=lambda: list(FEATURE_SETS), min_length=1
    )
    log_shift: PositiveFloat = 10.0

    @model_validator(mode="after")
    def _check_unique(self) -> FeaturesParams:
        if len(set(self.feature_sets)) != len(self.feature_sets):
            raise ValueError(f"feature_sets must not repeat a name, got {self.feature_sets}")
        return self


class SamplerParams(_Section):
    """MCMC settings shared by the Bayesian phases."""

    backend: Literal[SAMPLER_BACKENDS] = "numpyro"
    chains: PositiveInt = 4
    tune: NonNegativeInt = 1000
    draws: PositiveInt = 1000
    target_accept: Probability = 0.95
    seed: NonNegativeInt = 20241
    time_limit_minutes: PositiveFloat = 30.0
    max_treedepth: Annotated[int, Field(ge=1, le=30)] = 10
    warmup_max_treedepth: Annotated[int, Field(ge=1, le=30)] | None = None
    predictive_draws: PositiveInt = 1000
    progress_reports: Annotated[int, Field(ge=1, le=100)] = 5
    precision: Literal["float64", "float32"] = "float64"

    @model_validator(mode="after")
    def _check_numpyro_options(self) -> SamplerParams:
        if self.backend == "numpyro":
            return self
        if self.precision != "float64":
            raise ValueError(
                f"precision {self.precision} requires backend numpyro. Change the backend or "
                "use precision float64"
            )
        if self.warmup_max_treedepth not in (None, self.max_treedepth):
            raise ValueError(
                "warmup_max_treedepth different from max_treedepth requires backend numpyro. "
                "Change the backend or set warmup_max_treedepth to null"
            )
        return self


class PhaseSamplerParams(_Section):
    """Sampler settings that one Bayesian phase sets for itself. Null keeps ``sampler``'s value."""

    target_accept: Probability | None = None
    max_treedepth: Annotated[int, Field(ge=1, le=30)] | None = None
    warmup_max_treedepth: Annotated[int, Field(ge=1, le=30)] | None = None
    precision: Literal["float64", "float32"] | None = None


class Phase1Params(_Section):
    """Phase 1: the seed Bayesian neural network with a Normal likelihood."""

    enabled: bool = True
    sampler: PhaseSamplerParams = Field(default_factory=PhaseSamplerParams)
    hidden_units: PositiveInt = 16
    sigma_prior: PositiveFloat = 0.3


class Phase21Params(_Section):
    """Phase 2.1: Student-t likelihood network."""

    enabled: bool = True
    sampler: PhaseSamplerParams = Field(default_factory=PhaseSamplerParams)
    hidden_units: PositiveInt = 24
    nu: PositiveFloat = 4.0
    sigma_prior: PositiveFloat = 20.0
    weight_sd: PositiveFloat = 1.0
    bias_sd: PositiveFloat = 10.0


class Phase22Params(_Section):
    """Phase 2.2: mixture of expert networks, one sigma prior per expert."""

    enabled: bool = True
    sampler: PhaseSamplerParams = Field(default_factory=PhaseSamplerParams)
    experts: PositiveInt = 3
    hidden_units: PositiveInt = 16
    sigma_priors: list[PositiveFloat] = Field(default_factory=lambda: [10.0, 15.0, 20.0])

    @model_validator(mode="after")
    def _check_priors(self) -> Phase22Params:
        if len(self.sigma_priors) != self.experts:
            raise ValueError(
                f"sigma_priors must list one value per expert: experts is {self.experts} but "
                f"sigma_priors has {len(self.sigma_priors)} values {self.sigma_priors}"
            )
        return self


class Phase23Params(_Section):
    """Phase 2.3: post-hoc calibration of the phase 2.1 and 2.2 intervals."""

    enabled: bool = True
    force: bool = False
    method: Literal[CALIBRATION_METHODS] = "cqr"


class BaselinesParams(_Section):
    """Non-Bayesian reference models."""

    enabled: bool = True
    models: list[Literal[BASELINE_MODELS]] = Field(
        default_factory=lambda: list(BASELINE_MODELS), min_length=1
    )

    @model_validator(mode="after")
    def _check_unique(self) -> BaselinesParams:
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must not repeat a name, got {self.models}")
        return self


class PhasesParams(_Section):
    """On/off switch and model settings of each phase."""

    phase1: Phase1Params = Field(default_factory=Phase1Params)
    phase2_1: Phase21Params = Field(default_factory=Phase21Params)
    phase2_2: Phase22Params = Field(default_factory=Phase22Params)
    phase2_3: Phase23Params = Field(default_factory=Phase23Params)
    baselines: BaselinesParams = Field(default_factory=BaselinesParams)


class ConvergenceParams(_Section):
    """Thresholds a sampling run must meet to count as converged."""

    max_rhat: Annotated[float, Field(ge=1.0)] = 1.01
    min_ess_bulk: NonNegativeInt = 400
    max_divergences: NonNegativeInt = 0


class EvaluationParams(_Section):
    """Interval levels, bootstrap settings and the acceptance thresholds."""

    levels: list[Probability] = Field(
        default_factory=lambda: [0.5, 0.68, 0.8, 0.9, 0.95], min_length=1
    )
    bootstrap_replicates: PositiveInt = 1000
    bootstrap_seed: NonNegativeInt = 7
    min_coverage_90: Annotated[float, Field(gt=0, le=1)] = 0.75
    max_mae: PositiveFloat = 19.0
    convergence: ConvergenceParams = Field(default_factory=ConvergenceParams)

    @model_validator(mode="after")
    def _check_levels(self) -> EvaluationParams:
        if sorted(set(self.levels)) != list(self.levels):
            raise ValueError(
                f"levels must be increasing without repeats, got {self.levels}; "
                f"for example {sorted(set(self.levels))}"
            )
        if 0.9 not in self.levels:
            raise ValueError(
                f"levels must include 0.9 because min_coverage_90 is checked at that level, "
                f"got {self.levels}"
            )
        return self


class BacktestParams(_Section):
    """Rolling-origin backtest: one fold per test season, each split like the main split.

    A fold trains on every modelled row before ``split.test_start_week`` of its season (the last
    ``split.calibration_weeks`` weeks held out for calibration) and tests on the rest of that
    season. Profiles without this section get no backtest.
    """

    enabled: bool = False
    seasons: list[Annotated[int, Field(ge=1999, le=2100)]] = Field(
        default_factory=lambda: [2022, 2023, 2024], min_length=1
    )
    models: list[Literal[BACKTEST_MODELS]] = Field(
        default_factory=lambda: list(BACKTEST_MODELS), min_length=1
    )

    @model_validator(mode="after")
    def _check_lists(self) -> BacktestParams:
        if sorted(set(self.seasons)) != list(self.seasons):
            raise ValueError(
                f"seasons must be increasing without repeats, got {self.seasons}; "
                f"for example {sorted(set(self.seasons))}"
            )
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must not repeat a name, got {self.models}")
        return self

    @property
    def bayesian_models(self) -> list[str]:
        """The Bayesian phases in ``models``, in the order listed."""
        return [name for name in self.models if name in BAYESIAN_MODELS]

    @property
    def baseline_models(self) -> list[str]:
        """The baselines in ``models``, in the order listed."""
        return [name for name in self.models if name in BASELINE_MODELS]


class ExecutionParams(_Section):
    """Executor, workers, core budget and output folder of the notebook runs.

    None of these settings enter a run's resume key, and none changes a run's draws: the core
    budget limits BLAS and OpenMP threads and PyMC's processes, not NumPyro's parallel chains.
    """

    executor: Literal[EXECUTORS] = "local"
    # local: processes run at once (null: one per CPU core; 1 runs in the runner's process).
    # dask: worker processes of the LocalCluster started when no scheduler is given.
    workers: PositiveInt | None = None
    # Address of a running dask scheduler, such as tcp://10.0.0.5:8786; null starts a
    # LocalCluster on 127.0.0.1.
    scheduler: str | None = None
    # CPU cores one run may use for sampling threads; null: CPU cores divided by workers.
    cores_per_run: PositiveInt | None = None
    # Root of all outputs: a folder or a file:// URL that every worker can write to; null
    # uses outputs/ in the checkout. The --output-root option takes precedence.
    output_root: str | None = None


class SweepParams(_Section):
    """One parameter and the values to repeat its phases with, one notebook run per value."""

    parameter: Annotated[str, Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")]
    values: list[Any] = Field(min_length=1)
    # Phases to repeat; null takes the phase from a parameter under phases.<phase>. or backtest.
    phases: list[Literal[SWEEP_PHASES]] | None = None

    @model_validator(mode="after")
    def _check_phases(self) -> SweepParams:
        if self.phases is None and not self.swept_phases:
            raise ValueError(
                f"sweep of {self.parameter} must list its phases, for example phases: "
                f"[phase2_1]; only parameters under phases.<phase>. or backtest. name their "
                "phase themselves"
            )
        if self.phases is not None and len(set(self.phases)) != len(self.phases):
            raise ValueError(f"sweep phases must not repeat a name, got {self.phases}")
        if len({repr(value) for value in self.values}) != len(self.values):
            raise ValueError(f"sweep values must not repeat, got {self.values}")
        return self

    @property
    def swept_phases(self) -> list[str]:
        """The phases to repeat: ``phases`` when listed, else the phase the parameter names."""
        if self.phases is not None:
            return list(self.phases)
        parts = self.parameter.split(".")
        if parts[0] == "phases" and parts[1] in SWEEP_PHASES:
            return [parts[1]]
        if parts[0] == "backtest":
            return ["backtest"]
        return []


class Params(_Section):
    """All settings of one profile."""

    profile: Annotated[str, Field(pattern=PROFILE_PATTERN)]
    data: DataParams = Field(default_factory=DataParams)
    split: SplitParams = Field(default_factory=SplitParams)
    features: FeaturesParams = Field(default_factory=FeaturesParams)
    sampler: SamplerParams = Field(default_factory=SamplerParams)
    phases: PhasesParams = Field(default_factory=PhasesParams)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    backtest: BacktestParams = Field(default_factory=BacktestParams)
    execution: ExecutionParams = Field(default_factory=ExecutionParams)
    sweep: list[SweepParams] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_split_seasons(self) -> Params:
        seasons = self.data.seasons
        if seasons is not None and self.split.test_season not in seasons:
            raise ValueError(
                f"split.test_season {self.split.test_season} is not in data.seasons {seasons}; "
                "add it to data.seasons or set data.seasons to null to use every season found"
            )
        return self

    @model_validator(mode="after")
    def _check_sweep(self) -> Params:
        parameters = [sweep.parameter for sweep in self.sweep]
        repeated = sorted({name for name in parameters if parameters.count(name) > 1})
        if repeated:
            raise ValueError(f"sweep lists {', '.join(repeated)} more than once; merge the values")
        base = self.model_dump(exclude={"sweep"})
        for index, sweep in enumerate(self.sweep):
            if sweep.parameter.split(".")[0] in ("sweep", "execution", "profile"):
                raise ValueError(
                    f"sweep.{index}.parameter = {sweep.parameter} is invalid: sweeps repeat "
                    "model, data or sampler settings, not the runner's own"
                )
            for value in sweep.values:
                try:
                    Params.model_validate(apply_overrides(base, {sweep.parameter: value}))
                except (ValidationError, ParamsError) as exc:
                    reason = _first_error(exc)
                    raise ValueError(
                        f"sweep.{index}: {sweep.parameter} = {value!r} is invalid: {reason}"
                    ) from None
        return self

    @model_validator(mode="after")
    def _check_phase_samplers(self) -> Params:
        for phase in BAYESIAN_PHASES:
            try:
                self.sampler_for(phase)
            except ValidationError as exc:
                reason = _first_error(exc)
                raise ValueError(f"phases.{phase}.sampler is invalid: {reason}") from None
        return self

    def phase_sampler_changes(self, phase: str) -> dict[str, Any]:
        """Return the sampler settings a Bayesian phase sets for itself, which take precedence."""
        return getattr(self.phases, phase).sampler.model_dump(exclude_none=True)

    def sampler_for(self, phase: str) -> SamplerParams:
        """Return the sampler settings of a Bayesian phase: ``sampler`` with its own changes."""
        changes = self.phase_sampler_changes(phase)
        if not changes:
            return self.sampler
        return SamplerParams.model_validate({**self.sampler.model_dump(), **changes})

    def with_overrides(self, overrides: Mapping[str, Any]) -> Params:
        """Return these parameters with dotted-key ``overrides`` applied and validated again."""
        if not overrides:
            return self
        return Params.model_validate(apply_overrides(self.model_dump(), overrides))


def _first_error(exc: ValidationError | ParamsError) -> str:
    """Describe the first problem of a validation error in one line."""
    if isinstance(exc, ParamsError):
        return str(exc)
    error = exc.errors()[0]
    return _describe_error(error, ".".join(str(part) for part in error["loc"]))


def available_profiles(params_dir: str | Path) -> list[str]:
    """List the profile names that have a ``<name>.yaml`` file in ``params_dir``.

    Parameters
    ----------
    params_dir : str or Path
        Folder of profile files.

    Returns
    -------
    list of str
        Sorted profile names; empty when the folder does not exist.
    """
    folder = Path(params_dir)
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.yaml"))


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted-key overrides set.

    Parameters
    ----------
    raw : dict
        Parameters as read from YAML.
    overrides : mapping of str to value, optional
        Dotted keys such as ``"sampler.draws"`` and the values to set there. A key whose parent
        does not exist is created, so validation reports it as an unknown key.

    Returns
    -------
    dict
        New nested dict; ``raw`` is not modified.

    Raises
    ------
    ParamsError
        When a key is empty or passes through a value that is not a mapping.
    """
    result = copy.deepcopy(raw)
    for dotted_key, value in (overrides or {}).items():
        parts = str(dotted_key).split(".")
        if not all(parts):
            raise ParamsError(
                f"override key {dotted_key!r} is invalid: use dotted names such as 'sampler.draws'"
            )
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ParamsError(
                    f"override {dotted_key}={value!r} is invalid: {prefix} is the value "
                    f"{child!r}, not a section with keys"
                )
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return result


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Return the pydantic model that owns the field at ``loc`` (None when not a model)."""
    model: type[BaseModel] = Params
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    """List the keys allowed in the section that contains ``loc``."""
    owner = _model_at(loc[:-1])
    return ", ".join(owner.model_fields) if owner is not None else ""


def _describe_error(error: Mapping[str, Any], dotted: str) -> str:
    """Describe one pydantic error: key, value and what is allowed there."""
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {dotted} = {error['input']!r}; allowed keys: {_allowed_keys(loc)}"
    if error["type"] == "missing":
        return f"missing key {dotted}"
    ctx = error.get("ctx") or {}
    if error["type"] == "value_error":
        # Raised by a model validator: the message names the keys and values itself.
        reason = str(ctx.get("error", error["msg"]))
        return reason if not loc else f"{dotted}: {reason}"
    value = error["input"]
    if "expected" in ctx:
        return f"{dotted} = {value!r} is not allowed; allowed values: {ctx['expected']}"
    return f"{dotted} = {value!r} is invalid: {error['msg']}"


def _format_validation_error(
    exc: ValidationError, source: str, overrides: Mapping[str, Any] | None
) -> str:
    """Turn a pydantic ValidationError into one line per problem, naming file, key and value."""
    lines = []
    override_keys = set(overrides or {})
    for error in exc.errors():
        dotted = ".".join(str(part) for part in error["loc"])
        from_override = bool(dotted) and any(
            dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + ".")
            for key in override_keys
        )
        origin = f"{source} (value from overrides)" if from_override else source
        lines.append(f"{origin}: {_describe_error(error, dotted)}")
    return "\n".join(lines)


def load_params(
    profile: str,
    params_dir: str | Path = "params",
    overrides: Mapping[str, Any] | None = None,
) -> Params:
    """Read and validate ``params_dir/<profile>.yaml`` with optional dotted-key overrides.

    Parameters
    ----------
    profile : str
        Profile name, the file stem (``"quick"``, ``"default"``). The file's ``profile`` key must
        match it.
    params_dir : str or Path, default "params"
        Folder holding the profile files.
    overrides : mapping of str to value, optional
        Dotted keys set on top of the file, such as ``{"sampler.draws": 200}``.

    Returns
    -------
    Params
        The validated parameters.

    Raises
    ------
    ParamsError
        When the file is missing (the message lists the profiles that exist), is not valid YAML,
        or contains an unknown key or an invalid value (the message names the file, the dotted key,
        the value and the allowed values).
    """
    if not re.fullmatch(PROFILE_PATTERN, profile):
        raise ParamsError(
            f"profile name {profile!r} is invalid: use letters, digits, '_' and '-' only, "
            f"such as one of {', '.join(available_profiles(params_dir)) or 'quick, default'}"
        )
    path = Path(params_dir) / f"{profile}.yaml"
    if not path.is_file():
        found = available_profiles(params_dir)
        listing = ", ".join(found) if found else "none"
        raise ParamsError(
            f"profile {profile!r} not found: no file {path}; profiles in {params_dir}: {listing}"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: invalid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    merged = apply_overrides(raw, overrides)
    try:
        params = Params.model_validate(merged)
    except ValidationError as exc:
        raise ParamsError(_format_validation_error(exc, str(path), overrides)) from exc
    if params.profile != profile:
        raise ParamsError(
            f"{path}: profile = {params.profile!r} does not match the file name; "
            f"set profile: {profile} in that file"
        )
    logger.debug("loaded parameters %s with overrides %s", path, dict(overrides or {}))
    return params


def validate_against_data(
    params: Params,
    seasons_available: Iterable[int],
    weeks_by_season: Mapping[int, Iterable[int]],
    *,
    source: str | None = None,
) -> None:
    """Check that the split in ``params`` leaves rows for training and testing in the data.

    Parameters
    ----------
    params : Params
        Validated parameters.
    seasons_available : iterable of int
        Seasons that have data files.
    weeks_by_season : mapping of int to iterable of int
        Weeks with modelled rows in each season.
    source : str, optional
        Where the parameters came from, such as the profile file. Every message starts with it.

    Raises
    ------
    ParamsError
        When a listed season has no data, the test season is not in the data, the test season has
        no week at or after ``test_start_week``, or the training period has no more weeks than
        ``calibration_weeks`` takes out of it; with the backtest enabled, also when a backtest
        season cannot be a fold (see :func:`validate_backtest_seasons`).
    """
    prefix = f"{source}: " if source else ""
    available = sorted({int(season) for season in seasons_available})
    weeks = _weeks_by_season(weeks_by_season)
    split = params.split
    if params.data.seasons is not None:
        missing = sorted(set(params.data.seasons) - set(available))
        if missing:
            raise ParamsError(
                f"{prefix}data.seasons lists {missing} but the data has seasons {available}; "
                "remove them from data.seasons or add their files"
            )
    seasons = _modelled_seasons(params, available)
    if split.test_season not in seasons:
        raise ParamsError(
            f"{prefix}split.test_season = {split.test_season} is not in the data (seasons "
            f"{seasons}); choose one of those seasons"
        )
    test_season_weeks = weeks.get(split.test_season, [])
    test_weeks = [w for w in test_season_weeks if w >= split.test_start_week]
    if not test_weeks:
        last = max(test_season_weeks) if test_season_weeks else None
        raise ParamsError(
            f"{prefix}split.test_start_week = {split.test_start_week} leaves no test rows: season "
            f"{split.test_season} has weeks up to {last}; choose a week <= {last}"
        )
    training_weeks = _training_week_count(params, seasons, weeks, split.test_season)
    if training_weeks <= split.calibration_weeks:
        raise ParamsError(
            f"{prefix}split.calibration_weeks = {split.calibration_weeks} leaves no training rows: "
            f"the training period has {training_weeks} weeks; lower calibration_weeks or add "
            "earlier seasons"
        )
    if params.backtest.enabled:
        validate_backtest_seasons(params, available, weeks, source=source)


def backtest_season_problems(
    params: Params,
    seasons_available: Iterable[int],
    weeks_by_season: Mapping[int, Iterable[int]],
) -> dict[int, str]:
    """Return why each season of the data or of ``backtest.seasons`` cannot be a backtest fold.

    The modelled seasons are ``data.seasons``, or every available season when that is null. A
    fold's season must be one of them and must have an earlier one to train on. It also needs a
    week at or after ``split.test_start_week`` and more training weeks than
    ``split.calibration_weeks``.

    Parameters
    ----------
    params : Params
        Validated parameters.
    seasons_available : iterable of int
        Seasons that have data files.
    weeks_by_season : mapping of int to iterable of int
        Weeks with modelled rows in each season.

    Returns
    -------
    dict of int to str
        Season to the reason it cannot be a fold; seasons that can be folds are absent.
    """
    available = sorted({int(season) for season in seasons_available})
    weeks = _weeks_by_season(weeks_by_season)
    seasons = _modelled_seasons(params, available)
    split = params.split
    problems = {}
    for season in sorted(set(seasons) | set(params.backtest.seasons)):
        if season not in seasons:
            problems[season] = f"{season} is not in the data (seasons {seasons})"
        elif season == seasons[0]:
            problems[season] = f"{season} has no earlier season to train on"
        elif not any(week >= split.test_start_week for week in weeks.get(season, [])):
            last = max(weeks.get(season, []), default=None)
            problems[season] = (
                f"{season} has no week >= split.test_start_week = {split.test_start_week} "
                f"(last week {last})"
            )
        elif _training_week_count(params, seasons, weeks, season) <= split.calibration_weeks:
            problems[season] = (
                f"{season} has no more training weeks than split.calibration_weeks = "
                f"{split.calibration_weeks}"
            )
    return problems


def validate_backtest_seasons(
    params: Params,
    seasons_available: Iterable[int],
    weeks_by_season: Mapping[int, Iterable[int]],
    *,
    source: str | None = None,
) -> list[int]:
    """Check that every season in ``backtest.seasons`` can be a fold, and return them.

    Parameters
    ----------
    params : Params
        Validated parameters.
    seasons_available : iterable of int
        Seasons that have data files, as found by :func:`rbyards.data.discover_seasons`.
    weeks_by_season : mapping of int to iterable of int
        Weeks with modelled rows in each season.
    source : str, optional
        Where the parameters came from, such as the profile file. The message starts with it.

    Returns
    -------
    list of int
        ``backtest.seasons``, increasing.

    Raises
    ------
    ParamsError
        When a listed season cannot be a fold (see :func:`backtest_season_problems`); the
        message names the key, each rejected season with its reason and the allowed seasons.
    """
    available = sorted({int(season) for season in seasons_available})
    problems = backtest_season_problems(params, available, weeks_by_season)
    requested = list(params.backtest.seasons)
    rejected = [season for season in requested if season in problems]
    if rejected:
        allowed = [s for s in _modelled_seasons(params, available) if s not in problems]
        prefix = f"{source}: " if source else ""
        reasons = "; ".join(problems[season] for season in rejected)
        raise ParamsError(
            f"{prefix}backtest.seasons = {requested} is invalid: {reasons}; allowed values: "
            f"{allowed}. Remove those seasons from backtest.seasons or set backtest.enabled "
            "to false"
        )
    return requested


def _weeks_by_season(weeks_by_season: Mapping[int, Iterable[int]]) -> dict[int, list[int]]:
    return {int(season): sorted({int(w) for w in ws}) for season, ws in weeks_by_season.items()}


def _modelled_seasons(params: Params, available: list[int]) -> list[int]:
    """Return the seasons the study models: ``data.seasons`` when listed, else those available."""
    if params.data.seasons is not None:
        return sorted(params.data.seasons)
    return available


def _training_week_count(
    params: Params, seasons: list[int], weeks: Mapping[int, list[int]], test_season: int
) -> int:
    """Count the (season, week) pairs before week ``split.test_start_week`` of ``test_season``."""
    earlier = sum(len(weeks.get(season, [])) for season in seasons if season < test_season)
    start = params.split.test_start_week
    return earlier + sum(1 for week in weeks.get(test_season, []) if week < start)
