"""Every feature's reason sentence reads well for a missing, a zero and a typical value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exportguard.features.registry import FEATURES, feature_bounds, render_value, render_values

_TYPICAL = {"share": 0.25, "bool": 1.0, "int": 12.0, "hours": 3.5, "days": 40.0, "num": 1.7}


@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.name)
def test_sentence_for_missing_zero_and_typical_values(feature):
    missing = {feature.describe(None), feature.describe(math.nan)}
    assert len(missing) == 1
    (sentence,) = missing
    assert "not provided" in sentence and "missing value" in sentence
    assert "_" not in sentence and sentence.startswith(feature.label), sentence
    lo, hi = feature_bounds(feature)
    typical = min(max(_TYPICAL[feature.fmt], lo), hi)
    for value in (0.0, typical):
        text = feature.describe(value)
        assert text and "{" not in text and "}" not in text, text
        assert "not provided" not in text, text
    assert feature.describe(typical) != feature.describe(0.0) or feature.fmt == "bool"


@pytest.mark.parametrize("fmt", ["share", "int", "bool", "hours", "days", "num"])
def test_vectorised_rendering_equals_render_value(fmt: str) -> None:
    rng = np.random.default_rng(3)
    edges = [0.0, -0.0, 0.5, 1.5, 2.5, 0.005, 0.015, 0.125, 0.995, 1e-9, 123456.5, 99.95, -3.25]
    values = np.concatenate([edges, rng.uniform(-50, 50, 500), rng.uniform(0, 1, 500)])
    got = render_values(fmt, values).tolist()
    assert got == [render_value(fmt, float(v)) for v in values]
