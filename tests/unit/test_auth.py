"""Bearer tokens: sources, rotation, ids instead of secrets, and 401 vs 403."""

from __future__ import annotations

from pathlib import Path

import pytest

from exportguard.serving.auth import (
    TOKENS_ENV,
    TOKENS_FILE_ENV,
    AuthConfigError,
    AuthError,
    TokenStore,
)

ALICE = "alice-secret-0123456789"
BOB = "bob-secret-abcdefghijkl"


def test_env_tokens_with_and_without_ids() -> None:
    store = TokenStore.from_env({TOKENS_ENV: f"alice:{ALICE}, {BOB} ,"})
    assert store.authenticate(f"Bearer {ALICE}") == "alice"
    bare_id = store.authenticate(f"bearer {BOB}")
    assert bare_id.startswith("sha256:") and BOB not in bare_id
    assert store.token_ids == ("alice", bare_id)


def test_file_tokens_allow_rotation_and_comments(tmp_path: Path) -> None:
    secrets = tmp_path / "tokens"
    secrets.write_text(f"# rotated 2026-11\nold:{ALICE}\n\nnew:{BOB}\n", encoding="utf-8")
    store = TokenStore.from_env({TOKENS_FILE_ENV: str(secrets)})
    assert store.authenticate(f"Bearer {ALICE}") == "old"
    assert store.authenticate(f"Bearer {BOB}") == "new"


def test_both_sources_combine(tmp_path: Path) -> None:
    secrets = tmp_path / "tokens"
    secrets.write_text(f"filed:{BOB}\n", encoding="utf-8")
    store = TokenStore.from_env({TOKENS_ENV: f"envd:{ALICE}", TOKENS_FILE_ENV: str(secrets)})
    assert set(store.token_ids) == {"envd", "filed"}


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("", 401),
        (f"Basic {ALICE}", 401),
        ("Bearer ", 401),
        (f"Bearer {ALICE}x", 403),
        ("Bearer wrong-token-of-some-length", 403),
        (f"Bearer {ALICE[:-1]}", 403),
        ("Bearer \u00e9\u00e9\u00e9", 403),
    ],
)
def test_missing_is_401_and_wrong_is_403(header: str | None, status: int) -> None:
    store = TokenStore.from_env({TOKENS_ENV: f"alice:{ALICE}"})
    with pytest.raises(AuthError) as err:
        store.authenticate(header)
    assert err.value.status == status
    assert ALICE not in str(err.value)


def test_no_token_refuses_to_start() -> None:
    with pytest.raises(AuthConfigError, match=TOKENS_ENV) as err:
        TokenStore.from_env({TOKENS_ENV: " , "})
    assert TOKENS_FILE_ENV in str(err.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("short", "at least 16"),
        ("a:short", "at least 16"),
        (f"bad id:{ALICE}", "token id"),
        (f"a:{ALICE},a:{BOB}", "more than once"),
        ("with space in the token x", "printable ASCII"),
    ],
)
def test_malformed_configuration_is_named(value: str, message: str) -> None:
    with pytest.raises(AuthConfigError, match=message) as err:
        TokenStore.from_env({TOKENS_ENV: value})
    assert ALICE not in str(err.value) and BOB not in str(err.value)


def test_unreadable_token_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read"):
        TokenStore.from_env({TOKENS_FILE_ENV: str(tmp_path / "absent")})
