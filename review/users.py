"""The workspace's users: names, roles and argon2 password hashes in a YAML file.

The file (`EXPORTGUARD_REVIEW_USERS`, default `review-users.yaml`) holds

    users:
      - {name: ana, role: analyst, password_hash: "$argon2id$..."}

`exportguard review add-user NAME --role ROLE` adds or replaces one (the password is read
from the terminal, or from stdin with `--password-stdin`), so no plain password is ever
stored. Roles: analyst, supervisor, auditor (read-only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from exportguard.errors import ExportguardError
from exportguard.fileio import atomic_write_text
from exportguard.review.store import ROLES

NAME = re.compile(r"[a-z][a-z0-9._-]{1,62}")
MIN_PASSWORD = 12
_HASHER = PasswordHasher()
#: verified against when the user does not exist, so timing does not reveal names
_DUMMY = _HASHER.hash("not a real password, only for constant-time refusals")


class UsersError(ExportguardError):
    """The users file is missing, malformed, or a user entry is invalid."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


def load_users(path: Path) -> dict[str, User]:
    path = Path(path)
    if not path.is_file():
        raise UsersError(
            f"{path}: no users file; create the first user with "
            "`exportguard review add-user NAME --role supervisor`"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        entries = data["users"]
        users = {}
        for i, e in enumerate(entries, start=1):
            user = User(str(e["name"]), str(e["role"]), str(e["password_hash"]))
            if not NAME.fullmatch(user.name) or user.role not in ROLES:
                raise UsersError(f"{path}: user {i} has a bad name or role {user.role!r}")
            if user.name in users:
                raise UsersError(f"{path}: user {user.name!r} appears twice")
            users[user.name] = user
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise UsersError(f"{path}: malformed users file ({exc})") from None
    return users


def add_user(path: Path, name: str, role: str, password: str) -> User:
    if not NAME.fullmatch(name):
        raise UsersError(f"user name {name!r}: lower-case letters, digits, . _ - (2-63)")
    if role not in ROLES:
        raise UsersError(f"role {role!r}: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UsersError(f"the password must have at least {MIN_PASSWORD} characters")
    users = load_users(path) if Path(path).is_file() else {}
    users[name] = User(name, role, _HASHER.hash(password))
    text = yaml.safe_dump(
        {"users": [vars(u) for u in sorted(users.values(), key=lambda u: u.name)]},
        sort_keys=False,
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), text)
    Path(path).chmod(0o600)
    return users[name]


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    """The user if the password matches (argon2 verify), else None; same cost either way."""
    user = users.get(name)
    try:
        _HASHER.verify(user.password_hash if user else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    return user
