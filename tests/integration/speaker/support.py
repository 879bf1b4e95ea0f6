"""Test doubles that speak real protocols: an HTTP audio server and a recording sink."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.contract import Ack, AckStage, Command, DeviceEvent, Heartbeat, Reading, Rejected


class AudioServer:
    """Serves registered audio bytes over HTTP/1.1 (keep-alive) on 127.0.0.1."""

    def __init__(self) -> None:
        self._assets: dict[str, bytes] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.requests: list[str] = []

    def add(self, name: str, body: bytes) -> tuple[str, str]:
        """Register ``body`` under ``/audio/<name>``; returns (url, sha256)."""
        self._assets[f"/audio/{name}"] = body
        return self.url(name), hashlib.sha256(body).hexdigest()

    def url(self, name: str) -> str:
        # A query string like the hub's signed URLs; the server ignores it.
        return f"http://127.0.0.1:{self.port}/audio/{name}?expires=4102444800&sig=test"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await asyncio.gather(*self._handlers)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                path = target.partition("?")[0]
                self.requests.append(path)
                body = self._assets.get(path)
                if method != "GET" or body is None:
                    status, body = "404 Not Found", b"not found"
                else:
                    status = "200 OK"
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: audio/mpeg\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(handler)
            self._connections.discard(writer)
            writer.close()


@dataclass
class RecordingSink:
    """A DriverSink that keeps everything and lets a test wait for what it expects."""

    acks: list[Ack] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    rejections: list[Rejected] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    """Several sinks may share one, to wait on what they receive together."""

    async def readings(self, items: list[Reading], source: str) -> None:
        raise AssertionError("speakers send no readings")

    async def _record(self, append: Callable[[], None]) -> None:
        async with self.changed:
            append()
            self.changed.notify_all()

    async def heartbeat(self, item: Heartbeat) -> None:
        await self._record(lambda: self.heartbeats.append(item))

    async def event(self, item: DeviceEvent) -> None:
        await self._record(lambda: self.events.append(item))

    async def ack(self, item: Ack) -> None:
        await self._record(lambda: self.acks.append(item))

    async def rejected(self, item: Rejected) -> None:
        await self._record(lambda: self.rejections.append(item))

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s), self.changed:
            await self.changed.wait_for(predicate)

    def stages(self, command_id: str) -> list[AckStage]:
        return [ack.stage for ack in self.acks if ack.command_id == command_id]

    def acks_for(self, command_id: str) -> list[Ack]:
        return [ack for ack in self.acks if ack.command_id == command_id]

    def heartbeats_of(self, device_uid: str) -> list[Heartbeat]:
        return [beat for beat in self.heartbeats if beat.device_uid == device_uid]


def unique_uids(prefix: str, count: int) -> list[str]:
    """Speaker uids no other test uses, so retained status and sessions never leak across."""
    tag = uuid.uuid4().hex[:6]
    return [f"{prefix}-{tag}-{index:03d}" for index in range(count)]


def play(
    device_uid: str,
    url: str,
    sha256: str,
    *,
    command_id: str | None = None,
    duration_s: float = 1.0,
    priority: str = "normal",
    **params: Any,
) -> Command:
    return Command(
        command_id=command_id or f"play-{uuid.uuid4().hex[:10]}",
        device_uid=device_uid,
        action="play",
        params={
            "audio_url": url,
            "sha256": sha256,
            "duration_s": duration_s,
            "volume": 70,
            "priority": priority,
            "broadcast_id": "bc-1",
            **params,
        },
    )
