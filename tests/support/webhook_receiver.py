"""A webhook receiver on a real loopback socket that can misbehave on demand.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) and de-duplicates like a
careful receiver: the first request with a given webhook-id is accepted, later ones are
answered 200 and counted as duplicates. Modes:

- ok: answer 200
- error: answer 500
- gone: answer 410
- slow: wait `delay_s`, then accept and answer 200 (the sender may have given up by then)
- drop: read the request, then close the connection without answering
- down (via `down()`): the port is closed; connections are refused
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.support.brokers import free_port

Mode = Literal["ok", "error", "gone", "slow", "drop"]
_REASONS = {200: "OK", 410: "Gone", 500: "Internal Server Error"}


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)
    mode: Mode = "ok"

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, mode: Mode = "ok", delay_s: float = 1.0) -> None:
        self.port = free_port()
        self.mode: Mode = mode
        self.delay_s = delay_s
        self.requests: list[ReceivedRequest] = []
        self.accepted: dict[str, ReceivedRequest] = {}
        self.duplicates: list[ReceivedRequest] = []
        self._plan: deque[Mode] = deque()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/iochub"

    def plan(self, modes: Iterable[Mode]) -> None:
        """Answer the next requests in these modes, then in `mode` again."""
        self._plan.extend(modes)

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def down(self) -> None:
        """Close the port and every open connection: the receiver is unreachable."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._connections):
            writer.close()
        self._connections.clear()

    async def wait_accepted(self, count: int, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: len(self.accepted) >= count)

    async def wait_requests(self, count: int, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while (request := await _read_request(reader)) is not None:
                if not await self._answer(request, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, request: ReceivedRequest, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        mode = self._plan.popleft() if self._plan else self.mode
        request.mode = mode
        await self._note(request)
        if mode == "drop":
            return False
        if mode == "slow":
            await asyncio.sleep(self.delay_s)
        status = {"error": 500, "gone": 410}.get(mode, 200)
        if status == 200:
            await self._accept(request)
        body = b"ok" if status == 200 else b"receiver says no"
        writer.write(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        return request.headers.get("connection", "").lower() != "close"

    async def _note(self, request: ReceivedRequest) -> None:
        async with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    async def _accept(self, request: ReceivedRequest) -> None:
        async with self._changed:
            if request.webhook_id in self.accepted:
                self.duplicates.append(request)
            else:
                self.accepted[request.webhook_id] = request
            self._changed.notify_all()


async def _read_request(reader: asyncio.StreamReader) -> ReceivedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return ReceivedRequest(method=method, path=path, headers=headers, body=body)


@contextlib.asynccontextmanager
async def webhook_receiver(
    mode: Mode = "ok", delay_s: float = 1.0
) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(mode, delay_s)
    await receiver.up()
    try:
        yield receiver
    finally:
        await receiver.down()
