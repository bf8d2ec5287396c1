"""Request schemas: ranges from the feature formats, strictness, and the warm-up table fits them."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from exportguard.features.matrix import MISSING
from exportguard.features.registry import BY_NAME, FEATURES, feature_bounds
from exportguard.serving.engine import warmup_table
from exportguard.serving.schemas import AccountFeatures, ScoreRequest


def test_bounds_follow_formats_and_stay_clear_of_the_missing_sentinel() -> None:
    assert feature_bounds(BY_NAME["restricted_traffic_share_30d"]) == (0.0, 1.0)
    assert feature_bounds(BY_NAME["research_exemption"]) == (0.0, 1.0)
    assert feature_bounds(BY_NAME["api_keys_30d"])[0] == 0.0
    for f in FEATURES:
        low, high = feature_bounds(f)
        assert MISSING < low <= high < -MISSING


def test_warmup_rows_are_valid_requests() -> None:
    table = warmup_table()
    accounts = []
    for i, row in enumerate(table.to_dict(orient="records")):
        values = {k: (None if math.isnan(v) else v) for k, v in row.items()}
        accounts.append({"account_id": f"warm_{i}", **values})
    req = ScoreRequest.model_validate({"accounts": accounts})
    assert len(req.accounts) == len(table)
    assert all(v is None for k, v in req.accounts[0].model_dump().items() if k != "account_id")


@pytest.mark.parametrize("value", [0.0, 1.0, None])
def test_yes_no_features_take_0_1_or_null(value: float | None) -> None:
    assert AccountFeatures(account_id="a", research_exemption=value).research_exemption == value


def test_a_yes_no_feature_refuses_other_numbers() -> None:
    with pytest.raises(ValidationError, match="0, 1 or null"):
        AccountFeatures(account_id="a", research_exemption=0.3)


def test_models_are_frozen_and_strict() -> None:
    acc = AccountFeatures(account_id="a", api_keys_30d=3)
    with pytest.raises(ValidationError):
        acc.api_keys_30d = 4  # type: ignore[misc]
    with pytest.raises(ValidationError, match="valid number"):
        AccountFeatures.model_validate({"account_id": "a", "api_keys_30d": "3"})
