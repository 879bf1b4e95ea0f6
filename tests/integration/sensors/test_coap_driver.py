"""The CoAP sensor resource over real UDP on loopback, exercised with an aiocoap client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiocoap
import cbor2
import pytest

from drivers.contract import Driver, RefusedDevice
from drivers.sensors.coap import SensorCoapDriver
from drivers.sensors.errors import CoapBindFailed
from drivers.sensors.payloads import PayloadLimits
from tests.support.brokers import free_port
from tests.support.sinks import RecordingSink, running

SENML_JSON = 110
SENML_CBOR = 112


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    yield context
    await context.shutdown()


class Server:
    def __init__(self, port: int) -> None:
        self.port = port

    def uri(self, path: str) -> str:
        return f"coap://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def server(sink: RecordingSink) -> AsyncIterator[Server]:
    port = free_port()
    driver = SensorCoapDriver("127.0.0.1", port, limits=PayloadLimits(max_bytes=2048))
    assert isinstance(driver, Driver)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_listening(), 5)
        yield Server(port)


async def post(
    client: Any, uri: str, payload: bytes, content_format: int | None = SENML_JSON
) -> Any:
    request = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=payload)
    if content_format is not None:
        request.opt.content_format = content_format
    return await asyncio.wait_for(client.request(request).response, 10)


def senml(*records: dict[str, Any]) -> bytes:
    return json.dumps(list(records)).encode()


async def test_senml_json_is_stored_and_answered_changed(
    server: Server, client: Any, sink: RecordingSink
) -> None:
    now = datetime.now(UTC).timestamp()
    payload = senml(
        {"bn": "hp-c1:", "bt": now, "n": "pm2_5", "u": "ug/m3", "v": 41.5},
        {"n": "humidity", "u": "%RH", "v": 77},
    )
    response = await post(client, server.uri("/s/hp-c1"), payload)
    assert str(response.code) == "2.04 Changed"
    assert [(reading.metric, reading.value) for reading in sink.stored] == [
        ("hp-c1:pm2_5", 41.5),
        ("hp-c1:humidity", 77.0),
    ]
    assert sink.sources == ["coap"]
    [heartbeat] = sink.heartbeats
    assert (heartbeat.device_uid, heartbeat.connected, heartbeat.source) == ("hp-c1", True, "coap")
    assert "127.0.0.1" in heartbeat.detail["remote"]


async def test_senml_cbor_is_stored(server: Server, client: Any, sink: RecordingSink) -> None:
    payload = cbor2.dumps([{0: "water_level", 1: "cm", 2: 64.5}, {0: "rainfall", 1: "mm", 2: 0.2}])
    response = await post(client, server.uri("/s/hp-c2"), payload, SENML_CBOR)
    assert str(response.code) == "2.04 Changed"
    assert {reading.metric for reading in sink.stored} == {"water_level", "rainfall"}


async def test_malformed_body_gets_4_00_with_the_reason(
    server: Server, client: Any, sink: RecordingSink
) -> None:
    payload = senml({"n": "pm2_5", "v": "41.5"})
    response = await post(client, server.uri("/s/hp-c1"), payload)
    assert str(response.code) == "4.00 Bad Request"
    assert response.payload.decode() == "SenML record 0 v must be a number, not a string"
    [rejected] = sink.quarantined
    assert (rejected.source, rejected.device_uid, rejected.raw) == (
        "coap:/s/hp-c1",
        "hp-c1",
        payload,
    )
    assert sink.stored == [] and sink.heartbeats == []


async def test_a_pack_not_stored_in_full_gets_4_22_with_the_reasons(
    server: Server, client: Any, sink: RecordingSink
) -> None:
    # docs/protocol/sensors.md section 3: 2.04 only when everything is stored.
    sink.keep_aside["hp-c9:noise"] = "payload claims device 'hp-c9' on device 'hp-c1''s resource"
    payload = senml({"n": "noise", "v": 50}, {"n": "hp-c9:noise", "v": 51})
    response = await post(client, server.uri("/s/hp-c1"), payload)
    assert str(response.code) == "4.22 Unprocessable Entity"
    assert response.payload.decode() == (
        "stored 1 of 2 readings; not stored: "
        "payload claims device 'hp-c9' on device 'hp-c1''s resource"
    )
    assert [reading.metric for reading in sink.stored] == ["noise"]


async def test_a_long_diagnostic_is_cut_to_fit_a_datagram(
    server: Server, client: Any, sink: RecordingSink
) -> None:
    records = [{"n": f"n{index}", "v": index} for index in range(60)]
    sink.keep_aside.update(
        {f"n{index}": f"SenML name 'n{index}' is unknown" for index in range(60)}
    )
    response = await post(client, server.uri("/s/hp-c1"), senml(*records))
    assert str(response.code) == "4.22 Unprocessable Entity"
    assert len(response.payload) <= 512 and response.payload.endswith(b"...")
    assert response.payload.startswith(b"stored 0 of 60 readings; not stored: SenML name 'n0'")


async def test_unknown_device_gets_4_04(server: Server, client: Any, sink: RecordingSink) -> None:
    sink.unknown.add("hp-new")
    response = await post(client, server.uri("/s/hp-new"), senml({"n": "noise", "v": 50}))
    assert str(response.code) == "4.04 Not Found"
    assert "not registered" in response.payload.decode()
    assert sink.quarantined[0].reason == "unknown device: pending approval"
    assert sink.heartbeats == []


async def test_refused_device_gets_4_03(server: Server, client: Any, sink: RecordingSink) -> None:
    sink.refused.add("hp-old")
    response = await post(client, server.uri("/s/hp-old"), senml({"n": "noise", "v": 50}))
    assert str(response.code) == "4.03 Forbidden"
    assert sink.quarantined[0].reason == "refused device: decommissioned"


@pytest.mark.parametrize("content_format", [50, 0, None])
async def test_other_content_formats_get_4_15(
    server: Server, client: Any, sink: RecordingSink, content_format: int | None
) -> None:
    response = await post(
        client, server.uri("/s/hp-c1"), senml({"n": "noise", "v": 1}), content_format
    )
    assert str(response.code) == "4.15 Unsupported Content Format"
    assert "110 (application/senml+json) or 112" in response.payload.decode()
    assert sink.stored == []


async def test_oversized_request_gets_4_13_with_the_limit_in_size1(
    server: Server, client: Any, sink: RecordingSink
) -> None:
    # Over 2048 bytes go block-wise, announcing Size1; the server refuses before assembling.
    records = [{"n": "noise", "v": 50 + index % 10} for index in range(150)]
    payload = senml(*records)
    assert len(payload) > 2048
    response = await post(client, server.uri("/s/hp-c1"), payload)
    assert str(response.code) == "4.13 Request Entity Too Large"
    assert response.opt.size1 == 2048
    assert sink.stored == []
    assert "exceeds the limit of 2048 bytes" in sink.quarantined[0].reason


async def test_block_wise_upload_within_the_limit_is_assembled(
    server: Server, client: Any, sink: RecordingSink
) -> None:
    records = [{"n": "noise", "v": 50 + index % 10} for index in range(80)]
    payload = senml(*records)
    assert 1024 < len(payload) <= 2048  # two blocks of 1024
    response = await post(client, server.uri("/s/hp-c1"), payload)
    assert str(response.code) == "2.04 Changed"
    assert len(sink.stored) == 80


async def test_single_datagram_over_the_limit_gets_4_13(client: Any, sink: RecordingSink) -> None:
    port = free_port()
    driver = SensorCoapDriver("127.0.0.1", port, limits=PayloadLimits(max_bytes=100))
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_listening(), 5)
        payload = senml(*[{"n": "noise", "v": index} for index in range(10)])
        assert 100 < len(payload) < 1024
        response = await post(client, f"coap://127.0.0.1:{port}/s/hp-c1", payload)
    assert str(response.code) == "4.13 Request Entity Too Large"
    assert response.opt.size1 == 100


@pytest.mark.parametrize("path", ["/s", "/s/", "/s/hp-c1/extra", "/sensors/hp-c1"])
async def test_paths_other_than_s_uid_get_4_04(server: Server, client: Any, path: str) -> None:
    response = await post(client, server.uri(path), senml({"n": "noise", "v": 1}))
    assert str(response.code) == "4.04 Not Found"


async def test_other_methods_get_4_05(server: Server, client: Any) -> None:
    request = aiocoap.Message(code=aiocoap.GET, uri=server.uri("/s/hp-c1"))
    response = await asyncio.wait_for(client.request(request).response, 10)
    assert str(response.code) == "4.05 Method Not Allowed"


async def test_storage_failure_gets_5_03_with_a_retry_time(
    server: Server, client: Any, sink: RecordingSink
) -> None:
    sink.failures_to_inject = 1
    response = await post(client, server.uri("/s/hp-c1"), senml({"n": "noise", "v": 1}))
    assert str(response.code) == "5.03 Service Unavailable"
    assert response.opt.max_age == 30
    retried = await post(client, server.uri("/s/hp-c1"), senml({"n": "noise", "v": 1}))
    assert str(retried.code) == "2.04 Changed"


async def test_authoriser_refusal_gets_4_03(client: Any, sink: RecordingSink) -> None:
    def only_hp_c1(device_uid: str, request: Any) -> None:
        if device_uid != "hp-c1":
            raise RefusedDevice(f"no credentials bind this sender to {device_uid}")

    port = free_port()
    driver = SensorCoapDriver("127.0.0.1", port, authorise=only_hp_c1)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_listening(), 5)
        allowed = await post(
            client, f"coap://127.0.0.1:{port}/s/hp-c1", senml({"n": "noise", "v": 1})
        )
        refused = await post(
            client, f"coap://127.0.0.1:{port}/s/hp-c2", senml({"n": "noise", "v": 1})
        )
    assert str(allowed.code) == "2.04 Changed"
    assert str(refused.code) == "4.03 Forbidden"
    assert sink.quarantined[0].reason == "refused sender: no credentials bind this sender to hp-c2"


async def test_an_address_that_is_not_local_is_a_terminal_error(sink: RecordingSink) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine; nothing is sent.
    driver = SensorCoapDriver("192.0.2.1", free_port())
    with pytest.raises(CoapBindFailed, match=r"cannot listen on \[192.0.2.1\]"):
        await asyncio.wait_for(driver.run(sink), 5)


async def test_block_crossing_the_limit_without_size1_gets_4_13(
    server: Server, client: Any, sink: RecordingSink
) -> None:
    payload = senml(*[{"n": "noise", "v": 50 + index % 10} for index in range(200)])
    assert len(payload) > 3 * 1024
    codes = []
    for number in range(3):
        block = aiocoap.Message(
            code=aiocoap.POST,
            uri=server.uri("/s/hp-c1"),
            payload=payload[number * 1024 : (number + 1) * 1024],
            content_format=SENML_JSON,
        )
        block.opt.block1 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(number, True, 6)
        response = await asyncio.wait_for(
            client.request(block, handle_blockwise=False).response, 10
        )
        codes.append(str(response.code))
    assert codes == ["2.31 Continue", "2.31 Continue", "4.13 Request Entity Too Large"]
    assert sink.stored == []
