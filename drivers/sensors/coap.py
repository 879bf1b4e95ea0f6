"""Sensor telemetry over CoAP: ``POST /s/<device uid>`` with a SenML pack (aiocoap server).

A request is answered 2.04 Changed only after the sink has stored its readings,
so a device that sees 2.04 may forget the data. Failures map to CoAP codes
(docs/protocol/sensors.md): 4.00 malformed, 4.01 unauthenticated, 4.03 refused,
4.04 unknown device, 4.13 too large, 4.15 unsupported content format, 5.03 storage
unavailable. Given security contexts, the server speaks OSCORE (RFC 8613).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

from drivers.contract import (
    DecodeError,
    DriverSink,
    Heartbeat,
    RefusedDevice,
    Rejected,
    StoreReport,
    UnknownDevice,
)
from drivers.sensors.errors import CoapBindFailed
from drivers.sensors.payloads import (
    DEFAULT_LIMITS,
    PayloadFormat,
    PayloadLimits,
    decode_senml_cbor,
    decode_senml_json,
)

__all__ = [
    "CONTENT_FORMATS",
    "RequestAuthoriser",
    "SecurityContexts",
    "SensorCoapDriver",
    "Unauthenticated",
    "allow_any_sender",
]

log = logging.getLogger(__name__)

SOURCE: Final = "coap"
RESOURCE_PATH: Final = ("s",)
# CoAP Content-Format numbers (IANA "CoAP Content-Formats", RFC 8428 section 12.3).
CONTENT_FORMATS: Final[Mapping[int, PayloadFormat]] = {
    110: PayloadFormat.SENML_JSON,
    112: PayloadFormat.SENML_CBOR,
}
# How long a device should wait before retrying after 5.03 (the Max-Age option).
RETRY_AFTER_SECONDS: Final = 30
# A diagnostic stays within one datagram beside the headers (RFC 7252 section 4.6).
MAX_DIAGNOSTIC_BYTES: Final = 512


class Unauthenticated(RefusedDevice):
    """The request carries no proof of who sent it (it is not OSCORE-protected)."""


class RequestAuthoriser(Protocol):
    """Decides whether a request may speak for a device.

    With security contexts, an OSCORE-protected request arrives with the context
    that opened it in ``request.remote.authenticated_claims``; an authoriser such
    as ``drivers.sensors.oscore.OscoreAuthoriser`` compares it with ``device_uid``.
    """

    def __call__(self, device_uid: str, request: Any) -> None:
        """Return if allowed; raise Unauthenticated (4.01) or RefusedDevice (4.03) otherwise."""
        ...


class SecurityContexts(Protocol):
    """The OSCORE contexts a server accepts (``drivers.sensors.oscore.SecurityContextRegistry``).

    Consulted for every protected request, so changes apply at once.
    """

    def find_oscore(self, unprotected: Mapping[int, Any]) -> Any:
        """The context for a request's key id; KeyError if there is none."""
        ...


def allow_any_sender(device_uid: str, request: Any) -> None:
    """Plain CoAP: the network is the only gatekeeper, every sender is accepted."""


class SensorCoapDriver:
    """A CoAP server that accepts SenML packs from sensors and hands them to a sink.

    With ``security_contexts`` the resource sits behind aiocoap's OSCORE layer:
    protected requests are opened with the context of their key id (an unknown key
    id, a replay or a forgery is answered by that layer) and reach ``authorise``
    with the context in their claims. Plain requests reach ``authorise`` without.
    """

    name = "sensors-coap"

    def __init__(
        self,
        host: str = "::",
        port: int = 5683,
        *,
        limits: PayloadLimits = DEFAULT_LIMITS,
        authorise: RequestAuthoriser = allow_any_sender,
        security_contexts: SecurityContexts | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.limits = limits
        self.authorise = authorise
        self.security_contexts = security_contexts
        self._listening = asyncio.Event()

    async def wait_listening(self) -> None:
        """Return once the server accepts requests."""
        await self._listening.wait()

    async def run(self, sink: DriverSink) -> None:
        """Serve until cancelled; raises CoapBindFailed if the address cannot be bound."""
        site = resource.Site()
        site.add_resource(RESOURCE_PATH, _SensorResource(sink, self.limits, self.authorise))
        root = (
            site
            if self.security_contexts is None
            else OscoreSiteWrapper(site, self.security_contexts)
        )
        try:
            context = await aiocoap.Context.create_server_context(
                root, bind=(self.host, self.port), transports=["udp6"]
            )
        except OSError as error:
            raise CoapBindFailed(f"cannot listen on [{self.host}]:{self.port}: {error}") from error
        log.info(
            "CoAP sensor server listening on [%s]:%d (OSCORE %s)",
            self.host,
            self.port,
            "off" if self.security_contexts is None else "on",
        )
        self._listening.set()
        try:
            await asyncio.Future()
        finally:
            self._listening.clear()
            await context.shutdown()


class _SensorResource(resource.Resource, resource.PathCapable):  # type: ignore[misc]
    """``/s/<device uid>``: the path segment after ``s`` names the device."""

    rt = "iochub.sensor.telemetry"
    ct = " ".join(str(number) for number in CONTENT_FORMATS)

    def __init__(
        self, sink: DriverSink, limits: PayloadLimits, authorise: RequestAuthoriser
    ) -> None:
        super().__init__()
        self._sink = sink
        self._limits = limits
        self._authorise = authorise

    async def needs_blockwise_assembly(self, request: Any) -> bool:
        # Never assemble past the limit: an oversized block-wise upload is answered
        # 4.13 on the first block if Size1 announces it, else on the block crossing it.
        return _body_size(request) <= self._limits.max_bytes

    async def render_post(self, request: Any) -> Any:
        path = request.opt.uri_path
        if len(path) != 1 or not path[0]:
            return _error(Code.NOT_FOUND, "POST to /s/<device uid>")
        device_uid: str = path[0]
        source = f"coap:/s/{device_uid}"
        payload = bytes(request.payload)
        try:
            self._authorise(device_uid, request)
        except Unauthenticated as error:
            # Not quarantined: anyone on the network can send these, so they must not cost storage.
            log.debug(
                "unauthenticated CoAP request for %s from %s: %s", source, _peer(request), error
            )
            return _error(Code.UNAUTHORIZED, f"authentication required: {error}")
        except RefusedDevice as error:
            await self._reject(source, payload, f"refused sender: {error}", device_uid)
            return _error(Code.FORBIDDEN, "this sender may not speak for the device")
        if _body_size(request) > self._limits.max_bytes:
            await self._reject(
                source,
                bytes(request.payload[: self._limits.max_bytes]),
                f"payload exceeds the limit of {self._limits.max_bytes} bytes "
                "(the bytes received up to the limit are kept)",
                device_uid,
            )
            response = _error(
                Code.REQUEST_ENTITY_TOO_LARGE,
                f"payload exceeds the limit of {self._limits.max_bytes} bytes",
            )
            response.opt.size1 = self._limits.max_bytes
            return response
        payload_format = CONTENT_FORMATS.get(request.opt.content_format)
        if payload_format is None:
            await self._reject(
                source,
                payload,
                f"unsupported Content-Format {request.opt.content_format}",
                device_uid,
            )
            return _error(
                Code.UNSUPPORTED_CONTENT_FORMAT,
                "Content-Format must be 110 (application/senml+json) "
                "or 112 (application/senml+cbor)",
            )
        decode = (
            decode_senml_json if payload_format is PayloadFormat.SENML_JSON else decode_senml_cbor
        )
        now = datetime.now(UTC)
        try:
            readings = decode(payload, device_uid, now=now, limits=self._limits)
        except DecodeError as error:
            await self._reject(source, payload, str(error), device_uid)
            return _error(Code.BAD_REQUEST, str(error))
        try:
            report = await self._sink.readings(readings, SOURCE)
        except UnknownDevice as error:
            await self._reject(source, payload, f"unknown device: {error}", device_uid)
            return _error(Code.NOT_FOUND, f"device {device_uid!r} is not registered")
        except RefusedDevice as error:
            await self._reject(source, payload, f"refused device: {error}", device_uid)
            return _error(Code.FORBIDDEN, f"device {device_uid!r} may not send data")
        except Exception:
            log.exception("sensor sink failed for %s", source)
            response = _error(Code.SERVICE_UNAVAILABLE, "storage unavailable; retry later")
            response.opt.max_age = RETRY_AFTER_SECONDS
            return response
        remote = {"remote": _peer(request)}
        try:
            await self._sink.heartbeat(Heartbeat(device_uid, now, True, SOURCE, remote))
        except Exception:
            # The readings are stored: answering an error would only make the device resend them.
            log.exception("sensor sink refused a heartbeat for %s", source)
        if report is not None and not report.complete:
            # Well-formed SenML the hub could not store in full (unknown name, unit, range,
            # age, a conflicting value): 4.22 (RFC 8132 section 3.4), never 2.04, which
            # promises that everything is stored. What was stored stays stored.
            return _error(Code.UNPROCESSABLE_ENTITY, _partial_diagnostic(report))
        return aiocoap.Message(code=Code.CHANGED)

    async def _reject(self, source: str, payload: bytes, reason: str, device_uid: str) -> None:
        try:
            await self._sink.rejected(
                Rejected(source, payload, reason, device_uid, datetime.now(UTC))
            )
        except Exception:
            # The device still gets its answer; the quarantine copy is best effort here.
            log.exception("cannot quarantine a rejected CoAP request from %s", source)


def _body_size(request: Any) -> int:
    """The size of the body a request carries, announces (Size1), or reaches with its block.

    An assembled request keeps the last block's Block1 option but holds the
    whole body, which is longer than one block; a lone block is not.
    """
    size = len(request.payload)
    block1 = request.opt.block1
    if block1 is not None and (block1.more or size <= block1.size):
        size += block1.start
    return max(size, request.opt.size1 or 0)


def _peer(request: Any) -> str:
    return str(request.remote.hostinfo)


def _error(code: Code, diagnostic: str) -> Any:
    """An error response with a diagnostic payload (RFC 7252 section 5.5.2)."""
    encoded = diagnostic.encode()
    if len(encoded) > MAX_DIAGNOSTIC_BYTES:
        encoded = encoded[: MAX_DIAGNOSTIC_BYTES - 3].decode(errors="ignore").encode() + b"..."
    return aiocoap.Message(code=code, payload=encoded)


def _partial_diagnostic(report: StoreReport) -> str:
    reasons = "; ".join(dict.fromkeys(report.refused))
    return f"stored {report.stored} of {report.total} readings; not stored: {reasons}"
