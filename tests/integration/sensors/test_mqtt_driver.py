"""The MQTT sensor driver against a real mosquitto, with devices publishing through real clients."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2
import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.contract import Driver, DriverSink, Reading, Topics
from drivers.sensors.errors import BrokerRefused
from drivers.sensors.mqtt import MqttVersion, SensorMqttDriver
from drivers.sensors.payloads import PayloadLimits, decode_telemetry
from tests.support.brokers import PrivateBroker, free_port, private_mosquitto
from tests.support.sinks import RecordingSink, eventually, running


def make_driver(broker: PrivateBroker, **options: Any) -> SensorMqttDriver:
    settings: dict[str, Any] = {
        "client_id": "hub-test",
        "reconnect_min_delay": 0.05,
        "reconnect_max_delay": 0.5,
        "stop_timeout": 0.5,
        "connect_timeout": 3.0,
    }
    settings.update(options)
    return SensorMqttDriver(broker.host, broker.port, **settings)


def telemetry(**values: float) -> bytes:
    return json.dumps({"ts": datetime.now(UTC).isoformat(), "readings": values}).encode()


def topic(uid: str, channel: str = Topics.TELEMETRY) -> str:
    return Topics.for_device(uid, channel)


async def publish(
    broker: PrivateBroker, *messages: tuple[str, bytes], retain: bool = False, **client: Any
) -> None:
    async with aiomqtt.Client(broker.host, broker.port, **client) as device:
        for message_topic, payload in messages:
            await device.publish(message_topic, payload, qos=1, retain=retain)


async def create_session(broker: PrivateBroker, **options: Any) -> None:
    """Connect once so the broker keeps a session (and queues messages) for the driver."""
    driver = make_driver(broker, **options)
    async with running(driver, RecordingSink()):
        await asyncio.wait_for(driver.wait_connected(), 5)


@pytest.mark.parametrize("version", list(MqttVersion))
async def test_json_and_senml_telemetry_reach_the_sink(
    broker: PrivateBroker, sink: RecordingSink, version: MqttVersion
) -> None:
    now = datetime.now(UTC).timestamp()
    senml = json.dumps([{"bn": "hp-2:", "bt": now, "n": "temperature", "u": "Cel", "v": 31.5}])
    cbor = cbor2.dumps([{0: "water_level", 1: "m", 2: 1.25}])
    driver = make_driver(broker, version=version)
    assert isinstance(driver, Driver)
    assert isinstance(sink, DriverSink)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(
            broker,
            (topic("hp-1"), telemetry(pm2_5=35.2, humidity=81)),
            (topic("hp-2"), senml.encode()),
            (topic("hp-3"), cbor),
        )
        await eventually(lambda: len(sink.stored) == 4 and driver.stats.acknowledged == 3)
    stored = {(reading.device_uid, reading.metric): reading for reading in sink.stored}
    assert stored["hp-1", "pm2_5"].value == 35.2
    assert stored["hp-1", "humidity"].unit is None
    assert stored["hp-2", "hp-2:temperature"].unit == "Cel"  # the hub maps SenML names
    assert (stored["hp-3", "water_level"].value, stored["hp-3", "water_level"].unit) == (1.25, "m")
    assert stored["hp-3", "water_level"].senml and not stored["hp-1", "pm2_5"].senml
    assert set(sink.sources) == {"mqtt"}
    assert sink.quarantined == []


@pytest.mark.parametrize("version", list(MqttVersion))
async def test_messages_the_sink_never_stored_are_delivered_again_after_a_restart(
    broker: PrivateBroker, version: MqttVersion
) -> None:
    stuck = RecordingSink(hold=asyncio.Event())
    driver = make_driver(broker, version=version, stop_timeout=0.2)
    async with running(driver, stuck):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(broker, *[(topic("hp-1"), telemetry(noise=50 + index)) for index in range(5)])
        await eventually(lambda: driver.stats.received == 5 and stuck.outstanding > 0)
    # The stop gave the sink its time, then left without acknowledging anything.
    assert stuck.stored == []
    assert driver.stats.acknowledged == 0

    sink = RecordingSink()
    restarted = make_driver(broker, version=version)
    async with running(restarted, sink):
        await eventually(lambda: len(sink.stored) == 5)
    assert sorted(reading.value for reading in sink.stored) == [50, 51, 52, 53, 54]


async def test_acknowledged_messages_are_not_delivered_again(broker: PrivateBroker) -> None:
    first = RecordingSink()
    driver = make_driver(broker)
    async with running(driver, first):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(broker, *[(topic("hp-1"), telemetry(noise=60 + index)) for index in range(3)])
        await eventually(lambda: driver.stats.acknowledged == 3)

    second = RecordingSink()
    restarted = make_driver(broker)
    async with running(restarted, second):
        await asyncio.wait_for(restarted.wait_connected(), 5)
        await publish(broker, (topic("hp-1"), telemetry(noise=99)))
        await eventually(lambda: len(second.stored) == 1)
        await asyncio.sleep(0.2)
    assert [reading.value for reading in second.stored] == [99]


async def test_malformed_payloads_are_quarantined_with_reasons_and_the_loop_goes_on(
    broker: PrivateBroker, sink: RecordingSink
) -> None:
    oversized = json.dumps({"ts": time.time(), "readings": {"pm2_5": 1}, "pad": "x" * 400})
    bad = [
        (b"\x00\x01garbage", "neither a JSON object"),
        (telemetry(pm2_5="35.2"), "pm2_5 value must be a number, not a string"),  # type: ignore[arg-type]
        (b'{"ts": 1, "readings": {"pm2_5": NaN}}', "NaN is not a finite number"),
        (json.dumps([{"n": "pm2_5", "v": 1, "vs": "1"}]).encode(), "carries v and vs"),
        (oversized.encode(), "exceeds the limit of 256 (the first 256 bytes are kept)"),
    ]
    driver = make_driver(broker, limits=PayloadLimits(max_bytes=256))
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(broker, *[(topic("hp-1"), payload) for payload, _ in bad])
        await publish(broker, (topic("hp-1"), telemetry(pm2_5=12.0)))
        await eventually(lambda: len(sink.stored) == 1 and driver.stats.acknowledged == 6)
    assert [reading.value for reading in sink.stored] == [12.0]
    assert len(sink.quarantined) == len(bad)
    for rejected, (payload, reason) in zip(sink.quarantined, bad, strict=True):
        assert reason in rejected.reason
        assert rejected.source == topic("hp-1")
        assert rejected.device_uid == "hp-1"
        assert rejected.raw == payload[:256]


async def test_unknown_and_refused_devices_are_quarantined_and_acknowledged(
    broker: PrivateBroker,
) -> None:
    await create_session(broker)
    # Queued while the hub is away, so they arrive together in one batch.
    await publish(
        broker,
        (topic("hp-1"), telemetry(noise=55)),
        (topic("ghost"), telemetry(noise=56)),
        (topic("retired"), telemetry(noise=57)),
        (topic("hp-1"), telemetry(noise=58)),
    )
    sink = RecordingSink(unknown={"ghost"}, refused={"retired"})
    driver = make_driver(broker)
    async with running(driver, sink):
        await eventually(lambda: driver.stats.acknowledged == 4)
    assert sorted(reading.value for reading in sink.stored) == [55, 58]
    reasons = {rejected.device_uid: rejected for rejected in sink.quarantined}
    assert reasons["ghost"].reason == "unknown device 'ghost': pending approval"
    assert reasons["retired"].reason == "refused device 'retired': decommissioned"
    assert reasons["ghost"].source == topic("ghost")
    assert json.loads(reasons["retired"].raw)["readings"] == {"noise": 57}

    again = RecordingSink()
    restarted = make_driver(broker)
    async with running(restarted, again):
        await asyncio.wait_for(restarted.wait_connected(), 5)
        await publish(broker, (topic("hp-1"), telemetry(noise=1)))
        await eventually(lambda: len(again.stored) == 1)
    assert again.quarantined == []


async def test_a_failing_sink_is_retried_until_it_stores(
    broker: PrivateBroker,
) -> None:
    sink = RecordingSink(failures_to_inject=2)
    driver = make_driver(broker)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(broker, (topic("hp-1"), telemetry(co=800)))
        await eventually(lambda: driver.stats.acknowledged == 1)
    assert sink.calls == 3
    assert [reading.value for reading in sink.stored] == [800]
    assert sink.quarantined == []


@pytest.mark.parametrize("version", list(MqttVersion))
async def test_messages_held_are_bounded_while_the_sink_is_slow(
    broker: PrivateBroker, version: MqttVersion
) -> None:
    sink = RecordingSink(hold=asyncio.Event())
    driver = make_driver(broker, version=version, batch_size=2, max_batches=2)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(broker, *[(topic("hp-1"), telemetry(noise=index)) for index in range(30)])
        await eventually(lambda: driver.stats.received == 4 and sink.outstanding == 2)
        await asyncio.sleep(0.3)
        assert driver.stats.received == 4  # the rest waits in the broker and in TCP buffers
        sink.hold.set()  # type: ignore[union-attr]
        await eventually(lambda: driver.stats.acknowledged == 30)
    assert sorted(reading.value for reading in sink.stored) == list(range(30))


async def test_status_messages_become_heartbeats_and_battery_readings(
    broker: PrivateBroker, sink: RecordingSink
) -> None:
    status = {"state": "online", "battery": 87, "rssi": -71, "firmware": "2.4.1"}
    driver = make_driver(broker)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(broker, (topic("hp-1", Topics.STATUS), json.dumps(status).encode()))
        await publish(broker, (topic("hp-2", Topics.STATUS), b"offline"))
        await publish(broker, (topic("hp-3", Topics.STATUS), b"asleep"))
        await eventually(lambda: driver.stats.acknowledged == 3)
    online, offline = sink.heartbeats
    assert (online.device_uid, online.connected, online.source) == ("hp-1", True, "mqtt-status")
    assert online.detail == {"battery": 87.0, "rssi": -71.0, "firmware": "2.4.1"}
    assert (offline.device_uid, offline.connected) == ("hp-2", False)
    assert {(reading.metric, reading.value) for reading in sink.stored} == {
        ("battery", 87.0),
        ("rssi", -71.0),
    }
    [rejected] = sink.quarantined
    assert rejected.source == topic("hp-3", Topics.STATUS)
    assert "status must be 'online', 'offline' or a JSON object" in rejected.reason


async def test_last_will_of_a_crashed_device_gives_connected_false(
    broker: PrivateBroker, sink: RecordingSink
) -> None:
    driver = make_driver(broker)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        device = paho.Client(CallbackAPIVersion.VERSION2, client_id="hp-7")
        device.will_set(topic("hp-7", Topics.STATUS), "offline", qos=1, retain=True)
        device.connect(broker.host, broker.port, keepalive=10)
        device.loop_start()
        device.publish(topic("hp-7", Topics.STATUS), "online", qos=1, retain=True).wait_for_publish(
            5
        )
        await eventually(lambda: len(sink.heartbeats) == 1)
        # Power cut: the TCP connection dies without a DISCONNECT, so the broker sends the will.
        device.loop_stop()
        sock = device.socket()
        assert sock is not None
        sock.close()
        await eventually(lambda: len(sink.heartbeats) == 2)
    alive, dead = sink.heartbeats
    assert (alive.device_uid, alive.connected) == ("hp-7", True)
    assert (dead.device_uid, dead.connected, dead.source) == ("hp-7", False, "mqtt-status")


async def test_retained_status_is_marked_as_last_known_state(
    broker: PrivateBroker, sink: RecordingSink
) -> None:
    await publish(broker, (topic("hp-4", Topics.STATUS), b"online"), retain=True)
    driver = make_driver(broker)
    async with running(driver, sink):
        await eventually(lambda: len(sink.heartbeats) == 1)
    [heartbeat] = sink.heartbeats
    assert heartbeat.connected
    assert heartbeat.detail == {"retained": True}


async def test_driver_reconnects_after_the_broker_restarts(
    broker: PrivateBroker, sink: RecordingSink
) -> None:
    driver = make_driver(broker)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await asyncio.to_thread(broker.restart)
        await eventually(lambda: driver.stats.connections == 2)
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(broker, (topic("hp-1"), telemetry(rainfall=0.4)))
        await eventually(lambda: len(sink.stored) == 1)
    assert sink.stored[0].value == 0.4


async def test_two_hub_processes_share_the_telemetry(broker: PrivateBroker) -> None:
    sinks = RecordingSink(), RecordingSink()
    drivers = make_driver(broker, client_id="hub-a"), make_driver(broker, client_id="hub-b")
    async with running(drivers[0], sinks[0]), running(drivers[1], sinks[1]):
        for driver in drivers:
            await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(
            broker, *[(topic(f"hp-{index % 10}"), telemetry(noise=index)) for index in range(100)]
        )
        await eventually(lambda: len(sinks[0].stored) + len(sinks[1].stored) == 100)
        await asyncio.sleep(0.2)
    values = sorted(reading.value for sink in sinks for reading in sink.stored)
    assert values == list(range(100))  # each message went to exactly one hub
    assert sinks[0].stored and sinks[1].stored


async def test_content_type_of_an_mqtt5_message_selects_the_decoder(
    broker: PrivateBroker, sink: RecordingSink
) -> None:
    def properties(content_type: str) -> Properties:
        publish_properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        publish_properties.ContentType = content_type
        return publish_properties

    senml = json.dumps([{"n": "noise", "v": 48}]).encode()
    driver = make_driver(broker, version=MqttVersion.V5)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        async with aiomqtt.Client(
            broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as device:
            for content_type in ("application/senml+json", "application/json", "text/csv"):
                await device.publish(
                    topic("hp-1"), senml, qos=1, properties=properties(content_type)
                )
        await eventually(lambda: driver.stats.acknowledged == 3)
    assert [reading.value for reading in sink.stored] == [48]
    assert "JSON payload must be an object" in sink.quarantined[0].reason
    assert "content type 'text/csv' is not one of" in sink.quarantined[1].reason


async def test_credentials_are_used_and_a_refusal_is_terminal(
    password_file: Path, sink: RecordingSink
) -> None:
    with private_mosquitto(f"password_file {password_file}", allow_anonymous=False) as secured:
        driver = make_driver(secured, username="iochub", password="s3cret")
        async with running(driver, sink):
            await asyncio.wait_for(driver.wait_connected(), 5)
            await publish(
                secured,
                (topic("hp-1"), telemetry(noise=40)),
                username="iochub",
                password="s3cret",
            )
            await eventually(lambda: len(sink.stored) == 1)

        refused = make_driver(secured, client_id="intruder", username="iochub", password="guess")
        with pytest.raises(BrokerRefused, match="refused the connection"):
            await asyncio.wait_for(refused.run(sink), 5)


@pytest.fixture
def tls_files() -> Iterator[dict[str, Path]]:
    """A private CA and a certificate for 127.0.0.1, readable by the user mosquitto runs as."""
    directory = Path(tempfile.mkdtemp(prefix="iochub-tls-"))
    directory.chmod(0o755)
    now = datetime.now(UTC)

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            address = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
            builder = builder.add_extension(x509.SubjectAlternativeName([address]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iochub test CA")])
    ca_cert = certificate("iochub test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = certificate("127.0.0.1", server_key, ca_name, ca_key, ca=False)
    files = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "key.pem",
    }
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path in files.values():
        path.chmod(0o644)
    yield files
    shutil.rmtree(directory, ignore_errors=True)


async def test_driver_connects_over_tls(tls_files: dict[str, Path], sink: RecordingSink) -> None:
    tls_port = free_port()
    listener = (
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {tls_files['ca']}\ncertfile {tls_files['cert']}\nkeyfile {tls_files['key']}\n"
    )
    with private_mosquitto(listener) as broker:
        context = ssl.create_default_context(cafile=str(tls_files["ca"]))
        driver = SensorMqttDriver(broker.host, tls_port, client_id="hub-tls", tls=context)
        async with running(driver, sink):
            await asyncio.wait_for(driver.wait_connected(), 5)
            await publish(broker, *[(topic("hp-1"), telemetry(noise=index)) for index in range(50)])
            await eventually(lambda: driver.stats.acknowledged == 50)
        assert sorted(reading.value for reading in sink.stored) == list(range(50))

        untrusted = SensorMqttDriver(
            broker.host, tls_port, client_id="hub-tls-2", tls=ssl.create_default_context()
        )
        with pytest.raises(BrokerRefused, match="broker certificate not trusted"):
            await asyncio.wait_for(untrusted.run(RecordingSink()), 5)


async def test_a_decoder_failure_costs_one_message_not_the_loop(
    broker: PrivateBroker, sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def flawed_decoder(payload: bytes, device_uid: str, **options: Any) -> list[Reading]:
        if payload == b'{"boom": 1}':
            raise KeyError("boom")
        return decode_telemetry(payload, device_uid, **options)

    monkeypatch.setattr("drivers.sensors.mqtt.decode_telemetry", flawed_decoder)
    driver = make_driver(broker)
    async with running(driver, sink):
        await asyncio.wait_for(driver.wait_connected(), 5)
        await publish(broker, (topic("hp-1"), b'{"boom": 1}'), (topic("hp-1"), telemetry(so2=9)))
        await eventually(lambda: driver.stats.acknowledged == 2)
    assert [reading.value for reading in sink.stored] == [9]
    assert sink.quarantined[0].reason == "decoder failure: KeyError('boom')"
