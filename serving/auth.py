"""Bearer-token authentication: tokens from the environment or a secrets file, compared in constant time.

Sources (both may be used; all tokens listed are accepted, which is how rotation works:
add the new token, move callers over, remove the old one):

- `EXPORTGUARD_API_TOKENS`: comma-separated `token` or `id:token` entries,
- `EXPORTGUARD_API_TOKENS_FILE`: a file with one `token` or `id:token` per line
  (blank lines and `#` comments ignored).

The audit log records the token's id, never the token: the given id, or for a bare token
`sha256:` + the first 12 hex digits of its hash. The server refuses to start without a
token; there is deliberately no switch to turn authentication off.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass

from exportguard.errors import ExportguardError
from exportguard.settings import Settings, env_name

log = logging.getLogger(__name__)

TOKENS_ENV = env_name("api_tokens")
TOKENS_FILE_ENV = env_name("api_tokens_file")
MIN_TOKEN_CHARS = 16
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


class AuthConfigError(ExportguardError):
    """The token configuration is missing or malformed."""


class AuthError(Exception):
    """A request failed authentication: `status` is 401 (no credentials) or 403 (wrong ones)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Token:
    token_id: str
    digest: bytes  # sha256 of the token: compared instead of the token itself


def _token_id(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def parse_entry(entry: str, where: str) -> Token:
    """One `token` or `id:token` entry; the error names where it came from, never the secret."""
    token_id, sep, secret = entry.partition(":")
    if not sep:
        token_id, secret = "", entry
    if token_id and not _ID_RE.match(token_id):
        raise AuthConfigError(f"{where}: token id {token_id!r} must match [A-Za-z0-9_.-]{{1,64}}")
    if not _TOKEN_RE.match(secret):
        raise AuthConfigError(f"{where}: token must be printable ASCII without spaces")
    if len(secret) < MIN_TOKEN_CHARS:
        raise AuthConfigError(
            f"{where}: token is {len(secret)} characters; at least {MIN_TOKEN_CHARS} are required"
        )
    return Token(token_id or _token_id(secret), hashlib.sha256(secret.encode()).digest())


class TokenStore:
    """The accepted tokens; `authenticate` maps an Authorization header to a token id."""

    def __init__(self, tokens: list[Token]) -> None:
        if not tokens:
            raise AuthConfigError(
                f"no API token configured: set {TOKENS_ENV} (comma-separated `id:token` entries) "
                f"or {TOKENS_FILE_ENV} (a file with one per line); the service never runs unauthenticated"
            )
        ids = [t.token_id for t in tokens]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise AuthConfigError(f"token id(s) configured more than once: {dup}")
        self._tokens = tuple(tokens)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TokenStore:
        """Read tokens from `EXPORTGUARD_API_TOKENS` and `EXPORTGUARD_API_TOKENS_FILE`."""
        settings = Settings.from_env(environ)
        tokens: list[Token] = []
        raw = settings.api_tokens.get_secret_value()
        for n, entry in enumerate(raw.split(","), start=1):
            if entry.strip():
                tokens.append(parse_entry(entry.strip(), f"{TOKENS_ENV} entry {n}"))
        if settings.api_tokens_file is not None:
            path = settings.api_tokens_file
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise AuthConfigError(
                    f"{TOKENS_FILE_ENV}={path}: cannot read ({exc.strerror})"
                ) from None
            for n, line in enumerate(lines, start=1):
                line = line.strip()
                if line and not line.startswith("#"):
                    tokens.append(parse_entry(line, f"{path} line {n}"))
        store = cls(tokens)
        log.info(
            "accepting %d API token(s): %s", len(tokens), ", ".join(t.token_id for t in tokens)
        )
        return store

    @property
    def token_ids(self) -> tuple[str, ...]:
        return tuple(t.token_id for t in self._tokens)

    def authenticate(self, authorization: str | None) -> str:
        """The caller's token id for an `Authorization: Bearer <token>` header, else AuthError."""
        if not authorization:
            raise AuthError(401, "missing Authorization header (expected `Bearer <token>`)")
        scheme, _, secret = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError(401, "Authorization header must be `Bearer <token>`")
        digest = hashlib.sha256(secret.strip().encode("utf-8", "replace")).digest()
        match = None
        for token in self._tokens:  # no early exit: time does not depend on which token matched
            if hmac.compare_digest(digest, token.digest):
                match = token.token_id
        if match is None:
            raise AuthError(403, "invalid API token")
        return match
