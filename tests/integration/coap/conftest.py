"""A CoAP server on loopback, and sensors that speak OSCORE on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiocoap
import pytest
from aiocoap.message import Direction

from drivers.sensors.oscore import DeviceSecurityContext, protect_requests
from tests.support.sinks import RecordingSink

SENML_JSON = 110


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    """An aiocoap client that protects requests it has an OSCORE context for."""
    context = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    yield context
    await context.shutdown()


@pytest.fixture
async def wire() -> AsyncIterator[Any]:
    """A plain aiocoap client: sends messages exactly as given, protected or not."""
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    yield context
    await context.shutdown()


def senml(metric: str = "pm2_5", value: float = 35.5) -> bytes:
    return json.dumps([{"n": metric, "u": "ug/m3", "v": value}]).encode()


@dataclass
class Endpoint:
    port: int

    @property
    def hostinfo(self) -> str:
        return f"127.0.0.1:{self.port}"

    def uri(self, uid: str) -> str:
        return f"coap://{self.hostinfo}/s/{uid}"


async def post(client: Any, uri: str, payload: bytes) -> Any:
    """POST SenML; an answer the OSCORE layer sent in the clear is returned as it came."""
    request = aiocoap.Message(
        code=aiocoap.POST, uri=uri, payload=payload, content_format=SENML_JSON
    )
    try:
        return await asyncio.wait_for(client.request(request).response, 10)
    except aiocoap.oscore.NotAProtectedMessage as error:
        return error.plain_message


async def post_as(
    client: Any, endpoint: Endpoint, uid: str, security: DeviceSecurityContext, payload: bytes
) -> Any:
    protect_requests(client, endpoint.uri(uid), security)
    return await post(client, endpoint.uri(uid), payload)


@dataclass
class Captured:
    """A protected request as it went over the wire, and what opens its response."""

    outer: Any
    request_id: Any


def protect(
    security: DeviceSecurityContext, endpoint: Endpoint, uid: str, payload: bytes
) -> Captured:
    request = aiocoap.Message(
        code=aiocoap.POST, uri=endpoint.uri(uid), payload=payload, content_format=SENML_JSON
    )
    request.direction = Direction.OUTGOING
    outer, request_id = security.protect(request)
    return Captured(outer, request_id)


async def send(wire: Any, captured: Captured, endpoint: Endpoint) -> Any:
    """Send the captured bytes (again): a fresh message id and token, the same OSCORE content."""
    message = captured.outer.copy(mid=None, token=None)
    message.unresolved_remote = endpoint.hostinfo
    return await asyncio.wait_for(wire.request(message).response, 10)


def opened(security: DeviceSecurityContext, response: Any, captured: Captured) -> Any:
    inner, _ = security.unprotect(response, captured.request_id)
    return inner
