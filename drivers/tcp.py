"""TCP options for MQTT connections, the hub's and the simulated devices' alike.

paho leaves Nagle's algorithm on, so a small packet written while the previous one is not
yet acknowledged waits for the peer's delayed ACK (about 40 ms on Linux). MQTT is small
packets one after another (a PUBACK, then the next report; a round's commands), which made
every firmware step of a device cost 40 ms more than it took.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import aiomqtt
from paho.mqtt.enums import MQTTErrorCode


def no_delay(client: aiomqtt.Client) -> None:
    """Send each packet at once (TCP_NODELAY) on a connected client; a no-op otherwise."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


COALESCE_MAX_BYTES = 64 * 1024
"""Largest single write made of queued packets (a few loopback segments' worth)."""
_PUBLISH, _DISCONNECT = 0x30, 0xE0


def _merges(packet: dict[str, Any]) -> bool:
    """Whether paho does nothing for this packet once written: not a QoS 0 PUBLISH (its
    on_publish fires at the write) nor a DISCONNECT (closes the socket), and not begun."""
    kind = packet["command"] & 0xF0
    return (
        packet["pos"] == 0 and kind != _DISCONNECT and not (kind == _PUBLISH and packet["qos"] == 0)
    )


def coalesce_writes(client: aiomqtt.Client) -> None:
    """Write the packets paho has queued with one send instead of one each.

    paho calls send() once per packet: a burst of QoS 1 messages in brings one 4-byte
    PUBACK send per message, and a round of commands one send per command. With
    TCP_NODELAY each send is a segment of its own and a wake-up of the broker; on loopback
    the sender pays the receiver's side of it too, which was the largest single cost of a
    10,000-speaker rollout in the hub. The bytes and their order on the wire are the
    same; only the number of writes changes.
    """
    paho = client._client
    original: Callable[[], Any] = paho._packet_write

    def packet_write() -> Any:
        queue: deque[Any] = paho._out_packet
        if len(queue) > 1:
            merged: deque[Any] = deque()
            run: list[Any] = []
            size = 0

            def flush() -> None:
                nonlocal size
                if len(run) == 1:
                    merged.append(run[0])
                elif run:
                    data = b"".join(bytes(p["packet"]) for p in run)
                    merged.append(
                        {
                            "command": run[0]["command"],
                            "mid": run[0]["mid"],
                            "qos": max(1, run[0]["qos"]),
                            "pos": 0,
                            "to_process": len(data),
                            "packet": data,
                            "info": None,
                        }
                    )
                run.clear()
                size = 0

            for packet in queue:
                if not _merges(packet):
                    flush()
                    merged.append(packet)
                    continue
                if size + packet["to_process"] > COALESCE_MAX_BYTES:
                    flush()
                run.append(packet)
                size += packet["to_process"]
            flush()
            queue.clear()
            queue.extend(merged)
        return original()

    # An instance attribute shadows the method for this client only.
    setattr(paho, "_packet_write", packet_write)  # noqa: B010


READ_BURST = 200
"""Most packets read per wake-up of the event loop (others' turn comes after them)."""


def read_in_bursts(client: aiomqtt.Client) -> None:
    """Read every packet waiting on the socket (up to `READ_BURST`) per wake-up.

    aiomqtt's reader asks paho for one packet per event-loop turn, so a burst of messages
    cost a turn of the loop each (a poll of every socket and a write of one PUBACK); read
    together, their PUBACKs go out together too (`coalesce_writes`).
    """
    paho = client._client

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:
        for _ in range(max(max_packets, READ_BURST)):
            if paho._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = paho._packet_read()
            if rc > 0:
                return paho._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    setattr(paho, "loop_read", loop_read)  # noqa: B010


def batch_io(client: aiomqtt.Client) -> None:
    """TCP_NODELAY, bursts read and writes coalesced, on a connected client."""
    no_delay(client)
    read_in_bursts(client)
    coalesce_writes(client)
