"""Encryption of hub secrets at rest: AES-256-GCM under a key derived from the hub key.

The hub key is `Settings.secret_key`, or, when unset, a random key kept in
`<data_dir>/secret.key` (created on first use, readable by the owner only). Several
hub processes sharing one database must share the key: set IOCHUB_SECRET_KEY.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

KEY_FILE = "secret.key"
_FORMAT = b"\x01"  # leading byte of every sealed value: lets the scheme change later
_NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """A sealed value does not open with this hub's key (changed key or tampered data)."""


def hub_key(secret_key: SecretStr | None, data_dir: Path) -> bytes:
    """The hub's root key material: the configured secret, or the key file's content."""
    if secret_key is not None:
        return secret_key.get_secret_value().encode()
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{KEY_FILE}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as key_file:
            key_file.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        # link() never replaces: of two processes starting together, the first key wins whole.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
        draft.unlink()
    return path.read_text().strip().encode()


class SecretBox:
    """Seals short secrets; `context` binds a sealed value to where it is stored."""

    def __init__(self, root_key: bytes, purpose: str) -> None:
        if not root_key:
            raise ValueError("the hub key is empty")
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"iochub:{purpose}".encode()
        ).derive(root_key)
        self._aead = AESGCM(derived)

    def seal(self, plaintext: str, context: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _FORMAT + nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        if sealed[:1] != _FORMAT or len(sealed) < 1 + _NONCE_BYTES + 16:
            raise SecretUnreadable("not a sealed value of a known format")
        nonce, ciphertext = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, context.encode()).decode()
        except InvalidTag as exc:
            raise SecretUnreadable("does not open with this hub's key") from exc
