"""TCP options for MQTT connections, the hub's and the simulated devices' alike.

paho leaves Nagle's algorithm on, so a small packet written while the previous one is not
yet acknowledged waits for the peer's delayed ACK (about 40 ms on Linux). MQTT is small
packets one after another (a PUBACK, then the next report; a round's commands), which made
every firmware step of a device cost 40 ms more than it took.
"""

from __future__ import annotations

import contextlib
import socket

import aiomqtt


def no_delay(client: aiomqtt.Client) -> None:
    """Send each packet at once (TCP_NODELAY) on a connected client; a no-op otherwise."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
