"""Password and token hashing: argon2id for what people choose, SHA-256 for random tokens."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, memory-hard, library defaults (RFC 9106 profile)
# Verifying against this keeps unknown usernames as slow as known ones.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

TOKEN_PREFIX = "ioc_"  # noqa: S105 (a marker, not a secret)
MIN_PASSWORD_LENGTH = 10


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def new_token(kind: str = "") -> str:
    """A random bearer secret (256 bits), recognisable by its prefix when leaked."""
    return f"{TOKEN_PREFIX}{kind}{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> bytes:
    # Tokens are 256-bit random: a fast hash is enough and keeps lookups indexable.
    return hashlib.sha256(token.encode()).digest()


# The same rule as hub_user's CHECK constraint (migrations/0002_auth.sql).
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"


def username_problem(username: str) -> str | None:
    if re.fullmatch(USERNAME_PATTERN, username) is None:
        return (
            "must be 2 to 64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return None


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > 256:
        return "must have at most 256 characters"
    return None
