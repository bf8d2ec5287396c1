"""The one settings object: every EXPORTGUARD_* variable, from a mapping or the process."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exportguard.settings import Settings, SettingsError, env_name


def test_defaults_and_a_mapping_ignore_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTGUARD_MODEL", "/elsewhere")
    s = Settings.from_env({})
    assert s.model == Path("models/champion") and s.max_connections_per_ip == 256
    assert s.balance_connections and s.api_tokens.get_secret_value() == ""
    assert Settings.from_env().model == Path("/elsewhere")  # the process environment


def test_values_are_parsed_and_blank_is_unset() -> None:
    s = Settings.from_env(
        {
            "EXPORTGUARD_HEADER_TIMEOUT_S": " 2.5 ",
            "EXPORTGUARD_MAX_CONNECTIONS_PER_IP": "12",
            "EXPORTGUARD_BALANCE_CONNECTIONS": "off",
            "EXPORTGUARD_AUDIT_LOG": "  ",
            "EXPORTGUARD_API_TOKENS_FILE": "/run/secrets/tokens",
            "EXPORTGUARD_DUCKDB_MEMORY_LIMIT": "4GB",
            "EXPORTGUARD_DUCKDB_THREADS": "2",
        }
    )
    assert s.duckdb_memory_limit == "4GB" and s.duckdb_threads == 2
    assert s.header_timeout_s == 2.5 and s.max_connections_per_ip == 12
    assert not s.balance_connections and s.audit_log == Path("audit/decisions.jsonl")
    assert s.api_tokens_file == Path("/run/secrets/tokens")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("header_timeout_s", "0.1", "must be between 0.5 and 600 seconds"),
        ("header_timeout_s", "nan", "must be between"),
        ("request_deadline_s", "inf", "must be between 0 and 3600"),
        ("max_connections_per_ip", "-3", "is not a whole number"),
        ("max_connections_per_ip", "0", "must be between 1 and 100000"),
        ("balance_connections", "maybe", "expected 1 or 0"),
        ("audit_sync", "never", "expected one of fsync, write"),
        ("duckdb_memory_limit", "lots", "expected an amount of memory such as 4GB"),
        ("duckdb_memory_limit", "-1GB", "expected an amount of memory"),
        ("duckdb_threads", "0", "expected a whole number of threads from 1 to 1024"),
        ("duckdb_threads", "two", "expected a whole number of threads"),
        ("scan_dir", "/no/such/directory", "is not a directory"),
    ],
)
def test_bad_values_name_the_variable(field: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as err:
        Settings.from_env({env_name(field): value})
    assert env_name(field) in str(err.value)


def test_unknown_variables_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="exportguard.settings"):
        Settings.from_env({"EXPORTGUARD_MODLE": "typo"})
    assert "EXPORTGUARD_MODLE" in caplog.text


def test_the_token_secret_is_not_printed() -> None:
    s = Settings.from_env({"EXPORTGUARD_API_TOKENS": "a:" + "s" * 30})
    assert "sss" not in repr(s) and "sss" not in str(s.model_dump())
