"""Per-device OSCORE keys for CoAP sensors: issued, sealed at rest, rotated, revoked.

The keyring also holds the security contexts the CoAP server accepts (``registry``),
so an issued, rotated or revoked key takes effect with the next request. While the
server runs, a key's counters live in memory. When the key enters service the hub
reserves a block of its own sequence numbers in the database (the stored number only
grows) and marks the stored replay window as unknown; when it leaves service the
window is written back. After a crash the window is recovered by one Echo round trip
(RFC 8613 appendix B.1.2), never reopened.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final

import msgspec
from tortoise import connections
from tortoise.transactions import in_transaction

from drivers.contract import DeviceKind
from drivers.sensors.oscore import (
    DeviceSecurityContext,
    OscoreKeyMaterial,
    ReplayWindowState,
    SecurityContextRegistry,
    hub_context,
    new_key_material,
)
from hub.auth import Permission, Principal, audit
from hub.devices.models import Device, Lifecycle
from hub.devices.service import get_scoped
from hub.errors import Conflict, NotFound
from hub.runtime.context import RuntimeKey
from hub.storage.crypto import SecretBox, SecretBoxError

__all__ = ["HUB_SENDER_ID", "SEQUENCE_RESERVATION", "CoapCredentialsOut", "CoapKeyring", "key_id"]

log = logging.getLogger("hub.devices.coap_keys")

# Every device has its own master secret, so the hub may use one sender id with all of
# them; the empty id keeps responses short and never equals a device's (1 to 7 bytes).
HUB_SENDER_ID: Final = b""
# The hub's own sequence numbers claimed per database write (RFC 8613 appendix B.1.1).
SEQUENCE_RESERVATION: Final = 1024

_KEY_COLUMNS = """
k.device_id, d.uid, k.recipient_id, k.sender_id, k.sealed_material, k.algorithm, k.hkdf,
k.next_sequence, k.replay_index, k.replay_bits, k.created_at, k.rotated_at, k.revoked_at
"""


def key_id(number: int) -> bytes:
    """The key id for the n-th key issued: n in as few big-endian bytes as hold it."""
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")


def sealing_context(uid: str) -> str:
    """What a device's sealed key material is bound to: it opens only for this device."""
    return f"oscore:{uid}"


class CoapCredentialsOut(msgspec.Struct, omit_defaults=True):
    """A device's OSCORE key as the device configures it: it sends ``sender_id``."""

    device: str
    state: str
    """active, or revoked"""
    sender_id: str
    """hex; the key id the device sends"""
    recipient_id: str
    """hex; the hub's sender id (empty)"""
    algorithm: str
    hkdf: str
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    master_secret: str | None = None
    """hex, 32 bytes; shown once, when issued or rotated"""
    master_salt: str | None = None
    """hex, 8 bytes; shown once, when issued or rotated"""


class CoapKeyring:
    """Issues and revokes devices' OSCORE keys and keeps the contexts of those in service."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box
        self.registry = SecurityContextRegistry()
        self._in_service = False
        # Key changes and service changes take turns, so none is lost between them.
        self._lock = asyncio.Lock()
        self._reservations: dict[bytes, asyncio.Task[None]] = {}

    async def serve(self, server: Callable[[], Awaitable[None]]) -> None:
        """Run ``server`` with every live key in service; write the counters back after it."""
        await self._enter_service()
        try:
            await server()
        finally:
            await self._leave_service()

    async def issue(self, principal: Principal, uid: str) -> CoapCredentialsOut:
        """A new key for the device, replacing any it had; the secret is returned once."""
        principal.require(Permission.DEVICES_WRITE)
        device = await get_scoped(principal, uid)
        if device.kind != DeviceKind.SENSOR:
            raise Conflict(f"device {uid!r} is a {device.kind}; only sensors speak CoAP")
        if device.lifecycle != Lifecycle.ACTIVE:
            raise Conflict(f"device {uid!r} is {device.lifecycle}; only active devices get keys")
        async with self._lock:
            async with in_transaction() as conn:
                [sequence] = await conn.execute_query_dict("SELECT nextval('coap_key_id_seq') AS n")
                material = new_key_material(HUB_SENDER_ID, key_id(sequence["n"]))
                previous = await conn.execute_query_dict(
                    "SELECT recipient_id, revoked_at FROM coap_key WHERE device_id = $1 FOR UPDATE",
                    [device.id],
                )
                fresh = ReplayWindowState(0, 0)
                # A key entering service at once is stored as in service: numbers reserved,
                # window unknown until it is written back.
                stored_sequence, stored_window = (
                    (SEQUENCE_RESERVATION, None) if self._in_service else (0, fresh)
                )
                [row] = await conn.execute_query_dict(
                    """
                    INSERT INTO coap_key AS k (
                        device_id, recipient_id, sender_id, sealed_material, algorithm, hkdf,
                        next_sequence, replay_index, replay_bits
                    )
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    ON CONFLICT (device_id) DO UPDATE SET
                        recipient_id = EXCLUDED.recipient_id, sender_id = EXCLUDED.sender_id,
                        sealed_material = EXCLUDED.sealed_material, algorithm = EXCLUDED.algorithm,
                        hkdf = EXCLUDED.hkdf, next_sequence = EXCLUDED.next_sequence,
                        replay_index = EXCLUDED.replay_index, replay_bits = EXCLUDED.replay_bits,
                        rotated_at = now(), revoked_at = NULL
                    RETURNING k.created_at, k.rotated_at, k.revoked_at
                    """,
                    [
                        device.id,
                        material.recipient_id,
                        material.sender_id,
                        self._seal(uid, material),
                        material.algorithm,
                        material.hkdf,
                        stored_sequence,
                        stored_window.index if stored_window else None,
                        stored_window.bits if stored_window else None,
                    ],
                )
                replaced = previous[0]["recipient_id"] if previous else None
                active_before = bool(previous) and previous[0]["revoked_at"] is None
                action = "coap_credentials.rotate" if active_before else "coap_credentials.issue"
                await audit.record(
                    principal,
                    action,
                    "device",
                    uid,
                    ward_id=device.ward_id,
                    after={"key_id": material.recipient_id.hex(), "algorithm": material.algorithm},
                    connection=conn,
                )
            if replaced is not None:
                self.registry.remove(bytes(replaced))
            if self._in_service:
                self.registry.add(self._context(uid, material, 0, fresh))
        log.info(
            "OSCORE key %s for %s (key id %s)",
            "rotated" if active_before else "issued",
            uid,
            material.recipient_id.hex(),
        )
        peer = material.for_peer()
        return CoapCredentialsOut(
            uid,
            "active",
            peer.sender_id.hex(),
            peer.recipient_id.hex(),
            peer.algorithm,
            peer.hkdf,
            row["created_at"],
            row["rotated_at"],
            row["revoked_at"],
            master_secret=peer.master_secret.hex(),
            master_salt=peer.master_salt.hex(),
        )

    async def status(self, principal: Principal, uid: str) -> CoapCredentialsOut:
        """The device's key without its secret."""
        device = await get_scoped(principal, uid)
        return await self._status(device)

    async def revoke(self, principal: Principal, uid: str) -> CoapCredentialsOut:
        """Revoke the device's key: its next request is answered 4.01."""
        principal.require(Permission.DEVICES_WRITE)
        device = await get_scoped(principal, uid)
        await self.revoke_device(principal, device)
        return await self._status(device)

    async def revoke_device(self, principal: Principal | None, device: Device) -> bool:
        """Revoke the device's key if it has a live one (as when it is decommissioned)."""
        async with self._lock:
            async with in_transaction() as conn:
                revoked = await conn.execute_query_dict(
                    "UPDATE coap_key SET revoked_at = now() "
                    "WHERE device_id = $1 AND revoked_at IS NULL RETURNING recipient_id",
                    [device.id],
                )
                if not revoked:
                    return False
                await audit.record(
                    principal,
                    "coap_credentials.revoke",
                    "device",
                    device.uid,
                    ward_id=device.ward_id,
                    after={"key_id": bytes(revoked[0]["recipient_id"]).hex()},
                    connection=conn,
                )
            self.registry.remove(bytes(revoked[0]["recipient_id"]))
        log.info("OSCORE key revoked for %s", device.uid, extra={"device_uid": device.uid})
        return True

    async def _status(self, device: Device) -> CoapCredentialsOut:
        rows = await connections.get("default").execute_query_dict(
            f"SELECT {_KEY_COLUMNS} FROM coap_key k JOIN device d ON d.id = k.device_id "
            "WHERE k.device_id = $1",
            [device.id],
        )
        if not rows:
            raise NotFound(f"device {device.uid!r} has no CoAP key")
        row = rows[0]
        return CoapCredentialsOut(
            device.uid,
            "revoked" if row["revoked_at"] else "active",
            bytes(row["recipient_id"]).hex(),
            bytes(row["sender_id"]).hex(),
            row["algorithm"],
            row["hkdf"],
            row["created_at"],
            row["rotated_at"],
            row["revoked_at"],
        )

    async def _enter_service(self) -> None:
        async with self._lock, in_transaction() as conn:
            rows = await conn.execute_query_dict(
                f"SELECT {_KEY_COLUMNS} FROM coap_key k JOIN device d ON d.id = k.device_id "
                "WHERE k.revoked_at IS NULL FOR UPDATE OF k"
            )
            taken: list[int] = []
            for row in rows:
                try:
                    material = self._open(row)
                except SecretBoxError as error:
                    log.error("the OSCORE key of %s cannot be used: %s", row["uid"], error)
                    continue
                replay = (
                    None
                    if row["replay_index"] is None
                    else ReplayWindowState(row["replay_index"], row["replay_bits"])
                )
                self.registry.add(self._context(row["uid"], material, row["next_sequence"], replay))
                taken.append(row["device_id"])
            await conn.execute_query(
                "UPDATE coap_key SET next_sequence = next_sequence + $2, "
                "replay_index = NULL, replay_bits = NULL WHERE device_id = ANY($1::bigint[])",
                [taken, SEQUENCE_RESERVATION],
            )
            self._in_service = True
        log.info("OSCORE keys in service: %d", len(taken))

    async def _leave_service(self) -> None:
        async with self._lock:
            self._in_service = False
            await asyncio.gather(*self._reservations.values(), return_exceptions=True)
            windows: list[list[Any]] = []
            for context in self.registry.contexts():
                self.registry.remove(context.recipient_id)
                window = context.replay_window_state()
                if window is not None:
                    windows.append([context.recipient_id, window.index, window.bits])
            if not windows:
                return
            try:
                await connections.get("default").execute_many(
                    "UPDATE coap_key SET replay_index = $2, replay_bits = $3 "
                    "WHERE recipient_id = $1 AND revoked_at IS NULL",
                    windows,
                )
            except Exception:
                # Safe to lose: the stored windows stay unknown and are recovered through Echo.
                log.exception("the OSCORE replay windows could not be written back")

    def _context(
        self,
        uid: str,
        material: OscoreKeyMaterial,
        next_sequence: int,
        replay: ReplayWindowState | None,
    ) -> DeviceSecurityContext:
        return hub_context(
            material,
            uid,
            next_sequence=next_sequence,
            sequence_limit=next_sequence + SEQUENCE_RESERVATION,
            replay_window=replay,
            on_sequence_low=self._reserve_more,
            sequence_low_water=SEQUENCE_RESERVATION // 2,
        )

    def _reserve_more(self, context: DeviceSecurityContext) -> None:
        kid = context.recipient_id
        if kid in self._reservations:
            return
        task = asyncio.get_running_loop().create_task(self._extend(context))
        self._reservations[kid] = task
        task.add_done_callback(lambda _: self._reservations.pop(kid, None))

    async def _extend(self, context: DeviceSecurityContext) -> None:
        limit = context.sequence_limit + SEQUENCE_RESERVATION
        try:
            await connections.get("default").execute_query(
                "UPDATE coap_key SET next_sequence = GREATEST(next_sequence, $2) "
                "WHERE recipient_id = $1",
                [context.recipient_id, limit],
            )
        except Exception:
            log.exception("cannot reserve OSCORE sequence numbers for %s", context.device_uid)
            return
        context.sequence_limit = limit

    def _seal(self, uid: str, material: OscoreKeyMaterial) -> str:
        secret = {
            "master_secret": material.master_secret.hex(),
            "master_salt": material.master_salt.hex(),
        }
        return self.box.seal(json.dumps(secret), sealing_context(uid))

    def _open(self, row: dict[str, Any]) -> OscoreKeyMaterial:
        secret = json.loads(self.box.open(row["sealed_material"], sealing_context(row["uid"])))
        return OscoreKeyMaterial(
            bytes.fromhex(secret["master_secret"]),
            bytes.fromhex(secret["master_salt"]),
            bytes(row["sender_id"]),
            bytes(row["recipient_id"]),
            row["algorithm"],
            row["hkdf"],
        )


COAP_KEYS: RuntimeKey[CoapKeyring] = RuntimeKey("the CoAP keyring")
