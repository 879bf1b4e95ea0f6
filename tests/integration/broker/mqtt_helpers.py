"""Small MQTT client helpers for talking to the test broker as devices and as the hub."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from drivers.contract import DeviceKind
from hub.devices.broker import MosquittoDynsec, new_device_secret
from tests.support.dynsec import DynsecBroker

# paho reports MQTT 3.1.1 CONNACK 5 (not authorised) as the MQTT 5 reason code 135.
NOT_AUTHORISED = 135
GRANTED_QOS_1 = 1
SUBSCRIPTION_REFUSED = 128  # MQTT 3.1.1 SUBACK failure


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str


def unique_uid(kind: DeviceKind) -> str:
    return f"{kind.value}-{uuid.uuid4().hex[:10]}"


async def provisioned(access: MosquittoDynsec, kind: DeviceKind) -> Credentials:
    device = Credentials(unique_uid(kind), new_device_secret())
    await access.provision_device(device.username, kind, device.secret)
    return device


def client(
    broker: DynsecBroker, who: Credentials | None, identifier: str | None = None
) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=who.username if who else None,
        password=who.secret if who else None,
        identifier=identifier or f"test-{secrets.token_hex(4)}",
        timeout=3.0,
    )


async def connect_refusal(broker: DynsecBroker, who: Credentials | None) -> int | None:
    """The CONNACK code refusing these credentials, or None if they were accepted."""
    try:
        async with client(broker, who):
            return None
    except MqttConnectError as exc:
        return exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc


async def subscribe(subscriber: aiomqtt.Client, topic: str) -> int:
    """Subscribe at QoS 1; the SUBACK code (1 granted, 128 refused)."""
    codes: Sequence[int | ReasonCode] = await subscriber.subscribe(topic, qos=1)
    (code,) = codes
    return code.value if isinstance(code, ReasonCode) else code


async def messages_until(subscriber: aiomqtt.Client, sentinel_topic: str) -> list[aiomqtt.Message]:
    """Everything received up to and including the first message on ``sentinel_topic``.

    A publisher's messages reach a subscriber in order, so anything the broker
    let through before the sentinel is in this list.
    """
    received: list[aiomqtt.Message] = []
    async with asyncio.timeout(3.0):
        async for message in subscriber.messages:
            received.append(message)
            if message.topic.value == sentinel_topic:
                return received
    raise AssertionError("unreachable: the message iterator ended without disconnecting")


async def messages_within(subscriber: aiomqtt.Client, seconds: float) -> list[aiomqtt.Message]:
    received: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in subscriber.messages:
                received.append(message)
    return received


async def disconnected_within(connected: aiomqtt.Client, seconds: float) -> bool:
    """True if the broker drops this connection within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            async for _ in connected.messages:
                pass
    except TimeoutError:
        return False
    except aiomqtt.MqttError:
        return True
    return True
