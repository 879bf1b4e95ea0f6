"""Reading an ONVIF camera: identity, services, media profiles and the features it offers.

Everything the library can raise (zeep, aiohttp, onvif) is translated here into
``CameraError`` subclasses that say whether trying again can help.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import zeep.exceptions
from onvif import ONVIFCamera
from onvif.exceptions import ONVIFError
from onvif.util import is_auth_error

log = logging.getLogger(__name__)

DEVICE_NS = "http://www.onvif.org/ver10/device/wsdl"
MEDIA_NS = "http://www.onvif.org/ver10/media/wsdl"
EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"
PULLPOINT_XADDR_KEY = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"
SERVICE_NAMES = {DEVICE_NS: "device", MEDIA_NS: "media", EVENTS_NS: "events", PTZ_NS: "ptz"}
_CREDENTIAL_QUERY_KEYS = frozenset(
    {"user", "username", "usr", "pass", "password", "pwd", "passwd", "auth"}
)

_T = TypeVar("_T")


class CameraError(Exception):
    """A camera could not be read; ``retryable`` says whether trying again later can help."""

    default_retryable: ClassVar[bool] = True

    def __init__(
        self, message: str, *, retryable: bool | None = None, operation: str | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = self.default_retryable if retryable is None else retryable
        # The ONVIF operation whose reply failed, so a technician knows where to look.
        self.operation = operation


class CameraAuthError(CameraError):
    """The camera rejected the credentials; retrying with the same ones cannot help.

    ``clock_suspect`` says the camera's clock may be the cause instead: WS-Security
    digests carry their creation time, and cameras refuse tokens dated far from theirs.
    """

    default_retryable = False
    clock_suspect: str | None = None


class CameraUnreachable(CameraError):
    """Nothing answered at the address (refused, reset, no route)."""


class CameraNotOnvif(CameraError):
    """Something answers at the address, but it does not speak ONVIF there."""

    default_retryable = False


class CameraTimeout(CameraError):
    """The camera did not answer within the time allowed."""


class CameraProtocolError(CameraError):
    """The camera answered with something ONVIF does not allow, or refused the operation."""


@dataclass(frozen=True, slots=True)
class CameraTarget:
    """A camera to talk to; the password is kept out of reprs."""

    device_uid: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class MediaProfile:
    token: str
    name: str
    encoding: str | None
    width: int | None
    height: int | None
    frame_rate: float | None
    stream_uri: str | None
    snapshot_uri: str | None
    ptz: bool = False


@dataclass(frozen=True, slots=True)
class CameraProbe:
    """What onboarding learns about a camera; URIs carry no credentials."""

    host: str
    port: int
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware_id: str
    hostname: str | None
    mac_addresses: tuple[str, ...]
    services: Mapping[str, str]  # service name -> XAddr
    profiles: tuple[MediaProfile, ...]
    supports_ptz: bool
    supports_events: bool
    supports_pullpoint: bool
    event_topics: tuple[str, ...]
    clock_drift_s: float | None
    # Optional features whose call failed: what -> why (declined, or a reply unreadable).
    unavailable: Mapping[str, str] = field(default_factory=dict)

    @property
    def snapshot_uri(self) -> str | None:
        return next((p.snapshot_uri for p in self.profiles if p.snapshot_uri), None)


@dataclass(frozen=True, slots=True)
class ClockReading:
    """The camera's clock against ours: ``drift_s`` > 0 means the camera runs ahead."""

    drift_s: float | None
    round_trip_s: float


# -- secrets stay out of logs -------------------------------------------------------------


class _ElideSoapBodies(logging.Filter):
    """The transports log whole envelopes at DEBUG: WS-Security digests, URIs with passwords."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_elide(arg) for arg in record.args)
        return True


def _elide(value: object) -> object:
    if isinstance(value, bytes | str) and len(value) > 64:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if "<" in text:
            return f"[{len(value)} bytes of XML elided]"
    return value


for _transport_logger in ("onvif.zeep_aiohttp", "zeep.transports"):
    logging.getLogger(_transport_logger).addFilter(_ElideSoapBodies())


def strip_credentials(uri: str) -> str:
    """The URI without user:password@ and without query parameters that carry credentials."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key.lower() not in _CREDENTIAL_QUERY_KEYS
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def pin_to_host(url: str, host: str) -> str:
    """Point an advertised service address at the host we reached the camera on.

    Cameras behind NAT or after a DHCP change advertise addresses we cannot reach,
    and the hub must never send credentials anywhere but the camera itself.
    """
    parts = urlsplit(url)
    if parts.hostname in (None, host):
        return url
    port = f":{parts.port}" if parts.port else ""
    netloc = f"[{host}]{port}" if ":" in host else f"{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- error translation --------------------------------------------------------------------


def _short(text: object, limit: int = 160) -> str:
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def translate_error(error: BaseException, where: str, operation: str | None = None) -> CameraError:
    """The CameraError for a library exception raised while talking to ``where`` (host:port),
    naming ``operation`` when the failing call is known."""
    if isinstance(error, CameraError):
        if error.operation is None and operation is not None:
            error.operation = operation
        return error
    if isinstance(error, ONVIFError) and isinstance(error.__cause__, Exception):
        return translate_error(error.__cause__, where, operation)
    translated = _translate(error, where)
    if operation is not None:
        translated.operation = operation
        translated.args = (f"{translated} (in reply to {operation})",)
    return translated


def _translate(error: BaseException, where: str) -> CameraError:
    if isinstance(error, TimeoutError):
        return CameraTimeout(f"camera {where} did not answer in time")
    if isinstance(error, zeep.exceptions.Fault):
        if error.code is None and not error.subcodes:
            # Every SOAP fault carries a code: this was an error page, not SOAP.
            return CameraNotOnvif(f"{where} answered an error page, not SOAP")
        if is_auth_error(error):
            return CameraAuthError(f"camera {where} rejected the credentials")
        return CameraProtocolError(
            f"camera {where} refused the request: {_short(error.message)}", retryable=False
        )
    if isinstance(error, zeep.exceptions.TransportError):
        status = int(error.status_code or 0)
        if status == 401:
            return CameraAuthError(f"camera {where} rejected the credentials (HTTP 401)")
        if status in {200, 500, 503}:
            return CameraProtocolError(
                f"camera {where} answered HTTP {status} without a valid SOAP envelope",
                retryable=True,
            )
        return CameraNotOnvif(f"{where} answered HTTP {status}: no ONVIF device service there")
    if isinstance(error, zeep.exceptions.XMLSyntaxError):
        return CameraNotOnvif(f"{where} answered, but not with a SOAP envelope")
    if isinstance(error, zeep.exceptions.Error):
        return CameraProtocolError(
            f"camera {where} sent a reply ONVIF does not allow: {_short(error.message)}",
            retryable=False,
        )
    if isinstance(error, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return CameraUnreachable(f"camera {where} refused or could not be reached")
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return CameraProtocolError(
            f"camera {where} dropped the connection mid-reply", retryable=True
        )
    if isinstance(error, aiohttp.ClientError | OSError):
        return CameraUnreachable(f"camera {where}: {type(error).__name__}")
    if isinstance(error, ONVIFError):
        return CameraProtocolError(f"camera {where}: {_short(error)}", retryable=False)
    return CameraProtocolError(
        f"camera {where} sent a reply that could not be read ({type(error).__name__})",
        retryable=True,
    )


_LIBRARY_ERRORS = (zeep.exceptions.Error, aiohttp.ClientError, ONVIFError, OSError, TimeoutError)
# The library walks replies without checking them; a missing element surfaces as these.
_SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


@contextlib.contextmanager
def camera_errors(host: str, port: int, operation: str | None = None) -> Iterator[None]:
    """Re-raise anything the ONVIF stack throws as a CameraError (naming ``operation``)."""
    where = f"{host}:{port}"
    try:
        yield
    except CameraError as error:
        raise translate_error(error, where, operation) from None
    except _LIBRARY_ERRORS as error:
        raise translate_error(error, where, operation) from error
    except _SHAPE_ERRORS as error:
        log.debug("unexpected reply shape from %s", where, exc_info=True)
        raise translate_error(error, where, operation) from error


# -- the session ----------------------------------------------------------------------------

_wsdl_lock: asyncio.Lock | None = None
_wsdls_loaded = False


async def preload_wsdls() -> None:
    """Parse the WSDLs once, before any deadline runs: parsing is CPU work, not camera time."""
    global _wsdl_lock, _wsdls_loaded
    if _wsdls_loaded:
        return
    _wsdl_lock = _wsdl_lock or asyncio.Lock()
    async with _wsdl_lock:
        if _wsdls_loaded:
            return
        camera = _onvif_camera("127.0.0.1", 9, None, None)
        # No request is sent: building a service only loads and binds its WSDL.
        camera.xaddrs = {ns: "http://127.0.0.1:9/" for ns in SERVICE_NAMES}
        camera.xaddrs[PULLPOINT_XADDR_KEY] = "http://127.0.0.1:9/"
        try:
            for name in SERVICE_NAMES.values():
                await camera.create_onvif_service("devicemgmt" if name == "device" else name)
            await camera.create_pullpoint_service()
            await camera.create_subscription_service("PullPointSubscription")
        finally:
            await camera.close()
        _wsdls_loaded = True


def _onvif_camera(host: str, port: int, username: str | None, password: str | None) -> Any:
    # The constructor deletes http_proxy and https_proxy from the process environment,
    # which other parts of the hub may rely on; its own sessions ignore the environment.
    proxies = {k: v for k, v in os.environ.items() if k in {"http_proxy", "https_proxy"}}
    try:
        return ONVIFCamera(host, port, username, password, no_cache=True, adjust_time=False)
    finally:
        os.environ.update(proxies)


@contextlib.asynccontextmanager
async def open_camera(host: str, port: int, username: str, password: str) -> AsyncIterator[Any]:
    """An ONVIFCamera whose HTTP sessions are closed however the block ends."""
    await preload_wsdls()
    camera = _onvif_camera(host, port, username, password)
    try:
        yield camera
    finally:
        # Closing a camera whose connection already failed may raise anything its
        # transport does; the caller has its answer or error already.
        with contextlib.suppress(Exception):
            await camera.close()


def _camera_utc(answer: Any) -> datetime | None:
    utc = getattr(answer, "UTCDateTime", None)
    if utc is None:
        return None
    try:
        return datetime(
            utc.Date.Year,
            utc.Date.Month,
            utc.Date.Day,
            utc.Time.Hour,
            utc.Time.Minute,
            utc.Time.Second,
            tzinfo=UTC,
        )
    except (AttributeError, TypeError, ValueError):
        return None


async def read_clock(camera: Any) -> ClockReading:
    """Ask the camera for its time and compare with ours.

    ONVIF Core (5.9.4, access class PRE_AUTH) lets anyone read GetSystemDateAndTime, so
    that clients can date their WS-Security tokens on the camera's clock. Some firmwares
    want credentials even for that; their tokens are then dated from the HTTP Date header
    (RFC 9110, 6.6.1) of the refusal, which their web server stamps with the same clock.
    """
    device = await camera.create_devicemgmt_service()
    sent_at = time.time()
    started = time.monotonic()
    try:
        answer = await device.authless_GetSystemDateAndTime()
    except zeep.exceptions.Fault as fault:
        if not is_auth_error(fault):
            raise
        estimate = await _http_date_drift(device.xaddr)
        await sign_on_camera_clock(camera, estimate)
        device = await camera.create_devicemgmt_service()
        sent_at, started = time.time(), time.monotonic()
        try:
            answer = await device.GetSystemDateAndTime()
        except zeep.exceptions.Fault as refused:
            if not is_auth_error(refused):
                raise
            error = CameraAuthError(
                f"camera {camera.host}:{camera.port} rejected the credentials",
                operation="GetSystemDateAndTime",
            )
            if estimate is None:
                error.clock_suspect = (
                    "the camera wants credentials even to tell its time and sends no HTTP "
                    "Date, so the hub could not date its WS-Security token on the camera's "
                    "clock; a camera clock far off makes cameras refuse good passwords"
                )
                error.args = (f"{error}; its clock could not be read and may be the cause",)
            raise error from refused
    round_trip = time.monotonic() - started
    if getattr(answer, "DateTimeType", None) is None:
        # zeep recovers broken XML into empty replies; a real answer has its required parts.
        raise CameraProtocolError(
            f"camera {camera.host}:{camera.port} sent a GetSystemDateAndTime reply without a time"
        )
    camera_time = _camera_utc(answer)
    if camera_time is None:
        return ClockReading(None, round_trip)
    # The camera reports whole seconds: its clock is half a second past what it said, on
    # average, at about the middle of the round trip.
    ours = sent_at + round_trip / 2
    return ClockReading(camera_time.timestamp() + 0.5 - ours, round_trip)


_CLOCK_REQUEST = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
    b'<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>'
    b"</s:Body></s:Envelope>"
)


async def _http_date_drift(url: str) -> float | None:
    """The camera's clock minus ours, from the Date header of an unauthenticated reply."""
    sent_at = time.time()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.post(
                url,
                data=_CLOCK_REQUEST,
                headers={"Content-Type": "application/soap+xml; charset=utf-8"},
            ) as response,
        ):
            stamp = response.headers.get("Date")
            await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None
    if not stamp:
        return None
    try:
        camera_time = email.utils.parsedate_to_datetime(stamp)
    except (TypeError, ValueError):
        return None
    if camera_time.tzinfo is None:
        return None
    ours = (sent_at + time.time()) / 2
    return camera_time.timestamp() + 0.5 - ours


async def sign_on_camera_clock(camera: Any, drift_s: float | None) -> None:
    """Date WS-Security tokens on the camera's clock, so a wrong clock is not a wrong password."""
    camera.dt_diff = timedelta(seconds=round(drift_s)) if drift_s else None
    for key, service in list(camera.services.items()):
        await service.close()
        del camera.services[key]


async def device_information(camera: Any) -> Any:
    """GetDeviceInformation, the authenticated call that proves our credentials work."""
    device = await camera.create_devicemgmt_service()
    info = await device.GetDeviceInformation()
    if getattr(info, "Manufacturer", None) is None:
        raise CameraProtocolError(
            f"camera {camera.host}:{camera.port} sent a GetDeviceInformation reply without data"
        )
    return info


async def optional(
    call: Awaitable[_T], what: str, where: str, unavailable: dict[str, str] | None = None
) -> _T | None:
    """An operation a camera may decline or answer unreadably; credentials it rejects,
    and a camera that stops answering, still raise. Why a feature is missing goes into
    ``unavailable``: one bad reply to an optional call must not fail the whole camera."""
    try:
        return await call
    except zeep.exceptions.Fault as fault:
        if is_auth_error(fault):
            raise
        reason = f"declined: {_short(fault.message)}"
    except zeep.exceptions.TransportError as error:
        # Some firmwares answer operations they lack with a bare HTTP error.
        if error.status_code == 401:
            raise
        reason = f"declined: HTTP {error.status_code}"
    except (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError) as error:
        # Seen on real cameras: a GetSnapshotUri reply using an undeclared SOAP-ENV prefix.
        reason = f"reply is not well-formed XML: {_short(error)}"
    except zeep.exceptions.Error as error:
        reason = f"reply ONVIF does not allow: {_short(error)}"
    except _SHAPE_ERRORS as error:
        reason = f"reply could not be read ({type(error).__name__})"
    log.info("camera %s: %s unavailable, %s", where, what, reason)
    if unavailable is not None:
        unavailable[what] = reason
    return None


# -- the probe ----------------------------------------------------------------------------


async def probe_camera(
    host: str,
    port: int,
    username: str,
    password: str,
    timeout: float = 15.0,  # noqa: ASYNC109 - the deadline covers camera time, not WSDL parsing
) -> CameraProbe:
    """Read everything onboarding needs from one camera, within ``timeout`` seconds overall."""
    with camera_errors(host, port):
        async with open_camera(host, port, username, password) as camera:
            async with asyncio.timeout(timeout):
                return await _probe(camera, host, port)


async def _probe(camera: Any, host: str, port: int) -> CameraProbe:
    where = f"{host}:{port}"
    gaps: dict[str, str] = {}
    with camera_errors(host, port, "GetSystemDateAndTime"):
        clock = await read_clock(camera)
    await sign_on_camera_clock(camera, clock.drift_s)
    device = await camera.create_devicemgmt_service()
    with camera_errors(host, port, "GetDeviceInformation"):
        info = await device_information(camera)
    capabilities = await optional(
        device.GetCapabilities({"Category": "All"}), "GetCapabilities", where, gaps
    )
    services = await _service_addresses(device, capabilities, host, where, gaps)
    camera.xaddrs = dict(services)
    hostname = await optional(device.GetHostname(), "GetHostname", where, gaps)
    interfaces = await optional(device.GetNetworkInterfaces(), "GetNetworkInterfaces", where, gaps)

    profiles: tuple[MediaProfile, ...] = ()
    if MEDIA_NS in services:
        media = await camera.create_media_service()
        profiles = await _media_profiles(media, host, port, gaps)
    supports_ptz = False
    if PTZ_NS in services:
        ptz = await camera.create_ptz_service()
        supports_ptz = bool(await optional(ptz.GetNodes(), "PTZ nodes", where, gaps))
    events_capability = getattr(capabilities, "Events", None)
    supports_pullpoint = EVENTS_NS in services and bool(
        getattr(events_capability, "WSPullPointSupport", False)
    )
    topics: tuple[str, ...] = ()
    if EVENTS_NS in services:
        events = await camera.create_events_service()
        properties = await optional(events.GetEventProperties(), "GetEventProperties", where, gaps)
        topics = event_topics(properties)

    return CameraProbe(
        host=host,
        port=port,
        manufacturer=_text(info.Manufacturer),
        model=_text(info.Model),
        firmware=_text(info.FirmwareVersion),
        serial=_text(info.SerialNumber),
        hardware_id=_text(info.HardwareId),
        hostname=_text(getattr(hostname, "Name", None)) or None,
        mac_addresses=tuple(
            mac
            for interface in interfaces or []
            if (mac := _text(getattr(getattr(interface, "Info", None), "HwAddress", None)))
        ),
        services={SERVICE_NAMES.get(ns, ns): url for ns, url in services.items()},
        profiles=profiles,
        supports_ptz=supports_ptz,
        supports_events=EVENTS_NS in services,
        supports_pullpoint=supports_pullpoint,
        event_topics=topics,
        clock_drift_s=clock.drift_s,
        unavailable=gaps,
    )


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


async def _service_addresses(
    device: Any, capabilities: Any, host: str, where: str, gaps: dict[str, str]
) -> dict[str, str]:
    """Service namespace -> XAddr: from GetServices, or from GetCapabilities on older cameras."""
    found: dict[str, str] = {}
    listed = await optional(
        device.GetServices({"IncludeCapability": False}), "GetServices", where, gaps
    )
    for service in listed or []:
        namespace, xaddr = getattr(service, "Namespace", None), getattr(service, "XAddr", None)
        if namespace and xaddr:
            found[str(namespace)] = str(xaddr)
    if not found and capabilities is not None:
        for name, namespace in (
            ("Device", DEVICE_NS),
            ("Media", MEDIA_NS),
            ("Events", EVENTS_NS),
            ("PTZ", PTZ_NS),
        ):
            xaddr = getattr(getattr(capabilities, name, None), "XAddr", None)
            if xaddr:
                found[namespace] = str(xaddr)
    if not found:
        raise CameraProtocolError(
            f"camera {where} advertises no services", retryable=False, operation="GetServices"
        )
    pinned = {namespace: pin_to_host(url, host) for namespace, url in found.items()}
    if pinned != found:
        log.info("camera %s advertises services on another address; using %s", where, host)
    return pinned


async def _media_profiles(
    media: Any, host: str, port: int, gaps: dict[str, str]
) -> tuple[MediaProfile, ...]:
    where = f"{host}:{port}"
    profiles = []
    with camera_errors(host, port, "GetProfiles"):
        listed = await media.GetProfiles() or []
    for profile in listed:
        token = str(profile.token)
        encoder = getattr(profile, "VideoEncoderConfiguration", None)
        resolution = getattr(encoder, "Resolution", None)
        rate = getattr(getattr(encoder, "RateControl", None), "FrameRateLimit", None)
        stream = await optional(
            media.GetStreamUri(
                {
                    "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                    "ProfileToken": token,
                }
            ),
            f"GetStreamUri {token}",
            where,
            gaps,
        )
        snapshot = await optional(
            media.GetSnapshotUri({"ProfileToken": token}), f"GetSnapshotUri {token}", where, gaps
        )
        profiles.append(
            MediaProfile(
                token=token,
                name=_text(getattr(profile, "Name", None)) or token,
                encoding=_text(getattr(encoder, "Encoding", None)) or None,
                width=_int(getattr(resolution, "Width", None)),
                height=_int(getattr(resolution, "Height", None)),
                frame_rate=float(rate) if rate is not None else None,
                stream_uri=_uri(stream),
                snapshot_uri=_uri(snapshot),
                ptz=getattr(profile, "PTZConfiguration", None) is not None,
            )
        )
    return tuple(profiles)


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _uri(media_uri: Any) -> str | None:
    uri = _text(getattr(media_uri, "Uri", None))
    return strip_credentials(uri) if uri else None


def event_topics(properties: Any) -> tuple[str, ...]:
    """The concrete topics a GetEventProperties answer offers, as "RuleEngine/.../Motion"."""
    found: list[str] = []
    for root in getattr(getattr(properties, "TopicSet", None), "_value_1", None) or []:
        _collect_topics(root, "", found)
    return tuple(found)


_WSTOP_TOPIC = "{http://docs.oasis-open.org/wsn/t-1}topic"
_ONVIF_SCHEMA = "{http://www.onvif.org/ver10/schema}"


def _collect_topics(element: Any, parent: str, found: list[str]) -> None:
    tag = getattr(element, "tag", None)
    if not isinstance(tag, str) or tag.startswith(_ONVIF_SCHEMA):
        return  # comments and the tt:MessageDescription under a topic
    path = f"{parent}/{tag.rsplit('}', 1)[-1]}" if parent else tag.rsplit("}", 1)[-1]
    if str(element.get(_WSTOP_TOPIC, "")).lower() == "true":
        found.append(path)
    for child in element:
        _collect_topics(child, path, found)
