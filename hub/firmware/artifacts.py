"""Firmware images for devices: expiring signed links, and the images behind them.

A link is an HMAC-SHA256 over the release id, the device uid and the expiry, under a key
derived from the hub's secret, so it is its own authorisation for one device, one image,
until it expires. Before an image is served (and before a campaign is created) its
manifest's Ed25519 signature is checked again against the vendor's key, and the file's
SHA-256 against the manifest: an image whose manifest does not verify is never served.
Images up to `HELD_MAX_BYTES` are served from memory, as the very bytes that were hashed:
no file is read per download (a wave starts hundreds at once), and a file changed on
disk after its check is never what a device gets.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr, ValidationError

from firmware_meta import Manifest, SignatureRefused, sha256_file, verify
from hub.errors import Conflict, Forbidden
from hub.firmware.store import ReleaseRow
from hub.runtime.context import RuntimeKey
from hub.storage.crypto import local_key

ARTIFACT_PATH = "/api/v1/firmware/artifacts"
HELD_MAX_BYTES = 32 * 1024 * 1024
RELEASE_TTL_S = 5.0
"""How long a download reuses the release row it read (a forced re-import shows after
this; its image is re-checked against the row whatever the age)."""
_PURPOSE = b"iochub:firmware-artifact-url"


def url_key(secret_key: SecretStr | None, data_dir: Path) -> bytes:
    material = secret_key.get_secret_value() if secret_key is not None else local_key(data_dir)
    return hmac.new(material.encode(), _PURPOSE, hashlib.sha256).digest()


class ArtifactSigner:
    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = key
        self._base_url = base_url.rstrip("/")

    def _signature(self, release_id: int, device: str, expires: int) -> str:
        message = f"{release_id}:{device}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, release_id: int, device: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        sig = self._signature(release_id, device, expires)
        return (
            f"{self._base_url}{ARTIFACT_PATH}/{release_id}"
            f"?device={device}&expires={expires}&sig={sig}"
        )

    def verify(
        self, release_id: int, device: str, expires: int, sig: str, now: datetime | None = None
    ) -> None:
        expected = self._signature(release_id, device, expires)
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise Forbidden("the firmware link's signature is not valid")
        if (now or datetime.now(UTC)).timestamp() > expires:
            raise Forbidden("the firmware link has expired")


@dataclass
class ArtifactStore:
    """The catalog's images on disk, each checked once per manifest and file version."""

    root: Path
    _checked: dict[tuple[int, str, str], tuple[float, int]] = field(default_factory=dict)
    _held: dict[tuple[int, str, str], tuple[tuple[float, int], bytes]] = field(default_factory=dict)
    _rows: dict[int, tuple[float, ReleaseRow]] = field(default_factory=dict)

    def path(self, release: ReleaseRow) -> Path:
        if release.artifact_file is None:
            raise Conflict(
                f"{release.model} {release.version} is a vendor download ({release.artifact_url}): "
                "the hub has no image to serve"
            )
        return self.root / "artifacts" / release.artifact_file

    def check(self, release: ReleaseRow) -> Path:
        """The image, after its manifest's signature and its own hash were verified."""
        path = self.path(release)
        if not path.is_file():
            raise Conflict(f"the image of {release.model} {release.version} is missing")
        stat = path.stat()
        key = (release.id, release.manifest_sha256, release.signature)
        if self._checked.get(key) == (stat.st_mtime, stat.st_size):
            return path  # the same manifest and the same file as last time
        try:
            manifest = Manifest.model_validate(
                release.manifest
                | {"signature": {"key": release.signature_key, "ed25519": release.signature}}
            )
            verify(manifest, self.root / "keys")
        except (ValidationError, SignatureRefused) as exc:
            raise Conflict(
                f"{release.model} {release.version}: signature refused ({exc}); not served"
            ) from None
        size, sha256 = sha256_file(path)
        if (size, sha256) != (release.artifact_size, release.artifact_sha256):
            raise Conflict(_mismatch(release))
        self._checked[key] = (stat.st_mtime, stat.st_size)
        return path

    def image(self, release: ReleaseRow) -> bytes | Path:
        """What to serve: the checked bytes of an image up to `HELD_MAX_BYTES`, else the
        checked file (streamed)."""
        if release.artifact_size > HELD_MAX_BYTES:
            return self.check(release)
        key = (release.id, release.manifest_sha256, release.signature)
        held = self._held.get(key)
        path = self.path(release)
        try:
            stat = path.stat()
        except OSError:
            raise Conflict(f"the image of {release.model} {release.version} is missing") from None
        if held is not None and held[0] == (stat.st_mtime, stat.st_size):
            return held[1]
        self.check(release)  # the signature (and the file, once)
        data = path.read_bytes()
        if (len(data), hashlib.sha256(data).hexdigest()) != (
            release.artifact_size,
            release.artifact_sha256,
        ):
            raise Conflict(_mismatch(release))
        self._held = {k: v for k, v in self._held.items() if k[0] != release.id}
        self._held[key] = ((stat.st_mtime, stat.st_size), data)
        return data

    async def release(
        self, release_id: int, load: Callable[[int], Awaitable[ReleaseRow | None]]
    ) -> ReleaseRow | None:
        """The release row, read at most once per `RELEASE_TTL_S` for the downloads."""
        now = time.monotonic()
        cached = self._rows.get(release_id)
        if cached is not None and now - cached[0] < RELEASE_TTL_S:
            return cached[1]
        row = await load(release_id)
        if row is None:
            self._rows.pop(release_id, None)
        else:
            self._rows[release_id] = (now, row)
        return row


def _mismatch(release: ReleaseRow) -> str:
    return (
        f"the image of {release.model} {release.version} does not match its "
        "manifest (size or SHA-256); not served"
    )


ARTIFACT_SIGNER: RuntimeKey[ArtifactSigner] = RuntimeKey("firmware link signer")
