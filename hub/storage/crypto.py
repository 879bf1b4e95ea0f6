"""Secrets at rest (camera passwords, webhook secrets): AES-256-GCM under a key ring.

Each ciphertext names the key that sealed it, so the key can be rotated: a new key seals,
old keys still open, and `reseal` moves a value to the newest key. Keys come from
settings (IOCHUB_SECRET_KEY, IOCHUB_PREVIOUS_SECRET_KEYS); on a developer machine without
one, a random key is generated into the data folder once and reused.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.errors import HubError

log = logging.getLogger("hub.crypto")
PREFIX = "v1"


class SecretBoxError(HubError):
    status = 500
    slug = "secret-unreadable"
    title = "A stored secret cannot be opened"


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"iochub-key-id" + key).hexdigest()[:8]


def derive(material: str) -> bytes:
    """A 256-bit key from the configured secret (any length, any text)."""
    return hashlib.sha256(b"iochub-secret-box\0" + material.encode()).digest()


class SecretBox:
    def __init__(self, current: str, previous: Sequence[str] = ()) -> None:
        keys = [derive(current), *(derive(p) for p in previous)]
        self._sealing = keys[0]
        self._keys = {key_id(k): k for k in keys}

    @property
    def current_key_id(self) -> str:
        return key_id(self._sealing)

    def seal(self, plaintext: str, context: str = "") -> str:
        """Encrypt; `context` (e.g. "camera:cam-01") binds the value to where it is stored."""
        nonce = os.urandom(12)
        sealed = AESGCM(self._sealing).encrypt(nonce, plaintext.encode(), context.encode())
        return ":".join((PREFIX, self.current_key_id, base64.b64encode(nonce + sealed).decode()))

    def open(self, token: str, context: str = "") -> str:
        try:
            prefix, kid, payload = token.split(":", 2)
            key = self._keys[kid]
            raw = base64.b64decode(payload)
            if prefix != PREFIX:
                raise ValueError(prefix)
            return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode()).decode()
        except KeyError as exc:
            raise SecretBoxError(
                "the secret was sealed with a key this hub no longer has; "
                "add it to IOCHUB_PREVIOUS_SECRET_KEYS"
            ) from exc
        except (ValueError, InvalidTag) as exc:
            raise SecretBoxError("a stored secret is damaged or belongs elsewhere") from exc

    def reseal(self, token: str, context: str = "") -> str | None:
        """The value sealed with the newest key, or None when it already is."""
        if token.split(":", 2)[1:2] == [self.current_key_id]:
            return None
        return self.seal(self.open(token, context), context)


def local_key(data_dir: Path) -> str:
    """The development key: generated once into the data folder, private to its owner."""
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    log.warning(
        "no IOCHUB_SECRET_KEY set: generated a local key in %s (set one in production)", path
    )
    return key
