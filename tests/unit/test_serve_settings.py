"""Service settings from the environment: defaults, and clear refusals of bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from exportguard.serving.settings import DEFAULT_DEADLINE_S, ServeSettings


def test_defaults_when_nothing_is_set() -> None:
    s = ServeSettings.from_env({})
    assert s.model_path == Path("models/champion") and s.audit_log == Path("audit/decisions.jsonl")
    assert s.deadline_s == DEFAULT_DEADLINE_S and s.audit_sync == "fsync"


def test_values_from_the_environment() -> None:
    s = ServeSettings.from_env(
        {
            "EXPORTGUARD_AUDIT_LOG": "/var/log/eg/audit.jsonl",
            "EXPORTGUARD_REQUEST_DEADLINE_S": "2.5",
            "EXPORTGUARD_AUDIT_SYNC": " write ",
        }
    )
    assert s.audit_log == Path("/var/log/eg/audit.jsonl")
    assert s.deadline_s == 2.5 and s.audit_sync == "write"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "EXPORTGUARD_AUDIT_SYNC",
            "sometimes",
            "EXPORTGUARD_AUDIT_SYNC='sometimes': expected one of fsync, write",
        ),
        ("EXPORTGUARD_REQUEST_DEADLINE_S", "soon", "is not a number of seconds"),
        ("EXPORTGUARD_REQUEST_DEADLINE_S", "0", "must be between 0 and 3600"),
    ],
)
def test_bad_values_are_refused_by_name(var: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as err:
        ServeSettings.from_env({var: value})
    assert var in str(err.value)
