"""OSCORE (RFC 8613) for sensors: per-device key material, security contexts, the authoriser.

The hub holds one security context per sensor; the sensor's sender id is the hub's
recipient id, looked up in a ``SecurityContextRegistry`` for every protected request
(aiocoap's ``OscoreSiteWrapper`` does the cryptography). ``OscoreAuthoriser`` then
binds the context to the uid in the path. ``device_context`` is the sensor's side,
for simulators and field tools.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiocoap
from aiocoap import oscore

from drivers.contract import RefusedDevice
from drivers.sensors.coap import Unauthenticated

__all__ = [
    "ALGORITHM",
    "HKDF",
    "DeviceClaim",
    "DeviceSecurityContext",
    "OscoreAuthoriser",
    "OscoreKeyMaterial",
    "ReplayWindowState",
    "SecurityContextRegistry",
    "device_context",
    "hub_context",
    "new_key_material",
    "protect_requests",
    "sequence_floor",
]

# AES-CCM-16-64-128 (COSE algorithm 10) is RFC 8613's mandatory algorithm and aiocoap's default.
ALGORITHM: Final = "AES-CCM-16-64-128"
HKDF: Final = "HKDF SHA-256"
MASTER_SECRET_BYTES: Final = 32
MASTER_SALT_BYTES: Final = 8
REPLAY_WINDOW_SIZE: Final = 32
# COSE names of the HKDF hash functions (RFC 9053) and aiocoap's names for them.
_HKDF_HASHES: Final = {"HKDF SHA-256": "sha256", "HKDF SHA-512": "sha512"}
_AEAD_ALGORITHMS: Final = {
    name: algorithm
    for name, algorithm in oscore.algorithms.items()
    if isinstance(algorithm, oscore.AeadAlgorithm)
}


class _RedactSalt(logging.Filter):
    """aiocoap logs the master salt at debug level while it derives keys; the hub keeps
    the salt sealed, so its logs do not get it either (aiocoap redacts the rest)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "* salt = %s":
            record.args = ("[redacted]",)
        return True


logging.getLogger("aiocoap.cryptography").addFilter(_RedactSalt())


@dataclass(frozen=True, slots=True)
class OscoreKeyMaterial:
    """The static input of an OSCORE security context, as one endpoint holds it.

    ``sender_id`` is what this endpoint sends as its key id; the peer holds the same
    material with the two ids swapped (``for_peer``).
    """

    master_secret: bytes = field(repr=False)
    master_salt: bytes = field(repr=False)
    sender_id: bytes
    recipient_id: bytes
    algorithm: str = ALGORITHM
    hkdf: str = HKDF

    def __post_init__(self) -> None:
        if len(self.master_secret) < 16:
            raise ValueError("the master secret must be at least 16 bytes")
        if self.algorithm not in _AEAD_ALGORITHMS:
            raise ValueError(f"unsupported OSCORE algorithm {self.algorithm!r}")
        if self.hkdf not in _HKDF_HASHES:
            raise ValueError(f"unsupported HKDF {self.hkdf!r}; use one of {sorted(_HKDF_HASHES)}")
        # The nonce holds the sender id: 7 bytes with AES-CCM-16-64-128's 13-byte nonce.
        longest = _AEAD_ALGORITHMS[self.algorithm].iv_bytes - 6
        if max(len(self.sender_id), len(self.recipient_id)) > longest:
            raise ValueError(f"sender and recipient ids may be at most {longest} bytes")
        if self.sender_id == self.recipient_id:
            # Equal ids would derive equal keys for both directions: nonces would repeat.
            raise ValueError("the sender and recipient ids must differ")

    def for_peer(self) -> OscoreKeyMaterial:
        """The same material as the other endpoint holds it."""
        return OscoreKeyMaterial(
            self.master_secret,
            self.master_salt,
            self.recipient_id,
            self.sender_id,
            self.algorithm,
            self.hkdf,
        )

    def to_json(self) -> dict[str, str]:
        """Byte strings in hex, as the hub hands the material out and a device file holds it."""
        return {
            "master_secret": self.master_secret.hex(),
            "master_salt": self.master_salt.hex(),
            "sender_id": self.sender_id.hex(),
            "recipient_id": self.recipient_id.hex(),
            "algorithm": self.algorithm,
            "hkdf": self.hkdf,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OscoreKeyMaterial:
        """The inverse of ``to_json``; ValueError says what is wrong."""
        try:
            return cls(
                bytes.fromhex(data["master_secret"]),
                bytes.fromhex(data.get("master_salt", "")),
                bytes.fromhex(data["sender_id"]),
                bytes.fromhex(data["recipient_id"]),
                data.get("algorithm", ALGORITHM),
                data.get("hkdf", HKDF),
            )
        except KeyError as error:
            raise ValueError(f"OSCORE key material lacks {error.args[0]!r}") from None
        except TypeError:
            raise ValueError("OSCORE key material holds byte strings as hex text") from None


def new_key_material(sender_id: bytes, recipient_id: bytes) -> OscoreKeyMaterial:
    """Fresh random material: a 32-byte master secret and an 8-byte master salt."""
    return OscoreKeyMaterial(
        secrets.token_bytes(MASTER_SECRET_BYTES),
        secrets.token_bytes(MASTER_SALT_BYTES),
        sender_id,
        recipient_id,
    )


@dataclass(frozen=True, slots=True)
class DeviceClaim:
    """What an OSCORE context proves about a request: it comes from this device."""

    device_uid: str


@dataclass(frozen=True, slots=True)
class ReplayWindowState:
    """A replay window as it is persisted: the lowest number it covers and the seen bits."""

    index: int
    bits: int


class DeviceSecurityContext(
    oscore.CanProtect,  # type: ignore[misc]
    oscore.CanUnprotect,  # type: ignore[misc]
    oscore.SecurityContextUtils,  # type: ignore[misc]
):
    """One device's OSCORE security context, with counters kept by its owner.

    Sender sequence numbers are used only below ``sequence_limit``, the number its
    owner has durably reserved (RFC 8613 appendix B.1.1); ``on_sequence_low`` asks
    for more once ``sequence_low_water`` or fewer are left. A replay window of None
    is unknown (the state was lost): with ``echo_recovery`` the first request is
    answered 4.01 with an Echo option, and the window starts at the number of the
    request that repeats it (appendix B.1.2).
    """

    def __init__(
        self,
        material: OscoreKeyMaterial,
        device_uid: str,
        *,
        next_sequence: int,
        sequence_limit: int,
        replay_window: ReplayWindowState | None,
        echo_recovery: bool,
        on_sequence_low: Callable[[DeviceSecurityContext], None] | None = None,
        sequence_low_water: int = 0,
    ) -> None:
        self.device_uid = device_uid
        self.authenticated_claims = [DeviceClaim(device_uid)]
        self.alg_aead = _AEAD_ALGORITHMS[material.algorithm]
        self.hashfun = oscore.hashfunctions[_HKDF_HASHES[material.hkdf]]
        self.id_context = None
        self.sender_id = material.sender_id
        self.recipient_id = material.recipient_id
        self.derive_keys(material.master_salt, material.master_secret)
        self.sender_sequence_number = next_sequence
        self.sequence_limit = sequence_limit
        self.on_sequence_low = on_sequence_low
        self.sequence_low_water = sequence_low_water
        self.echo_recovery = secrets.token_bytes(8) if echo_recovery else None
        self.recipient_replay_window = oscore.ReplayWindow(REPLAY_WINDOW_SIZE, _no_callback)
        if replay_window is not None:
            self.recipient_replay_window.initialize_from_persisted(
                {"index": replay_window.index, "bitfield": replay_window.bits}
            )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} of {self.device_uid!r}, "
            f"recipient id {self.recipient_id.hex()!r}>"
        )

    def new_sequence_number(self) -> int:
        if self.sender_sequence_number >= self.sequence_limit:
            raise oscore.ContextUnavailable(
                f"no reserved sequence numbers left for {self.device_uid}; retry shortly"
            )
        return int(super().new_sequence_number())

    def post_seqnoincrease(self) -> None:
        remaining = self.sequence_limit - self.sender_sequence_number
        if self.on_sequence_low is not None and remaining <= self.sequence_low_water:
            self.on_sequence_low(self)

    def replay_window_state(self) -> ReplayWindowState | None:
        window = self.recipient_replay_window
        if not window.is_initialized():
            return None
        persisted = window.persist()
        return ReplayWindowState(int(persisted["index"]), int(persisted["bitfield"]))


def _no_callback() -> None:
    """The window is persisted by its owner when the context leaves service, not per message."""


def hub_context(
    material: OscoreKeyMaterial,
    device_uid: str,
    *,
    next_sequence: int,
    sequence_limit: int,
    replay_window: ReplayWindowState | None,
    on_sequence_low: Callable[[DeviceSecurityContext], None] | None = None,
    sequence_low_water: int = 0,
) -> DeviceSecurityContext:
    """The hub's context for a device; ``material`` as the hub holds it."""
    return DeviceSecurityContext(
        material,
        device_uid,
        next_sequence=next_sequence,
        sequence_limit=sequence_limit,
        replay_window=replay_window,
        echo_recovery=True,
        on_sequence_low=on_sequence_low,
        sequence_low_water=sequence_low_water,
    )


def device_context(
    material: OscoreKeyMaterial, device_uid: str, *, first_sequence: int = 0
) -> DeviceSecurityContext:
    """A device's context towards the hub; ``material`` as the device holds it.

    A device must never reuse a sequence number with the same key: start each run
    above the last one it used (``sequence_floor`` for a device without storage).
    """
    return DeviceSecurityContext(
        material,
        device_uid,
        next_sequence=first_sequence,
        sequence_limit=oscore.MAX_SEQNO,
        replay_window=ReplayWindowState(0, 0),
        echo_recovery=False,
    )


def sequence_floor(now: float | None = None) -> int:
    """A first sequence number above any used before, for a device that stores none.

    A hundredth of a second since 1970: higher after every restart, as long as the
    device sends fewer than 100 protected requests a second on average and its clock
    does not go back. It stays below OSCORE's limit of 2**40 until the year 2318.
    """
    return int((time.time() if now is None else now) * 100)


def protect_requests(client: Any, uri: str, context: DeviceSecurityContext) -> None:
    """Have an aiocoap client context protect every request to ``uri`` with ``context``.

    The client context needs the "oscore" transport ahead of its UDP one.
    """
    key = aiocoap.Message(code=aiocoap.POST, uri=uri).get_request_uri()
    client.client_credentials[key] = context


class SecurityContextRegistry:
    """The OSCORE contexts a CoAP server accepts, by the key id the device sends.

    aiocoap's ``OscoreSiteWrapper`` looks up the context of every protected request
    here, so a context added or removed takes effect with the next request. An
    unknown key id is answered 4.01 Unauthorized.
    """

    def __init__(self) -> None:
        self._by_kid: dict[bytes, DeviceSecurityContext] = {}

    def __len__(self) -> int:
        return len(self._by_kid)

    def add(self, context: DeviceSecurityContext) -> None:
        self._by_kid[context.recipient_id] = context

    def remove(self, recipient_id: bytes) -> DeviceSecurityContext | None:
        return self._by_kid.pop(recipient_id, None)

    def contexts(self) -> list[DeviceSecurityContext]:
        return list(self._by_kid.values())

    def find_oscore(self, unprotected: Mapping[int, Any]) -> DeviceSecurityContext:
        context = self._by_kid.get(unprotected.get(oscore.COSE_KID, b""))
        if context is None or context.get_oscore_context_for(unprotected) is None:
            raise KeyError("no security context for this key id")
        return context

    def find_all_used_contextless_oscore_kid(self) -> set[bytes]:
        return set(self._by_kid)

    def get(self, key: str, default: None = None) -> None:
        """No EDHOC identities: keys are issued by the hub, never negotiated.

        ``OscoreSiteWrapper`` asks for one when a peer attempts EDHOC; it then answers 4.04.
        """
        return default


@dataclass(frozen=True, slots=True)
class OscoreAuthoriser:
    """A ``RequestAuthoriser``: the request's OSCORE context must be the device's own.

    With ``required`` off, plain requests are still accepted (a fleet moving to
    OSCORE), but a protected request may still speak only for its own device.
    """

    required: bool = True

    def __call__(self, device_uid: str, request: Any) -> None:
        claims = getattr(request.remote, "authenticated_claims", ())
        devices = [claim.device_uid for claim in claims if isinstance(claim, DeviceClaim)]
        if not devices:
            if self.required:
                raise Unauthenticated("the request is not OSCORE-protected")
            return
        if device_uid not in devices:
            raise RefusedDevice(
                f"the security context of {devices[0]!r} may not speak for {device_uid!r}"
            )
