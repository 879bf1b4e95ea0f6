"""Coalesced MQTT writes on a real broker: the same packets, in order, in fewer sends."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt

from drivers.tcp import batch_io
from tests.support.brokers import PrivateBroker

COUNT = 500


def count_sends(client: aiomqtt.Client) -> list[int]:
    """Wraps paho's send: the list grows by the size of each write."""
    paho = client._client
    original = paho._sock_send
    sizes: list[int] = []

    def send(buf: Any) -> int:
        written = original(buf)
        sizes.append(written)
        return written

    setattr(paho, "_sock_send", send)  # noqa: B010
    return sizes


async def test_a_burst_in_is_acknowledged_in_few_writes_and_all_arrive_in_order(
    broker: PrivateBroker,
) -> None:
    async with (
        aiomqtt.Client(broker.host, broker.port, identifier="tcp-receiver") as receiver,
        aiomqtt.Client(
            broker.host, broker.port, identifier="tcp-sender", max_inflight_messages=COUNT
        ) as sender,
    ):
        batch_io(receiver)
        batch_io(sender)
        received_sends = count_sends(receiver)
        sent_sends = count_sends(sender)
        await receiver.subscribe("tcp-test/#", qos=1)
        got: list[bytes] = []

        async def take() -> None:
            async for message in receiver.messages:
                assert isinstance(message.payload, bytes)
                got.append(message.payload)
                if len(got) == COUNT:
                    return

        taking = asyncio.create_task(take())
        infos = [
            sender._client.publish(f"tcp-test/{n % 7}", str(n).encode(), qos=1)
            for n in range(COUNT)
        ]
        async with asyncio.timeout(20):
            await taking
            while not all(info.is_published() for info in infos):
                await asyncio.sleep(0.01)
        assert got == [str(n).encode() for n in range(COUNT)]
        # One send per packet without coalescing: 500 PUBACKs and 500 PUBLISHes.
        assert 0 < len(received_sends) < COUNT / 5
        assert 0 < len(sent_sends) < COUNT / 5
        # The broker saw every PUBACK: nothing is left in flight on its side (a QoS 1
        # message it still waits for would come again to a new session; none does).
        assert receiver._client._out_packet == type(receiver._client._out_packet)()
