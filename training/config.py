"""Typed, strict parameters: params.yaml (one section per stage) becomes frozen models.

A typo or an unknown key is an error naming the section and key, so a data scientist
never trains with a silently ignored setting. Every section has documented defaults,
so a missing section keeps them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from exportguard.errors import ExportguardError
from exportguard.features.policy import Policy


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GenerateParams(_Section):
    """The synthetic world the DVC pipeline generates (read by dvc.yaml, not by Python)."""

    accounts: int = Field(20_000, gt=0)
    seed: int = 7
    days: int = Field(180, gt=0)
    end: str = "2026-10-01"


class UnreviewedParams(_Section):
    """How never-reviewed accounts enter training: a weighted sample of presumed negatives.

    The sample is always drawn (and its features computed) when `ratio > 0`, so one feature
    set serves both settings; `enabled` and `weight` act at training time only.
    """

    enabled: bool = True
    #: presumed negatives drawn per labelled example
    ratio: float = Field(2.0, ge=0.0)
    #: sample weight of a presumed negative (< 1: some of them are undetected positives)
    weight: float = Field(0.5, gt=0.0, le=1.0)
    #: an account must be at least this old at its sampled as-of time
    min_account_age_days: float = Field(7.0, ge=0.0)
    seed: int = 7


class ExamplesParams(_Section):
    """Training examples: labelled accounts as of `labelled_at`, plus presumed negatives."""

    #: the data's "now" (ISO timestamp); default: the data horizon (features/horizon.py)
    as_of: str | None = None
    unreviewed: UnreviewedParams = UnreviewedParams()


class SplitParams(_Section):
    """Time split: train < cutoff, gap, validation, gap, test; folds step back in time."""

    gap_days: float = Field(7.0, ge=0.0)
    valid_days: float = Field(35.0, gt=0.0)
    test_days: float = Field(35.0, gt=0.0)
    n_folds: int = Field(3, ge=1)
    fold_step_days: float = Field(21.0, gt=0.0)
    min_train_examples: int = Field(100, ge=10)
    min_eval_positives: int = Field(5, ge=1)


class TrainParams(_Section):
    """LightGBM hyperparameters; moderate regularisation, monotone where the direction is known."""

    @model_validator(mode="after")
    def _rounds_consistent(self) -> TrainParams:
        if self.min_boost_rounds > self.num_boost_round:
            raise ValueError("min_boost_rounds must not exceed num_boost_round")
        return self

    seed: int = 7
    num_threads: int = Field(2, ge=1)
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    num_leaves: int = Field(15, ge=2)
    max_depth: int = -1
    min_data_in_leaf: int = Field(30, ge=1)
    feature_fraction: float = Field(0.8, gt=0.0, le=1.0)
    bagging_fraction: float = Field(0.8, gt=0.0, le=1.0)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0.0)
    max_bin: int = Field(63, ge=2)
    num_boost_round: int = Field(600, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    #: never stop before this many trees (validation AP on ~100 labels is noisy)
    min_boost_rounds: int = Field(50, ge=1)
    #: early stopping follows the validation AP averaged over this many iterations
    early_stopping_window: int = Field(10, ge=1)
    #: none: weights as sampled; balanced: positives up-weighted to the negatives' total
    class_weight: Literal["none", "balanced"] = "none"
    monotone: bool = True
    monotone_constraints_method: Literal["basic", "intermediate", "advanced"] = "basic"


class CalibrationParams(_Section):
    """Calibration fitted on the validation slice (later than training)."""

    method: Literal["platt", "isotonic"] = "platt"
    min_examples: int = Field(30, ge=2)


class BandsParams(_Section):
    """Risk bands from analyst capacity: 'review' = the accounts a team can review per week."""

    review_capacity_per_week: int = Field(50, ge=1)
    #: the 'high' band is this share of the weekly capacity (the most urgent cases)
    high_share_of_capacity: float = Field(0.2, gt=0.0, le=1.0)


class EvaluateParams(_Section):
    ece_bins: int = Field(10, ge=2)
    #: also report precision/recall at this share of the scored population (e.g. 1%)
    top_fraction: float = Field(0.01, gt=0.0, le=1.0)
    logreg_c: float = Field(1.0, gt=0.0)


class PromoteParams(_Section):
    """Promotion gate: the candidate may be at most `tolerance` worse on AP and recall@k."""

    tolerance: float = Field(0.0, ge=0.0, le=1.0)
    additivity_tolerance: float = Field(1e-6, gt=0.0)


class RegistryParams(_Section):
    model_name: str = Field("exportguard", min_length=1)
    experiment: str = Field("exportguard", min_length=1)
    champion_alias: str = Field("champion", min_length=1)


class Params(_Section):
    """All of params.yaml."""

    generate: GenerateParams = GenerateParams()
    policy: Policy = Policy()
    examples: ExamplesParams = ExamplesParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    calibration: CalibrationParams = CalibrationParams()
    bands: BandsParams = BandsParams()
    evaluate: EvaluateParams = EvaluateParams()
    promote: PromoteParams = PromoteParams()
    registry: RegistryParams = RegistryParams()

    @model_validator(mode="before")
    @classmethod
    def _none_sections_are_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    def flat(self) -> dict[str, Any]:
        """`section.key` -> value, for experiment tracking (nested dicts flattened)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = value

        walk("", self.model_dump(mode="json"))
        return out


def parse_params(data: Any, source: str = "params") -> Params:
    """Validate a params mapping; errors name the offending `section.key`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ExportguardError(
            f"{source}: expected a mapping of sections, got {type(data).__name__}"
        )
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ExportguardError(f"{source}: invalid parameters: {problems}") from None


def load_params(path: Path | None) -> Params:
    """Read params.yaml (None: all defaults)."""
    if path is None:
        return Params()
    path = Path(path)
    if not path.is_file():
        raise ExportguardError(f"{path}: parameters file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ExportguardError(f"{path}: not valid YAML ({exc})") from None
    return parse_params(data, str(path))
