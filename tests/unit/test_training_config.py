"""params.yaml becomes strict, typed config: typos and bad values are errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from exportguard.errors import ExportguardError
from exportguard.training.config import Params, load_params, parse_params

REPO = Path(__file__).resolve().parents[2]


def test_repository_params_file_is_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.registry.model_name == "exportguard"
    assert params.train.num_threads >= 1
    assert params.examples.unreviewed.enabled is True


def test_missing_sections_keep_defaults() -> None:
    assert parse_params({}) == Params()
    assert parse_params({"train": None}).train == Params().train


def test_unknown_key_is_named() -> None:
    with pytest.raises(ExportguardError, match=r"train\.learnng_rate"):
        parse_params({"train": {"learnng_rate": 0.1}})


def test_bad_value_is_named() -> None:
    with pytest.raises(ExportguardError, match=r"train\.class_weight"):
        parse_params({"train": {"class_weight": "sometimes"}})
    with pytest.raises(ExportguardError, match=r"bands\.review_capacity_per_week"):
        parse_params({"bands": {"review_capacity_per_week": 0}})


def test_params_are_frozen() -> None:
    params = Params()
    with pytest.raises(ValueError):
        params.train.seed = 3  # type: ignore[misc]


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ExportguardError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n", encoding="utf-8")
    with pytest.raises(ExportguardError, match="not valid YAML"):
        load_params(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ExportguardError, match="mapping"):
        load_params(listy)


def test_flat_keys_for_tracking() -> None:
    flat = Params().flat()
    assert flat["train.learning_rate"] == 0.05
    assert flat["examples.unreviewed.ratio"] == 2.0
    assert all("." in key for key in flat)
