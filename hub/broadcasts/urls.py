"""Expiring signed URLs for speakers to fetch announcement audio without an account.

The signature is an HMAC-SHA256 over the asset id and the expiry under a key derived
from the hub's secret, so the URL is its own authorisation: it works for anyone who
holds it, until it expires, for that one asset only.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from hub.errors import Forbidden
from hub.storage.crypto import local_key

SPEAKER_AUDIO_PATH = "/api/v1/speaker-audio"
_PURPOSE = b"iochub:broadcast-audio-url"


def url_key(secret_key: SecretStr | None, data_dir: Path) -> bytes:
    """The signing key: derived from IOCHUB_SECRET_KEY, or from the data folder's key."""
    material = secret_key.get_secret_value() if secret_key is not None else local_key(data_dir)
    return hmac.new(material.encode(), _PURPOSE, hashlib.sha256).digest()


class AudioUrlSigner:
    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = key
        self._base_url = base_url.rstrip("/")

    def _signature(self, asset_id: int, expires: int) -> str:
        message = f"{asset_id}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, asset_id: int, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        signature = self._signature(asset_id, expires)
        return f"{self._base_url}{SPEAKER_AUDIO_PATH}/{asset_id}?expires={expires}&sig={signature}"

    def verify(
        self, asset_id: int, expires: int, signature: str, now: datetime | None = None
    ) -> None:
        """Raise Forbidden unless the signature is this hub's and has not expired."""
        expected = self._signature(asset_id, expires)
        # Bytes, not str: compare_digest refuses non-ASCII text, which is a wrong signature.
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("the audio link's signature is not valid")
        moment = (now or datetime.now(UTC)).timestamp()
        if moment > expires:
            raise Forbidden("the audio link has expired")
