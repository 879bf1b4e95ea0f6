"""The CoAP sensor server behind OSCORE, over real UDP on loopback, with aiocoap clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiocoap
import pytest

from drivers.sensors.coap import SensorCoapDriver
from drivers.sensors.oscore import (
    DeviceSecurityContext,
    OscoreAuthoriser,
    OscoreKeyMaterial,
    ReplayWindowState,
    SecurityContextRegistry,
    device_context,
    hub_context,
    new_key_material,
)
from drivers.sensors.simulator import PayloadStyle, SimulatedSensor, Transport, run_sensor_fleet
from hub.devices.coap_keys import HUB_SENDER_ID, key_id
from tests.support.brokers import free_udp_port
from tests.support.sinks import RecordingSink, running

from .conftest import Endpoint, opened, post, post_as, protect, send, senml

FRESH = ReplayWindowState(0, 0)


def enrol(
    registry: SecurityContextRegistry,
    uid: str,
    number: int,
    replay_window: ReplayWindowState | None = FRESH,
) -> OscoreKeyMaterial:
    """Put a fresh key for ``uid`` in service; returns the material as the device holds it."""
    material = new_key_material(HUB_SENDER_ID, key_id(number))
    registry.add(
        hub_context(
            material, uid, next_sequence=0, sequence_limit=1024, replay_window=replay_window
        )
    )
    return material.for_peer()


@pytest.fixture
def registry() -> SecurityContextRegistry:
    return SecurityContextRegistry()


async def serve(
    registry: SecurityContextRegistry, sink: RecordingSink, *, required: bool = True
) -> AsyncIterator[Endpoint]:
    port = free_udp_port()
    driver = SensorCoapDriver(
        "127.0.0.1",
        port,
        authorise=OscoreAuthoriser(required=required),
        security_contexts=registry,
    )
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_listening(), 5)
        yield Endpoint(port)


@pytest.fixture
async def server(registry: SecurityContextRegistry, sink: RecordingSink) -> AsyncIterator[Endpoint]:
    async for endpoint in serve(registry, sink):
        yield endpoint


async def test_a_plain_request_gets_4_01_and_costs_no_storage(
    server: Endpoint, wire: Any, sink: RecordingSink, registry: SecurityContextRegistry
) -> None:
    enrol(registry, "aq-1", 1)
    response = await post(wire, server.uri("aq-1"), senml())
    assert str(response.code) == "4.01 Unauthorized"
    assert response.payload == b"authentication required: the request is not OSCORE-protected"
    assert sink.stored == [] and sink.quarantined == [] and sink.heartbeats == []


async def test_the_devices_own_context_is_stored_and_answered_changed(
    server: Endpoint, client: Any, sink: RecordingSink, registry: SecurityContextRegistry
) -> None:
    material = enrol(registry, "aq-1", 1)
    security = device_context(material, "aq-1")
    response = await post_as(client, server, "aq-1", security, senml("pm2_5", 41.5))
    assert str(response.code) == "2.04 Changed"
    assert [(r.device_uid, r.metric, r.value) for r in sink.stored] == [("aq-1", "pm2_5", 41.5)]
    [heartbeat] = sink.heartbeats
    assert (heartbeat.device_uid, heartbeat.source) == ("aq-1", "coap")
    again = await post(client, server.uri("aq-1"), senml("pm2_5", 42.0))
    assert str(again.code) == "2.04 Changed" and len(sink.stored) == 2
    assert security.sender_sequence_number == 2


async def test_a_context_cannot_speak_for_another_device(
    server: Endpoint, client: Any, sink: RecordingSink, registry: SecurityContextRegistry
) -> None:
    material_a = enrol(registry, "aq-a", 1)
    enrol(registry, "aq-b", 2)
    response = await post_as(client, server, "aq-b", device_context(material_a, "aq-a"), senml())
    assert str(response.code) == "4.03 Forbidden"
    assert sink.stored == []
    [rejected] = sink.quarantined
    assert (
        rejected.reason == "refused sender: the security context of 'aq-a' may not speak for 'aq-b'"
    )


async def test_a_removed_context_gets_4_01_and_its_replacement_works(
    server: Endpoint, client: Any, sink: RecordingSink, registry: SecurityContextRegistry
) -> None:
    old = enrol(registry, "aq-1", 1)
    old_security = device_context(old, "aq-1")
    assert (
        str((await post_as(client, server, "aq-1", old_security, senml())).code) == "2.04 Changed"
    )
    registry.remove(old.sender_id)
    new = enrol(registry, "aq-1", 2)
    refused = await post_as(client, server, "aq-1", old_security, senml())
    assert str(refused.code) == "4.01 Unauthorized"
    assert refused.payload == b"Security context not found"
    accepted = await post_as(client, server, "aq-1", device_context(new, "aq-1"), senml())
    assert str(accepted.code) == "2.04 Changed"
    assert len(sink.stored) == 2


async def test_a_replayed_request_is_refused(
    server: Endpoint, wire: Any, sink: RecordingSink, registry: SecurityContextRegistry
) -> None:
    security = device_context(enrol(registry, "aq-1", 1), "aq-1")
    captured = protect(security, server, "aq-1", senml())
    first = await send(wire, captured, server)
    assert str(opened(security, first, captured).code) == "2.04 Changed"
    replayed = await send(wire, captured, server)
    assert str(replayed.code) == "4.01 Unauthorized"
    assert replayed.opt.oscore is None and replayed.payload == b"Replay detected"
    assert len(sink.stored) == 1


async def test_a_tampered_request_is_refused(
    server: Endpoint, wire: Any, sink: RecordingSink, registry: SecurityContextRegistry
) -> None:
    security = device_context(enrol(registry, "aq-1", 1), "aq-1")
    captured = protect(security, server, "aq-1", senml())
    captured.outer.payload = captured.outer.payload[:-1] + bytes([captured.outer.payload[-1] ^ 1])
    response = await send(wire, captured, server)
    assert str(response.code) == "4.00 Bad Request"
    assert response.payload == b"Decryption failed"
    assert sink.stored == []


async def test_an_unknown_window_is_recovered_through_echo_and_replays_stay_out(
    server: Endpoint,
    client: Any,
    wire: Any,
    sink: RecordingSink,
    registry: SecurityContextRegistry,
) -> None:
    # The state a hub finds after a crash: the key, but not which numbers it has seen.
    material = enrol(registry, "aq-1", 1, replay_window=None)
    earlier = device_context(material, "aq-1", first_sequence=3)
    captured = protect(earlier, server, "aq-1", senml())
    challenge = opened(earlier, await send(wire, captured, server), captured)
    assert str(challenge.code) == "4.01 Unauthorized" and challenge.opt.echo
    assert sink.stored == []
    # A live device answers the Echo (aiocoap's client does it by itself) and gets through.
    response = await post_as(
        client, server, "aq-1", device_context(material, "aq-1", first_sequence=10), senml()
    )
    assert str(response.code) == "2.04 Changed"
    assert len(sink.stored) == 1
    # The window now starts above the captured request: replaying it gets nowhere.
    replayed = await send(wire, captured, server)
    assert replayed.payload == b"Replay detected"
    assert len(sink.stored) == 1


async def test_with_oscore_optional_plain_requests_pass_and_contexts_still_bind(
    registry: SecurityContextRegistry, client: Any, wire: Any, sink: RecordingSink
) -> None:
    material = enrol(registry, "aq-a", 1)
    async for endpoint in serve(registry, sink, required=False):
        plain = await post(wire, endpoint.uri("aq-b"), senml())
        crossed = await post_as(client, endpoint, "aq-b", device_context(material, "aq-a"), senml())
    assert str(plain.code) == "2.04 Changed"
    assert str(crossed.code) == "4.03 Forbidden"


async def test_block_wise_protected_upload_is_assembled(
    server: Endpoint, client: Any, sink: RecordingSink, registry: SecurityContextRegistry
) -> None:
    security: DeviceSecurityContext = device_context(enrol(registry, "aq-1", 1), "aq-1")
    payload = json.dumps([{"n": "noise", "v": 50 + index % 10} for index in range(80)]).encode()
    assert len(payload) > 1024
    response = await post_as(client, server, "aq-1", security, payload)
    assert str(response.code) == "2.04 Changed"
    assert len(sink.stored) == 80


async def test_edhoc_is_not_offered(server: Endpoint, wire: Any) -> None:
    request = aiocoap.Message(
        code=aiocoap.POST,
        uri=f"coap://{server.hostinfo}/.well-known/edhoc",
        payload=b"\xf5\x03",
    )
    response = await asyncio.wait_for(wire.request(request).response, 10)
    assert str(response.code) == "4.04 Not Found"


async def test_the_simulator_speaks_oscore_with_key_material(
    registry: SecurityContextRegistry, sink: RecordingSink
) -> None:
    material = enrol(registry, "hp-e", 1)
    fleet = [
        SimulatedSensor(
            "hp-e",
            "Lê Chân",
            20.85,
            106.68,
            style=PayloadStyle.SENML_CBOR,
            transport=Transport.COAP,
            oscore=material,
        ),
        SimulatedSensor(
            "hp-x",
            "Lê Chân",
            20.86,
            106.69,
            style=PayloadStyle.SENML_CBOR,
            transport=Transport.COAP,
        ),
    ]
    async for endpoint in serve(registry, sink):
        stats = await run_sensor_fleet(
            fleet,
            "127.0.0.1",
            coap_host="127.0.0.1",
            coap_port=endpoint.port,
            interval=0.02,
            rounds=2,
            seed=1,
        )
    assert (stats.published, stats.failed) == (2, 2)  # hp-x has no key: 4.01 each time
    assert {reading.device_uid for reading in sink.stored} == {"hp-e"}
    assert len(sink.heartbeats) == 2
