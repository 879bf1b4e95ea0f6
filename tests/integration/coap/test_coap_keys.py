"""Per-device OSCORE keys through the hub's API, used on the wire against the running hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from drivers.sensors.coap import SensorCoapDriver
from drivers.sensors.oscore import OscoreAuthoriser, OscoreKeyMaterial, device_context
from hub.auth.models import Role
from hub.auth.principal import Principal
from hub.devices.coap_keys import SEQUENCE_RESERVATION, CoapKeyring
from hub.storage.crypto import SecretBoxError
from tests.conftest import Clients
from tests.support.brokers import free_udp_port
from tests.support.hub import RunningHub
from tests.support.sinks import RecordingSink

from .conftest import Endpoint, opened, post, post_as, protect, send, senml

ADMIN = Principal(user_id=0, username="tests", role=Role.ADMIN, ward_ids=None, via="token")


async def register(clients: Clients, uid: str, kind: str = "sensor", ward: str = "ward-a") -> None:
    response = await clients.admin.post(
        "/api/v1/devices", json={"uid": uid, "kind": kind, "ward": ward}
    )
    assert response.status_code == 201, response.text


async def issue(client: Any, uid: str) -> dict[str, Any]:
    response = await client.post(f"/api/v1/devices/{uid}/coap-credentials")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def hub_endpoint(hub: RunningHub) -> Endpoint:
    return Endpoint(hub.settings.coap.port)


async def key_row(db: asyncpg.Connection, columns: str) -> asyncpg.Record:
    [row] = await db.fetch(f"SELECT {columns} FROM coap_key")
    return row


async def stored(db: asyncpg.Connection, uid: str) -> list[tuple[str, float]]:
    rows = await db.fetch(
        "SELECT metric, value FROM reading r JOIN device d ON d.id = r.device_id "
        "WHERE d.uid = $1 ORDER BY time",
        uid,
    )
    return [(row["metric"], row["value"]) for row in rows]


async def test_issue_returns_the_material_once_and_status_never(
    clients: Clients, db: asyncpg.Connection, hub: RunningHub
) -> None:
    await register(clients, "aq-1")
    response = await clients.technician.post("/api/v1/devices/aq-1/coap-credentials")
    assert response.status_code == 201
    assert "no-store" in response.headers["cache-control"]
    issued = response.json()
    assert issued["device"] == "aq-1" and issued["state"] == "active"
    assert len(bytes.fromhex(issued["master_secret"])) == 32
    assert len(bytes.fromhex(issued["master_salt"])) == 8
    assert issued["recipient_id"] == "" and 1 <= len(bytes.fromhex(issued["sender_id"])) <= 7
    assert (issued["algorithm"], issued["hkdf"]) == ("AES-CCM-16-64-128", "HKDF SHA-256")

    status = await clients.viewer.get("/api/v1/devices/aq-1/coap-credentials")
    assert status.status_code == 200
    shown = status.json()
    assert "master_secret" not in shown and "master_salt" not in shown
    assert issued["master_secret"] not in status.text and issued["master_salt"] not in status.text
    assert {k: shown[k] for k in ("sender_id", "recipient_id", "state", "algorithm")} == {
        k: issued[k] for k in ("sender_id", "recipient_id", "state", "algorithm")
    }

    # At rest the material is sealed, and bound to its device.
    row = await key_row(db, "sealed_material, recipient_id")
    assert row["recipient_id"].hex() == issued["sender_id"]
    assert issued["master_secret"] not in row["sealed_material"]
    box = hub.settings.secret_box()
    opened_material = json.loads(box.open(row["sealed_material"], "oscore:aq-1"))
    assert opened_material["master_secret"] == issued["master_secret"]
    with pytest.raises(SecretBoxError):
        box.open(row["sealed_material"], "oscore:aq-2")
    audit = await db.fetch(
        "SELECT action, after::text AS after FROM audit_log WHERE object_id = 'aq-1'"
    )
    assert "coap_credentials.issue" in {entry["action"] for entry in audit}
    assert not any(issued["master_secret"] in (entry["after"] or "") for entry in audit)


async def test_the_issued_key_speaks_to_the_hub_and_plain_requests_do_not(
    clients: Clients, db: asyncpg.Connection, hub: RunningHub, client: Any, wire: Any
) -> None:
    await register(clients, "aq-1")
    material = OscoreKeyMaterial.from_json(await issue(clients.admin, "aq-1"))
    endpoint = hub_endpoint(hub)
    plain = await post(wire, endpoint.uri("aq-1"), senml("pm2_5", 12.0))
    assert str(plain.code) == "4.01 Unauthorized"
    response = await post_as(
        client, endpoint, "aq-1", device_context(material, "aq-1"), senml("pm2_5", 41.5)
    )
    assert str(response.code) == "2.04 Changed"
    assert await stored(db, "aq-1") == [("pm2_5", 41.5)]


async def test_another_devices_key_is_refused(
    clients: Clients, hub: RunningHub, client: Any
) -> None:
    await register(clients, "aq-a")
    await register(clients, "aq-b")
    material_a = OscoreKeyMaterial.from_json(await issue(clients.admin, "aq-a"))
    await issue(clients.admin, "aq-b")
    response = await post_as(
        client, hub_endpoint(hub), "aq-b", device_context(material_a, "aq-a"), senml()
    )
    assert str(response.code) == "4.03 Forbidden"


async def test_rotation_and_revocation_take_effect_at_once(
    clients: Clients, hub: RunningHub, client: Any
) -> None:
    await register(clients, "aq-1")
    endpoint = hub_endpoint(hub)
    old = device_context(OscoreKeyMaterial.from_json(await issue(clients.admin, "aq-1")), "aq-1")
    assert str((await post_as(client, endpoint, "aq-1", old, senml())).code) == "2.04 Changed"

    rotated = await issue(clients.technician, "aq-1")
    new = device_context(OscoreKeyMaterial.from_json(rotated), "aq-1")
    refused = await post_as(client, endpoint, "aq-1", old, senml())
    assert (str(refused.code), refused.payload) == (
        "4.01 Unauthorized",
        b"Security context not found",
    )
    assert str((await post_as(client, endpoint, "aq-1", new, senml())).code) == "2.04 Changed"
    status = (await clients.admin.get("/api/v1/devices/aq-1/coap-credentials")).json()
    assert status["rotated_at"] is not None and status["sender_id"] == rotated["sender_id"]

    revoked = await clients.admin.delete("/api/v1/devices/aq-1/coap-credentials")
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked" and revoked.json()["revoked_at"]
    after = await post_as(client, endpoint, "aq-1", new, senml())
    assert str(after.code) == "4.01 Unauthorized"


async def test_only_technicians_and_admins_issue_or_revoke(clients: Clients) -> None:
    await register(clients, "aq-1")
    await register(clients, "aq-2", ward="ward-b")
    for client in (clients.viewer, clients.staff_a):
        assert (await client.post("/api/v1/devices/aq-1/coap-credentials")).status_code == 403
        assert (await client.delete("/api/v1/devices/aq-1/coap-credentials")).status_code == 403
    assert (
        await clients.anonymous.post("/api/v1/devices/aq-1/coap-credentials")
    ).status_code == 401
    await issue(clients.admin, "aq-1")
    await issue(clients.admin, "aq-2")
    assert (await clients.staff_a.get("/api/v1/devices/aq-1/coap-credentials")).status_code == 200
    # Outside the wards one serves a device does not exist.
    assert (await clients.staff_a.get("/api/v1/devices/aq-2/coap-credentials")).status_code == 404
    assert (await clients.viewer.get("/api/v1/devices/aq-2/coap-credentials")).status_code == 200


async def test_only_active_sensors_get_keys(clients: Clients) -> None:
    await register(clients, "spk-1", kind="speaker")
    response = await clients.admin.post("/api/v1/devices/spk-1/coap-credentials")
    assert response.status_code == 409 and "only sensors speak CoAP" in response.text
    missing = await clients.admin.post("/api/v1/devices/nobody/coap-credentials")
    assert missing.status_code == 404


async def test_secrets_are_never_logged(
    clients: Clients, hub: RunningHub, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await register(clients, "aq-1")
    issued = await issue(clients.admin, "aq-1")
    security = device_context(OscoreKeyMaterial.from_json(issued), "aq-1")
    assert str((await post_as(client, hub_endpoint(hub), "aq-1", security, senml())).code) == (
        "2.04 Changed"
    )
    assert "OSCORE key issued for aq-1" in caplog.text
    for secret in (
        issued["master_secret"],
        issued["master_salt"],
        security.sender_key.hex(),
        security.recipient_key.hex(),
    ):
        assert secret not in caplog.text


@contextlib.asynccontextmanager
async def in_service(keyring: CoapKeyring, sink: RecordingSink) -> AsyncIterator[Endpoint]:
    """A CoAP server of its own with the keyring's keys in service, as the hub runs one."""
    port = free_udp_port()
    driver = SensorCoapDriver(
        "127.0.0.1", port, authorise=OscoreAuthoriser(), security_contexts=keyring.registry
    )
    task = asyncio.create_task(keyring.serve(lambda: driver.run(sink)))
    try:
        await asyncio.wait_for(driver.wait_listening(), 5)
        yield Endpoint(port)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_restart_keeps_replay_windows_and_a_crash_recovers_them(
    clients: Clients, db: asyncpg.Connection, hub: RunningHub, wire: Any
) -> None:
    await register(clients, "aq-1")
    keyring = CoapKeyring(hub.settings.secret_box())
    issued = msgspec.to_builtins(await keyring.issue(ADMIN, "aq-1"))
    security = device_context(OscoreKeyMaterial.from_json(issued), "aq-1")
    sink = RecordingSink()

    async with in_service(keyring, sink) as endpoint:
        first = protect(security, endpoint, "aq-1", senml())
        assert (
            str(opened(security, await send(wire, first, endpoint), first).code) == "2.04 Changed"
        )
    row = await key_row(db, "next_sequence, replay_index, replay_bits")
    assert (row["replay_index"], row["replay_bits"]) == (0, 1)
    assert row["next_sequence"] == SEQUENCE_RESERVATION

    async with in_service(keyring, sink) as endpoint:
        assert (await send(wire, first, endpoint)).payload == b"Replay detected"
        second = protect(security, endpoint, "aq-1", senml())
        # The window came back from the database: no Echo round trip is needed.
        assert (
            str(opened(security, await send(wire, second, endpoint), second).code) == "2.04 Changed"
        )
        in_use = await key_row(db, "next_sequence, replay_index")
        assert in_use["replay_index"] is None
        assert in_use["next_sequence"] == 2 * SEQUENCE_RESERVATION

        # What a hub finds after a crash: this one never wrote its window back.
        after_crash = CoapKeyring(hub.settings.secret_box())
        async with in_service(after_crash, sink) as recovered:
            challenge = opened(security, await send(wire, second, recovered), second)
            assert str(challenge.code) == "4.01 Unauthorized" and challenge.opt.echo
            [context] = after_crash.registry.contexts()
            # Its own responses use numbers the crashed hub never had.
            assert context.sender_sequence_number == 2 * SEQUENCE_RESERVATION + 1
    assert len(sink.stored) == 2
