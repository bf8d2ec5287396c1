"""Request and response models of the scoring service: strict, so nothing is scored from coerced input.

Every feature field is `float | None` in pydantic strict mode: a JSON string ("0.5"), a
boolean, NaN or Infinity is refused rather than coerced, unknown fields are refused, and
each value must lie in the range its format allows (see `feature_bounds`). Missing
features are sent as null (or left out) and scored as missing, exactly as in training.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from exportguard.features.registry import FEATURES, Feature, feature_bounds

#: Most accounts in one request; larger lists are refused (split them client-side).
MAX_ACCOUNTS = 500
#: Largest request body accepted, in bytes (500 accounts x 50 features fit comfortably).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Largest number of reasons a caller may ask for.
MAX_TOP_K = 20

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
AccountId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


def _feature_field(feature: Feature) -> tuple[Any, Any]:
    low, high = feature_bounds(feature)
    return (
        float | None,
        Field(default=None, ge=low, le=high, description=feature.doc.format(value="{value}")),
    )


class _AccountBase(BaseModel):
    model_config = STRICT
    account_id: AccountId

    @field_validator(*(f.name for f in FEATURES if f.fmt == "bool"), check_fields=False)
    @classmethod
    def _zero_or_one(cls, v: float | None) -> float | None:
        if v is not None and v not in (0.0, 1.0):
            raise ValueError("a yes/no feature must be 0, 1 or null")
        return v


#: One account's features: `account_id` plus every declared feature (value or null).
AccountFeatures: type[_AccountBase] = create_model(  # type: ignore[call-overload]
    "AccountFeatures",
    __base__=_AccountBase,
    **{f.name: _feature_field(f) for f in FEATURES},
)


def _no_duplicates(ids: list[str]) -> None:
    seen: set[str] = set()
    dup = [a for a in ids if a in seen or seen.add(a)]  # type: ignore[func-returns-value]
    if dup:
        raise ValueError(f"account_id repeated in one request: {sorted(set(dup))[:5]}")


class ScoreRequest(BaseModel):
    """POST /score: accounts with their feature values."""

    model_config = STRICT
    accounts: list[AccountFeatures] = Field(min_length=1, max_length=MAX_ACCOUNTS)
    explain: bool = Field(False, description="include every feature's contribution")
    top_k: int = Field(5, ge=1, le=MAX_TOP_K)

    @field_validator("accounts")
    @classmethod
    def _unique(cls, v: list[_AccountBase]) -> list[_AccountBase]:
        _no_duplicates([a.account_id for a in v])
        return v


class ScoreAccountsRequest(BaseModel):
    """POST /score_accounts: account ids looked up in the latest feature snapshot."""

    model_config = STRICT
    account_ids: list[AccountId] = Field(min_length=1, max_length=MAX_ACCOUNTS)
    explain: bool = False
    top_k: int = Field(5, ge=1, le=MAX_TOP_K)

    @field_validator("account_ids")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        _no_duplicates(v)
        return v


class ReasonOut(BaseModel):
    feature: str
    family: str
    value: float | None
    contribution: float = Field(description="log-odds added to the raw score")
    sentence: str


class ModelInfo(BaseModel):
    name: str
    version: str
    sha256: str


class AccountScore(BaseModel):
    account_id: str
    score: float = Field(description="calibrated probability of circumvention")
    band: str
    raw_score: float = Field(description="LightGBM raw score (log-odds)")
    reasons: list[ReasonOut]
    contributions: dict[str, float] | None = None
    family_contributions: dict[str, float] | None = None
    base_value: float | None = None


class ItemError(BaseModel):
    account_id: str
    code: str
    error: str


class SnapshotInfo(BaseModel):
    as_of: str
    sha256: str
    rows: int


class ScoreResponse(BaseModel):
    request_id: str
    model: ModelInfo
    results: list[AccountScore]


class ScoreAccountsResponse(ScoreResponse):
    snapshot: SnapshotInfo
    errors: list[ItemError]


class FeatureInfo(BaseModel):
    name: str
    family: str
    description: str
    monotone: int
    low: float
    high: float


class MetadataResponse(BaseModel):
    model: ModelInfo
    run_id: str | None
    metrics: dict[str, Any]
    bands: dict[str, float]
    features: list[FeatureInfo]
    feature_spec: dict[str, Any]
    limits: dict[str, int]
