"""Every `EXPORTGUARD_*` environment variable, read and checked in one place (pydantic-settings).

`Settings.from_env()` reads the process environment; `Settings.from_env(mapping)` reads a
given mapping only (what `exportguard serve` hands its worker processes, and tests). An
empty or blank variable counts as unset. A bad value is refused with a `SettingsError`
naming the variable and what is expected; a secret (API tokens) is never echoed.

| variable | default | read by |
|---|---|---|
| EXPORTGUARD_MODEL | models/champion | serve |
| EXPORTGUARD_FEATURE_STORE | data/feature_store | serve, batch (snapshot) |
| EXPORTGUARD_AUDIT_LOG | audit/decisions.jsonl | serve, `audit verify` |
| EXPORTGUARD_AUDIT_SYNC | fsync (or write) | serve |
| EXPORTGUARD_REQUEST_DEADLINE_S | 20 (0 < s < 3600) | serve |
| EXPORTGUARD_HEADER_TIMEOUT_S | 10 (0.5 to 600) | serve |
| EXPORTGUARD_MAX_CONNECTIONS_PER_IP | 256 (1 to 100000) | serve |
| EXPORTGUARD_BALANCE_CONNECTIONS | 1 (or 0) | serve |
| EXPORTGUARD_CONNECTION_TABLE | set by `exportguard serve` | serve workers |
| EXPORTGUARD_API_TOKENS | (none) | serve |
| EXPORTGUARD_API_TOKENS_FILE | (none) | serve |
| EXPORTGUARD_REVIEW_DB | sqlite:///data/review.db | review |
| EXPORTGUARD_REVIEW_USERS | review-users.yaml | review (users, roles, argon2 hashes) |
| EXPORTGUARD_REVIEW_SECRET | (random per process) | review (signs session cookies) |
| EXPORTGUARD_DUCKDB_MEMORY_LIMIT | DuckDB's (80% of RAM) | features (DuckDB spills past it) |
| EXPORTGUARD_DUCKDB_THREADS | DuckDB's (all cores) | features |
| EXPORTGUARD_SCAN_DIR | the system's temporary directory | validate, features, batch --data (validated copies of the activity tables, DuckDB's spill files; with Spark on a cluster, storage every executor reads) |
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exportguard.errors import ExportguardError

log = logging.getLogger(__name__)

PREFIX = "EXPORTGUARD_"
#: set while `from_env(mapping)` builds settings from that mapping alone
_MAPPING_ONLY: ContextVar[bool] = ContextVar("exportguard_settings_mapping_only", default=False)
AUDIT_SYNC_MODES = ("fsync", "write")


class SettingsError(ExportguardError, ValueError):
    """An EXPORTGUARD_* variable holds a value that cannot be used; the message names it."""


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def _number(value: Any, var: str, unit: str) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"{var}={value!r} is not a number of {unit}") from None
    return value


def _between(value: float, var: str, low: float, high: float, unit: str, open_low: bool) -> float:
    ok = (low < value if open_low else low <= value) and value <= high
    if not ok or value != value:
        raise ValueError(f"{var}={value} must be between {low:g} and {high:g} {unit}")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_ignore_empty=True,
        str_strip_whitespace=True,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
    )

    model: Path = Path("models/champion")
    feature_store: Path = Path("data/feature_store")
    audit_log: Path = Path("audit/decisions.jsonl")
    audit_sync: str = "fsync"
    request_deadline_s: float = 20.0
    header_timeout_s: float = 10.0
    max_connections_per_ip: int = Field(256)
    balance_connections: bool = True
    connection_table: Path | None = None
    api_tokens: SecretStr = SecretStr("")
    api_tokens_file: Path | None = None
    review_db: SecretStr = SecretStr("sqlite:///data/review.db")  # a URL may hold a password
    review_users: Path = Path("review-users.yaml")
    review_secret: SecretStr = SecretStr("")
    duckdb_memory_limit: str | None = None
    duckdb_threads: int | None = None
    scan_dir: Path | None = None

    @field_validator("audit_sync", mode="before")
    @classmethod
    def _sync(cls, value: Any) -> Any:
        mode = str(value).strip()
        if mode not in AUDIT_SYNC_MODES:
            raise ValueError(
                f"{env_name('audit_sync')}={mode!r}: expected one of {', '.join(AUDIT_SYNC_MODES)}"
            )
        return mode

    @field_validator("request_deadline_s", mode="before")
    @classmethod
    def _deadline(cls, value: Any) -> Any:
        var = env_name("request_deadline_s")
        return _between(float(_number(value, var, "seconds")), var, 0, 3600, "seconds", True)

    @field_validator("header_timeout_s", mode="before")
    @classmethod
    def _header_timeout(cls, value: Any) -> Any:
        var = env_name("header_timeout_s")
        return _between(float(_number(value, var, "seconds")), var, 0.5, 600, "seconds", False)

    @field_validator("max_connections_per_ip", mode="before")
    @classmethod
    def _per_ip(cls, value: Any) -> Any:
        var = env_name("max_connections_per_ip")
        if isinstance(value, str):
            if not value.strip().isdigit():
                raise ValueError(f"{var}={value!r} is not a whole number")
            value = int(value.strip())
        if not 1 <= int(value) <= 100_000:
            raise ValueError(f"{var}={value} must be between 1 and 100000")
        return int(value)

    @field_validator("duckdb_memory_limit", mode="before")
    @classmethod
    def _memory_limit(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", text, re.IGNORECASE):
            raise ValueError(
                f"{env_name('duckdb_memory_limit')}={text!r}: expected an amount of memory such "
                "as 4GB or 512MiB"
            )
        return text

    @field_validator("duckdb_threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        if value is None:
            return None
        var = env_name("duckdb_threads")
        text = str(value).strip()
        if not text.isdigit() or not 1 <= int(text) <= 1024:
            raise ValueError(f"{var}={text!r}: expected a whole number of threads from 1 to 1024")
        return int(text)

    @field_validator("scan_dir", mode="after")
    @classmethod
    def _scan_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{env_name('scan_dir')}={str(value)!r} is not a directory")
        return value

    @field_validator("balance_connections", mode="before")
    @classmethod
    def _balance(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        raw = str(value).strip().lower()
        if raw not in ("0", "1", "false", "true", "off", "on"):
            raise ValueError(f"{env_name('balance_connections')}={raw!r}: expected 1 or 0")
        return raw in ("1", "true", "on")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The process environment only; no .env or secrets files (a given mapping: nothing else)."""
        return (init_settings,) if _MAPPING_ONLY.get() else (init_settings, env_settings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from the process environment, or from `environ` only when given."""
        try:
            if environ is None:
                settings = cls()
                environ = os.environ
            else:
                values: dict[str, Any] = {
                    name: environ[env_name(name)]
                    for name in cls.model_fields
                    if environ.get(env_name(name), "").strip()
                }
                token = _MAPPING_ONLY.set(True)
                try:
                    settings = cls(**values)
                finally:
                    _MAPPING_ONLY.reset(token)
        except ValidationError as exc:
            raise SettingsError(_message(exc)) from None
        known = {env_name(name) for name in cls.model_fields}
        unknown = sorted(
            k for k in environ if k.upper().startswith(PREFIX) and k.upper() not in known
        )
        if unknown:
            log.warning("ignoring unknown setting(s) %s (see exportguard/settings.py)", unknown)
        return settings


def _message(exc: ValidationError) -> str:
    """The first error, as the variable and what is wrong (validator messages name both)."""
    err = exc.errors(include_input=False)[0]
    field = str(err["loc"][0]) if err["loc"] else "?"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg if PREFIX in msg else f"{env_name(field)}: {msg}"
