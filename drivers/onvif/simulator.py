"""Simulated ONVIF cameras on loopback: SOAP 1.2 services, snapshots and WS-Discovery.

Each camera listens on its own loopback port and answers the device, media,
events and (optionally) PTZ services with the envelopes a real camera sends,
checks WS-Security UsernameToken digests, serves a snapshot behind HTTP digest
or basic auth, and can be told to misbehave the ways cameras in the field do.

Run ``python -m drivers.onvif.simulator --help`` for a standalone fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import enum
import hashlib
import hmac
import ipaddress
import itertools
import json
import re
import secrets
import signal
import socket
import struct
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from drivers.onvif.simulated_rtsp import SimulatedRtspServer, StreamSource

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSA_DISCOVERY = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DEVICE_NS = "http://www.onvif.org/ver10/device/wsdl"
MEDIA_NS = "http://www.onvif.org/ver10/media/wsdl"
EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"

NAMESPACES = {
    "env": SOAP12,
    "tt": "http://www.onvif.org/ver10/schema",
    "tds": DEVICE_NS,
    "trt": MEDIA_NS,
    "tev": EVENTS_NS,
    "tptz": PTZ_NS,
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": "http://www.onvif.org/ver10/error",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "wsrf-r": "http://docs.oasis-open.org/wsrf/r-2",
}
_ENVELOPE_OPEN = (
    "<env:Envelope " + " ".join(f'xmlns:{p}="{u}"' for p, u in NAMESPACES.items()) + ">"
)

# ONVIF Core 5.9.4: operations of access class PRE_AUTH need no credentials.
PRE_AUTH_OPERATIONS = frozenset(
    {
        "GetSystemDateAndTime",
        "GetServices",
        "GetServiceCapabilities",
        "GetCapabilities",
        "GetHostname",
        "GetWsdlUrl",
        "GetEndpointReference",
    }
)
MOTION_TOPIC = "tns1:RuleEngine/CellMotionDetector/Motion"
TAMPER_TOPIC = "tns1:VideoSource/GlobalSceneChange/ImagingService"
_EVENT_ITEMS = {MOTION_TOPIC: ("IsMotion", "MyMotionDetectorRule"), TAMPER_TOPIC: ("State", None)}
CONCRETE_SET_DIALECT = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
MAX_REQUEST_BODY = 1 << 20
MAX_PULL_WAIT = timedelta(seconds=60)
DISCOVERY_MULTICAST_GROUP = "239.255.255.250"
DISCOVERY_PORT = 3702


def _solid_gray_jpeg() -> bytes:
    """An 8x8 baseline JPEG: one block whose only coefficient is a zero DC difference."""

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    one_code_table = bytes([1] + [0] * 15) + b"\x00"  # a single 1-bit code for symbol 0
    return b"".join(
        [
            b"\xff\xd8",
            segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            segment(0xDB, b"\x00" + b"\x01" * 64),
            segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00"),
            segment(0xC4, b"\x00" + one_code_table),
            segment(0xC4, b"\x10" + one_code_table),
            segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            b"\x3f",  # DC category 0, then end-of-block, padded with one-bits
            b"\xff\xd9",
        ]
    )


SMALL_JPEG = _solid_gray_jpeg()


class CameraFault(enum.StrEnum):
    NONE = "none"
    DOWN = "down"  # port closed
    HUNG = "hung"  # accepts TCP, never answers
    HANG_MID_RESPONSE = "hang_mid_response"  # sends half a response, then stalls
    MALFORMED = "malformed"  # answers 200 with broken XML
    NOT_ONVIF = "not_onvif"  # some other web server: 404 everywhere


class DiscoveryQuirk(enum.StrEnum):
    ODD_PREFIXES = "odd_prefixes"  # unusual namespace prefixes, default namespaces
    NO_MATCHES_WRAPPER = "no_matches_wrapper"  # ProbeMatch directly under Body
    BARE_ADDRESS = "bare_address"  # Address without its EndpointReference
    NO_RELATES_TO = "no_relates_to"
    FOREIGN_XADDR = "foreign_xaddr"  # also advertises an address outside the probed subnet
    SOAP11 = "soap11"
    GARBAGE_FIRST = "garbage_first"  # a non-XML datagram before the real answer


@dataclass(frozen=True, slots=True)
class SimulatedProfile:
    token: str
    name: str
    encoding: str
    width: int
    height: int
    frame_rate: int = 25


DEFAULT_PROFILES = (
    SimulatedProfile("profile_main", "mainStream", "H265", 2560, 1440),
    SimulatedProfile("profile_sub", "subStream", "H264", 640, 360, 15),
)
# What cameras that really stream (CameraSpec.rtsp) offer: H.264, which the hub remuxes
# without transcoding, at sizes one machine can encode for a handful of viewers.
STREAMING_PROFILES = (
    SimulatedProfile("profile_main", "mainStream", "H264", 1280, 720, 15),
    SimulatedProfile("profile_sub", "subStream", "H264", 640, 360, 15),
)


@dataclass(slots=True)
class CameraSpec:
    """What a simulated camera is and how it behaves; fields may be changed while it runs."""

    name: str
    username: str = "admin"
    password: str = field(default="Cam-Passw0rd", repr=False)
    manufacturer: str = "Acme Vision"
    model: str = "AV-IPC-4M"
    firmware: str = "V5.7.3 build 240115"
    serial: str = ""
    hardware_id: str = "AV4M-R2"
    endpoint_ref: str = ""
    location: str = "vn/hcm/district-1"
    clock_offset_s: float = 0.0
    # Cameras refuse a UsernameToken whose Created is this far from their own clock.
    token_window_s: float | None = 300.0
    authenticate_everything: bool = False
    events: bool = True
    ptz: bool = False
    profiles: tuple[SimulatedProfile, ...] = DEFAULT_PROFILES
    fault: CameraFault = CameraFault.NONE
    snapshot_auth: str = "digest"  # "digest", "basic" or "none"
    snapshot_image: bytes = field(default=SMALL_JPEG, repr=False)
    embed_credentials_in_uris: bool = False
    discovery_quirks: frozenset[DiscoveryQuirk] = frozenset()
    advertised_host: str | None = None
    # Operations answered with an undeclared SOAP-ENV prefix, as captured from a real camera.
    malformed_replies: frozenset[str] = frozenset()
    http_date: bool = True  # stamp replies with a Date header, on the camera's clock
    # PullMessages answers at once, whatever Timeout asked, repeating the current states.
    eager_pulls: bool = False
    renew_fails: bool = False  # Renew answers a fault; the subscription lives on until it ends
    # Serve each profile over RTSP (digest auth), an H.264 test pattern encoded by ffmpeg.
    rtsp: bool = False

    def __post_init__(self) -> None:
        if not self.serial:
            self.serial = "SN" + hashlib.sha256(self.name.encode()).hexdigest()[:10].upper()
        if not self.endpoint_ref:
            self.endpoint_ref = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'camera:' + self.name)}"
        if self.snapshot_auth not in {"digest", "basic", "none"}:
            raise ValueError(
                f"snapshot_auth must be digest, basic or none, not {self.snapshot_auth!r}"
            )


@dataclass(slots=True)
class CameraStats:
    operations: Counter[str] = field(default_factory=Counter)
    rejected_tokens: int = 0
    subscriptions_created: int = 0
    renewals: int = 0
    snapshots_served: int = 0
    subscribed_at: list[float] = field(default_factory=list)  # monotonic times of creation


class SoapFault(Exception):
    def __init__(self, subcode: str, reason: str, *, code: str = "env:Sender") -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.code = code

    @property
    def status(self) -> int:
        """The SOAP 1.2 HTTP binding: the sender's fault is 400, ours is 500."""
        return 400 if self.code in {"env:Sender", "env:VersionMismatch"} else 500


@dataclass(slots=True)
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/soap+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


@dataclass(slots=True)
class _Subscription:
    ident: int
    expires: datetime  # on the simulator's own clock, not the camera's
    messages: deque[str] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


def parse_duration(text: str) -> timedelta:
    """An xs:duration such as PT60S or P1DT2H; months and years are not accepted."""
    match = re.fullmatch(
        r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text.strip()
    )
    if not match or text.strip() in {"P", "PT"}:
        raise ValueError(f"unsupported duration {text!r}")
    days, hours, minutes, seconds = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=float(seconds or 0),
    )


def _xs_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _child(element: ET.Element | None, local_name: str) -> ET.Element | None:
    if element is None:
        return None
    return next((c for c in element if _local(c) == local_name), None)


def _text(element: ET.Element | None, local_name: str, default: str = "") -> str:
    found = _child(element, local_name)
    return (found.text or default).strip() if found is not None else default


def _parse_xml(data: bytes) -> ET.Element:
    # SOAP forbids DTDs; refusing them up front closes off entity expansion attacks.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ET.ParseError("document type declarations are not allowed in SOAP")
    return ET.fromstring(data)  # noqa: S314 - DTDs refused above


def _envelope(body: str, header: str = "") -> bytes:
    head = f"<env:Header>{header}</env:Header>" if header else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{_ENVELOPE_OPEN}{head}'
        f"<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def _fault_envelope(fault: SoapFault) -> bytes:
    return _envelope(
        "<env:Fault><env:Code>"
        f"<env:Value>{fault.code}</env:Value>"
        f"<env:Subcode><env:Value>{fault.subcode}</env:Value></env:Subcode>"
        "</env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{escape(fault.reason)}</env:Text></env:Reason>'
        "</env:Fault>"
    )


def _date_time(moment: datetime) -> str:
    return (
        f"<tt:Time><tt:Hour>{moment.hour}</tt:Hour><tt:Minute>{moment.minute}</tt:Minute>"
        f"<tt:Second>{moment.second}</tt:Second></tt:Time>"
        f"<tt:Date><tt:Year>{moment.year}</tt:Year><tt:Month>{moment.month}</tt:Month>"
        f"<tt:Day>{moment.day}</tt:Day></tt:Date>"
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _free_loopback_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


OperationHandler = Callable[[ET.Element], Awaitable[str]]
SubscriptionHandler = Callable[[ET.Element, "_Subscription"], Awaitable[str]]


class SimulatedCamera:
    """One camera: its HTTP listener, its services and its event subscriptions."""

    def __init__(self, spec: CameraSpec, host: str) -> None:
        self.spec = spec
        self.host = host
        self.port = 0
        self.stats = CameraStats()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._subscriptions: dict[int, _Subscription] = {}
        self._subscription_ids = itertools.count(1)
        self._digest_nonces: set[str] = set()
        self.rtsp: SimulatedRtspServer | None = None
        self._event_state = {topic: "false" for topic in _EVENT_ITEMS}
        self._operations: dict[tuple[str, str], OperationHandler] = {
            ("device", "GetSystemDateAndTime"): self._get_system_date_and_time,
            ("device", "GetDeviceInformation"): self._get_device_information,
            ("device", "GetCapabilities"): self._get_capabilities,
            ("device", "GetServices"): self._get_services,
            ("device", "GetHostname"): self._get_hostname,
            ("device", "GetNetworkInterfaces"): self._get_network_interfaces,
            ("media", "GetProfiles"): self._get_profiles,
            ("media", "GetStreamUri"): self._get_stream_uri,
            ("media", "GetSnapshotUri"): self._get_snapshot_uri,
            ("events", "GetEventProperties"): self._get_event_properties,
            ("events", "CreatePullPointSubscription"): self._create_pull_point_subscription,
            ("ptz", "GetNodes"): self._get_ptz_nodes,
        }
        self._subscription_operations: dict[str, SubscriptionHandler] = {
            "PullMessages": self._pull_messages,
            "Renew": self._renew,
            "Unsubscribe": self._unsubscribe,
        }

    # -- lifecycle -----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def endpoint_ref(self) -> str:
        return self.spec.endpoint_ref

    @property
    def advertised_host(self) -> str:
        return self.spec.advertised_host or self.host

    def url(self, path: str) -> str:
        return f"http://{self.advertised_host}:{self.port}{path}"

    @property
    def xaddr(self) -> str:
        return self.url("/onvif/device_service")

    async def start(self) -> None:
        if self.spec.fault is CameraFault.DOWN:
            self.port = self.port or _free_loopback_port(self.host)
        if self.spec.rtsp and self.rtsp is None:
            sources = {
                p.token: StreamSource(p.token, p.width, p.height, p.frame_rate)
                for p in self.spec.profiles
            }
            self.rtsp = SimulatedRtspServer(
                self.host, sources, self.spec.username, lambda: self.spec.password
            )
            await self.rtsp.start()
        if self.spec.fault is not CameraFault.DOWN:
            await self._listen()

    async def _listen(self) -> None:
        # Port 0 lets the kernel choose while binding: a port picked first and bound later
        # may be taken meanwhile (by another camera of the fleet starting, or anyone else).
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.rtsp is not None:
            await self.rtsp.stop()
            self.rtsp = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for subscription in self._subscriptions.values():
            subscription.arrived.set()  # ends long polls
        for writer in list(self._connections):
            writer.close()
        if self._handlers:
            # Handlers end on their own once their sockets close; cancelling them would
            # make asyncio's stream callback log every cancellation as an error.
            _, late = await asyncio.wait(set(self._handlers), timeout=2.0)
            for task in late:
                task.cancel()
        if server is not None:
            await server.wait_closed()

    async def set_fault(self, fault: CameraFault) -> None:
        """Change the failure mode; DOWN closes the port, anything else opens it again."""
        self.spec.fault = fault
        if fault is CameraFault.DOWN and self._server is not None:
            await self.stop()
        elif fault is not CameraFault.DOWN and self._server is None:
            await self._listen()

    async def move(self, port: int | None = None, host: str | None = None) -> None:
        """Come back on another port or loopback address, as after a DHCP change.

        The endpoint reference stays: it is how the hub recognises the camera again.
        """
        if host is not None and not _is_loopback(host):
            raise ValueError(f"the simulator binds only to loopback, not {host!r}")
        await self.stop()
        self.host = host or self.host
        self.port = port or _free_loopback_port(self.host)
        if self.spec.fault is not CameraFault.DOWN:
            await self._listen()

    # -- events ------------------------------------------------------------------

    def emit_motion(self, active: bool = True) -> None:
        self._publish(MOTION_TOPIC, str(active).lower())

    def emit_tamper(self, active: bool = True) -> None:
        self._publish(TAMPER_TOPIC, str(active).lower())

    def emit_garbled_motion(self) -> None:
        """A motion message whose state is not a boolean, as some firmwares send."""
        self._publish(MOTION_TOPIC, "perhaps")

    def reboot_subscriptions(self) -> None:
        """Forget every subscription, as a camera does when it restarts."""
        for subscription in list(self._subscriptions.values()):
            self._drop(subscription)

    @property
    def active_subscriptions(self) -> int:
        now = datetime.now(UTC)
        return sum(1 for s in self._subscriptions.values() if s.expires > now)

    def _publish(self, topic: str, value: str) -> None:
        self._event_state[topic] = value
        message = self._notification(topic, "Changed")
        for subscription in self._subscriptions.values():
            subscription.messages.append(message)
            subscription.arrived.set()

    def _notification(self, topic: str, operation: str) -> str:
        item, rule = _EVENT_ITEMS[topic]
        utc = _xs_datetime(self._camera_now())
        rule_item = f'<tt:SimpleItem Name="Rule" Value="{rule}"/>' if rule else ""
        return (
            "<wsnt:NotificationMessage>"
            f'<wsnt:Topic Dialect="{CONCRETE_SET_DIALECT}">{topic}</wsnt:Topic>'
            f'<wsnt:Message><tt:Message UtcTime="{utc}" PropertyOperation="{operation}">'
            '<tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="vsc_0"/>'
            f"{rule_item}</tt:Source>"
            f'<tt:Data><tt:SimpleItem Name="{item}" Value="{self._event_state[topic]}"/></tt:Data>'
            "</tt:Message></wsnt:Message></wsnt:NotificationMessage>"
        )

    # -- HTTP ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._connections.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            self._connections.discard(writer)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            if self.spec.fault is CameraFault.HUNG:
                await _linger(reader)
                return
            request = await _read_request(reader)
            if request is None:
                return
            if isinstance(request, HttpResponse):
                await _write_response(writer, request, keep_alive=False)
                return
            response = await self._respond(request)
            date = formatdate(self._camera_now().timestamp(), usegmt=True)
            payload = _serialize_response(
                response, keep_alive=True, date=date if self.spec.http_date else None
            )
            if self.spec.fault is CameraFault.HANG_MID_RESPONSE:
                writer.write(payload[: len(payload) - len(response.body) // 2])
                await writer.drain()
                await _linger(reader)
                return
            writer.write(payload)
            await writer.drain()
            if request.headers.get("connection", "").lower() == "close":
                return

    async def _respond(self, request: HttpRequest) -> HttpResponse:
        if self.spec.fault is CameraFault.NOT_ONVIF:
            return _not_found()
        path = request.path
        if path.startswith("/onvif/snapshot/"):
            return self._snapshot(request)
        service = _service_for_path(path)
        if service is None or (service == "ptz" and not self.spec.ptz):
            return _not_found()
        if service in {"events", "subscription"} and not self.spec.events:
            return _not_found()
        if request.method != "POST":
            return HttpResponse(405, b"", "text/plain", {"Allow": "POST"})
        if self.spec.fault is CameraFault.MALFORMED:
            body = b'<?xml version="1.0"?><env:Envelope xmlns:env="' + SOAP12.encode()
            return HttpResponse(200, body + b'"><env:Body><tds:Get')
        try:
            return HttpResponse(200, await self._soap(service, path, request.body))
        except SoapFault as fault:
            return HttpResponse(fault.status, _fault_envelope(fault))

    async def _soap(self, service: str, path: str, body: bytes) -> bytes:
        try:
            envelope = _parse_xml(body)
        except ET.ParseError as error:
            raise SoapFault("ter:WellFormed", f"request is not well-formed XML: {error}") from None
        if envelope.tag != f"{{{SOAP12}}}Envelope":
            raise SoapFault(
                "ter:VersionMismatch", "expected a SOAP 1.2 envelope", code="env:VersionMismatch"
            )
        soap_body = _child(envelope, "Body")
        operation = soap_body[0] if soap_body is not None and len(soap_body) else None
        if operation is None:
            raise SoapFault("ter:InvalidArgVal", "empty SOAP body")
        name = _local(operation)
        handler = self._handler(service, name, path)
        if handler is None:
            raise SoapFault(
                "ter:ActionNotSupported", f"{name} is not supported", code="env:Receiver"
            )
        self.stats.operations[name] += 1
        if name not in PRE_AUTH_OPERATIONS or self.spec.authenticate_everything:
            self._authenticate(envelope)
        reply = _envelope(await handler(operation))
        if name in self.spec.malformed_replies:
            reply = reply.replace(b"<env:", b"<SOAP-ENV:").replace(b"</env:", b"</SOAP-ENV:")
        return reply

    def _handler(self, service: str, name: str, path: str) -> OperationHandler | None:
        if service != "subscription":
            return self._operations.get((service, name))
        on_subscription = self._subscription_operations.get(name)
        if on_subscription is None:
            return None
        ident = path.rsplit("/", 1)[-1]
        # The subscription is looked up when called, after the caller is authenticated.
        return lambda request: on_subscription(request, self._subscription(ident))

    def _authenticate(self, envelope: ET.Element) -> None:
        token = envelope.find(f"./{{{SOAP12}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None:
            self.stats.rejected_tokens += 1
            raise SoapFault("ter:NotAuthorized", "Sender not Authorized")
        username = token.findtext(f"{{{WSSE}}}Username") or ""
        password = token.find(f"{{{WSSE}}}Password")
        supplied = (password.text or "").strip() if password is not None else ""
        kind = password.get("Type", "") if password is not None else ""
        if kind.endswith("#PasswordDigest"):
            created = (token.findtext(f"{{{WSU}}}Created") or "").strip()
            try:
                nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "", validate=True)
                created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                nonce, created_at = b"", None
            expected = base64.b64encode(
                hashlib.sha1(nonce + created.encode() + self.spec.password.encode()).digest()  # noqa: S324 - WS-Security defines SHA-1
            ).decode()
            fresh = created_at is not None and (
                self.spec.token_window_s is None
                or abs((self._camera_now() - created_at.astimezone(UTC)).total_seconds())
                <= self.spec.token_window_s
            )
            valid = bool(nonce) and fresh and hmac.compare_digest(expected, supplied)
        else:
            valid = hmac.compare_digest(self.spec.password.encode(), supplied.encode())
        if not (valid and hmac.compare_digest(username.encode(), self.spec.username.encode())):
            self.stats.rejected_tokens += 1
            raise SoapFault("ter:NotAuthorized", "Sender not Authorized")

    def _camera_now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.spec.clock_offset_s)

    # -- device service --------------------------------------------------------------

    async def _get_system_date_and_time(self, _: ET.Element) -> str:
        utc = self._camera_now()
        local = utc + timedelta(hours=7)
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>ICT-7</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime>{_date_time(utc)}</tt:UTCDateTime>"
            f"<tt:LocalDateTime>{_date_time(local)}</tt:LocalDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    async def _get_device_information(self, _: ET.Element) -> str:
        spec = self.spec
        return (
            "<tds:GetDeviceInformationResponse>"
            f"<tds:Manufacturer>{escape(spec.manufacturer)}</tds:Manufacturer>"
            f"<tds:Model>{escape(spec.model)}</tds:Model>"
            f"<tds:FirmwareVersion>{escape(spec.firmware)}</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{escape(spec.serial)}</tds:SerialNumber>"
            f"<tds:HardwareId>{escape(spec.hardware_id)}</tds:HardwareId>"
            "</tds:GetDeviceInformationResponse>"
        )

    async def _get_capabilities(self, _: ET.Element) -> str:
        events = (
            f"<tt:Events><tt:XAddr>{self.url('/onvif/event_service')}</tt:XAddr>"
            "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
            "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
            "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
            "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>"
            if self.spec.events
            else ""
        )
        ptz = (
            f"<tt:PTZ><tt:XAddr>{self.url('/onvif/ptz_service')}</tt:XAddr></tt:PTZ>"
            if self.spec.ptz
            else ""
        )
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{self.xaddr}</tt:XAddr>"
            "<tt:System><tt:DiscoveryResolve>true</tt:DiscoveryResolve><tt:DiscoveryBye>true</tt:DiscoveryBye>"
            "<tt:RemoteDiscovery>false</tt:RemoteDiscovery><tt:SystemBackup>false</tt:SystemBackup>"
            "<tt:SystemLogging>true</tt:SystemLogging><tt:FirmwareUpgrade>true</tt:FirmwareUpgrade>"
            "<tt:SupportedVersions><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tt:SupportedVersions>"
            "</tt:System></tt:Device>"
            f"{events}"
            f"<tt:Media><tt:XAddr>{self.url('/onvif/media_service')}</tt:XAddr>"
            "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
            "<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
            f"{ptz}"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    async def _get_services(self, _: ET.Element) -> str:
        services = [(DEVICE_NS, "/onvif/device_service"), (MEDIA_NS, "/onvif/media_service")]
        if self.spec.events:
            services.append((EVENTS_NS, "/onvif/event_service"))
        if self.spec.ptz:
            services.append((PTZ_NS, "/onvif/ptz_service"))
        entries = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{self.url(path)}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for ns, path in services
        )
        return f"<tds:GetServicesResponse>{entries}</tds:GetServicesResponse>"

    async def _get_hostname(self, _: ET.Element) -> str:
        return (
            "<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP>"
            f"<tt:Name>{escape(self.spec.name)}</tt:Name>"
            "</tds:HostnameInformation></tds:GetHostnameResponse>"
        )

    async def _get_network_interfaces(self, _: ET.Element) -> str:
        digest = hashlib.sha256(self.spec.serial.encode()).digest()
        mac = ":".join(f"{b:02x}" for b in (b"\x00\x1a\x3f" + digest[:3]))
        return (
            '<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0">'
            "<tt:Enabled>true</tt:Enabled>"
            f"<tt:Info><tt:Name>eth0</tt:Name><tt:HwAddress>{mac}</tt:HwAddress><tt:MTU>1500</tt:MTU></tt:Info>"
            "<tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config>"
            f"<tt:Manual><tt:Address>{self.advertised_host}</tt:Address><tt:PrefixLength>24</tt:PrefixLength></tt:Manual>"
            "<tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4>"
            "</tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>"
        )

    # -- media service ---------------------------------------------------------------

    async def _get_profiles(self, _: ET.Element) -> str:
        ptz = (
            '<tt:PTZConfiguration token="ptz_0"><tt:Name>PTZ</tt:Name><tt:UseCount>2</tt:UseCount>'
            "<tt:NodeToken>ptz_node_0</tt:NodeToken></tt:PTZConfiguration>"
            if self.spec.ptz
            else ""
        )
        profiles = "".join(
            f'<trt:Profiles token="{p.token}" fixed="true"><tt:Name>{escape(p.name)}</tt:Name>'
            '<tt:VideoSourceConfiguration token="vsc_0"><tt:Name>VideoSource</tt:Name>'
            "<tt:UseCount>2</tt:UseCount><tt:SourceToken>vs_0</tt:SourceToken>"
            f'<tt:Bounds x="0" y="0" width="{p.width}" height="{p.height}"/>'
            "</tt:VideoSourceConfiguration>"
            f'<tt:VideoEncoderConfiguration token="vec_{p.token}">'
            f"<tt:Name>{escape(p.name)}</tt:Name>"
            f"<tt:UseCount>1</tt:UseCount><tt:Encoding>{p.encoding}</tt:Encoding>"
            f"<tt:Resolution><tt:Width>{p.width}</tt:Width><tt:Height>{p.height}</tt:Height></tt:Resolution>"
            "<tt:Quality>4</tt:Quality><tt:RateControl>"
            f"<tt:FrameRateLimit>{p.frame_rate}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>"
            "<tt:BitrateLimit>4096</tt:BitrateLimit></tt:RateControl>"
            "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address>"
            "</tt:Address><tt:Port>0</tt:Port><tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
            "<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>"
            f"{ptz}</trt:Profiles>"
            for p in self.spec.profiles
        )
        return f"<trt:GetProfilesResponse>{profiles}</trt:GetProfilesResponse>"

    def _profile(self, request: ET.Element) -> SimulatedProfile:
        token = _text(request, "ProfileToken")
        for profile in self.spec.profiles:
            if profile.token == token:
                return profile
        raise SoapFault("ter:NoProfile", f"no profile {token!r}")

    def _credentials_in_uri(self) -> str:
        if not self.spec.embed_credentials_in_uris:
            return ""
        return f"{self.spec.username}:{self.spec.password}@"

    async def _get_stream_uri(self, request: ET.Element) -> str:
        profile = self._profile(request)
        port = self.rtsp.port if self.rtsp is not None else 554
        uri = (
            f"rtsp://{self._credentials_in_uri()}{self.advertised_host}:{port}"
            f"/Streaming/{profile.token}"
        )
        return f"<trt:GetStreamUriResponse>{_media_uri(uri)}</trt:GetStreamUriResponse>"

    async def _get_snapshot_uri(self, request: ET.Element) -> str:
        profile = self._profile(request)
        uri = self.url(f"/onvif/snapshot/{profile.token}.jpg")
        if self.spec.embed_credentials_in_uris:
            uri += f"?user={self.spec.username}&pwd={self.spec.password}"
        return f"<trt:GetSnapshotUriResponse>{_media_uri(uri)}</trt:GetSnapshotUriResponse>"

    # -- PTZ service -------------------------------------------------------------------

    async def _get_ptz_nodes(self, _: ET.Element) -> str:
        return (
            '<tptz:GetNodesResponse><tptz:PTZNode token="ptz_node_0" FixedHomePosition="false">'
            "<tt:Name>PTZ</tt:Name><tt:SupportedPTZSpaces/>"
            "<tt:MaximumNumberOfPresets>128</tt:MaximumNumberOfPresets><tt:HomeSupported>true</tt:HomeSupported>"
            "</tptz:PTZNode></tptz:GetNodesResponse>"
        )

    # -- events service ----------------------------------------------------------------

    async def _get_event_properties(self, _: ET.Element) -> str:
        def description(source: str, item: str) -> str:
            return (
                '<tt:MessageDescription IsProperty="true"><tt:Source>'
                f'<tt:SimpleItemDescription Name="{source}" Type="tt:ReferenceToken"/></tt:Source>'
                f'<tt:Data><tt:SimpleItemDescription Name="{item}" Type="xs:boolean"/></tt:Data>'
                "</tt:MessageDescription>"
            )

        return (
            "<tev:GetEventPropertiesResponse>"
            "<tev:TopicNamespaceLocation>http://www.onvif.org/onvif/ver10/topics/topicns.xml"
            "</tev:TopicNamespaceLocation><wsnt:FixedTopicSet>true</wsnt:FixedTopicSet>"
            "<wstop:TopicSet>"
            "<tns1:RuleEngine><CellMotionDetector>"
            '<Motion wstop:topic="true">'
            f"{description('VideoSourceConfigurationToken', 'IsMotion')}</Motion>"
            "</CellMotionDetector></tns1:RuleEngine>"
            "<tns1:VideoSource><GlobalSceneChange>"
            f'<ImagingService wstop:topic="true">{description("Source", "State")}</ImagingService>'
            "</GlobalSceneChange></tns1:VideoSource>"
            "</wstop:TopicSet>"
            "<wsnt:TopicExpressionDialect>http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
            "</wsnt:TopicExpressionDialect>"
            "<wsnt:TopicExpressionDialect>http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
            "</wsnt:TopicExpressionDialect>"
            "<tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"
            "</tev:MessageContentFilterDialect>"
            "<tev:MessageContentSchemaLocation>http://www.onvif.org/onvif/ver10/schema/onvif.xsd"
            "</tev:MessageContentSchemaLocation>"
            "</tev:GetEventPropertiesResponse>"
        )

    def _termination(self, requested: str | None, default: timedelta) -> datetime:
        now = datetime.now(UTC)
        if not requested:
            return now + default
        requested = requested.strip()
        try:
            if requested.startswith("P"):
                return now + parse_duration(requested)
            absolute = datetime.fromisoformat(requested.replace("Z", "+00:00"))
        except ValueError:
            raise SoapFault(
                "wsnt:UnacceptableTerminationTimeFault", f"bad termination time {requested!r}"
            ) from None
        # An absolute time is on the camera's clock; translate it to ours.
        return absolute.astimezone(UTC) - timedelta(seconds=self.spec.clock_offset_s)

    def _times(self, expires: datetime) -> tuple[str, str]:
        offset = timedelta(seconds=self.spec.clock_offset_s)
        return _xs_datetime(datetime.now(UTC) + offset), _xs_datetime(expires + offset)

    async def _create_pull_point_subscription(self, request: ET.Element) -> str:
        initial = _child(request, "InitialTerminationTime")
        expires = self._termination(
            initial.text if initial is not None else None, timedelta(minutes=1)
        )
        subscription = _Subscription(next(self._subscription_ids), expires)
        # Like real cameras, start every subscription with the current state of each property.
        subscription.messages.extend(self._notification(t, "Initialized") for t in _EVENT_ITEMS)
        self._subscriptions[subscription.ident] = subscription
        self.stats.subscriptions_created += 1
        self.stats.subscribed_at.append(asyncio.get_running_loop().time())
        current, termination = self._times(expires)
        return (
            "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
            f"<wsa:Address>{self.url(f'/onvif/subscription/{subscription.ident}')}</wsa:Address>"
            "</tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{current}</wsnt:CurrentTime>"
            f"<wsnt:TerminationTime>{termination}</wsnt:TerminationTime>"
            "</tev:CreatePullPointSubscriptionResponse>"
        )

    def _subscription(self, ident: str) -> _Subscription:
        subscription = self._subscriptions.get(int(ident)) if ident.isdigit() else None
        if subscription is None or subscription.expires <= datetime.now(UTC):
            if subscription is not None:
                self._drop(subscription)
            raise SoapFault("wsrf-r:ResourceUnknownFault", "no such subscription")
        return subscription

    def _drop(self, subscription: _Subscription) -> None:
        del self._subscriptions[subscription.ident]
        subscription.arrived.set()  # a pull waiting on it answers now

    async def _pull_messages(self, request: ET.Element, subscription: _Subscription) -> str:
        try:
            wait = parse_duration(_text(request, "Timeout", "PT0S"))
            limit = int(_text(request, "MessageLimit", "1"))
        except ValueError:
            raise SoapFault("ter:InvalidArgVal", "bad Timeout or MessageLimit") from None
        if self.spec.eager_pulls:
            subscription.messages.extend(
                self._notification(t, "Changed") for t in _EVENT_ITEMS if t == MOTION_TOPIC
            )
        elif not subscription.messages and wait:
            subscription.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, MAX_PULL_WAIT).total_seconds()):
                    await subscription.arrived.wait()
            if subscription.ident not in self._subscriptions:
                raise SoapFault("wsrf-r:ResourceUnknownFault", "subscription ended")
        messages = [
            subscription.messages.popleft() for _ in range(min(limit, len(subscription.messages)))
        ]
        current, termination = self._times(subscription.expires)
        return (
            f"<tev:PullMessagesResponse><tev:CurrentTime>{current}</tev:CurrentTime>"
            f"<tev:TerminationTime>{termination}</tev:TerminationTime>"
            f"{''.join(messages)}</tev:PullMessagesResponse>"
        )

    async def _renew(self, request: ET.Element, subscription: _Subscription) -> str:
        if self.spec.renew_fails:
            raise SoapFault("ter:ActionNotSupported", "Renew is not supported", code="env:Receiver")
        requested = _child(request, "TerminationTime")
        subscription.expires = self._termination(
            requested.text if requested is not None else None, timedelta(minutes=1)
        )
        self.stats.renewals += 1
        current, termination = self._times(subscription.expires)
        return (
            f"<wsnt:RenewResponse><wsnt:TerminationTime>{termination}</wsnt:TerminationTime>"
            f"<wsnt:CurrentTime>{current}</wsnt:CurrentTime></wsnt:RenewResponse>"
        )

    async def _unsubscribe(self, _: ET.Element, subscription: _Subscription) -> str:
        self._drop(subscription)
        return "<wsnt:UnsubscribeResponse/>"

    # -- snapshot ----------------------------------------------------------------------

    def _snapshot(self, request: HttpRequest) -> HttpResponse:
        if request.method != "GET":
            return HttpResponse(405, b"", "text/plain", {"Allow": "GET"})
        token = request.path.rsplit("/", 1)[-1].removesuffix(".jpg")
        if not any(p.token == token for p in self.spec.profiles):
            return HttpResponse(404, b"", "text/plain")
        if not self._snapshot_authorized(request):
            return HttpResponse(401, b"", "text/plain", {"WWW-Authenticate": self._challenge()})
        self.stats.snapshots_served += 1
        return HttpResponse(200, self.spec.snapshot_image, "image/jpeg")

    def _challenge(self) -> str:
        if self.spec.snapshot_auth == "basic":
            return 'Basic realm="IP Camera"'
        nonce = secrets.token_hex(16)
        self._digest_nonces.add(nonce)
        return f'Digest realm="IP Camera", qop="auth", nonce="{nonce}", algorithm=MD5'

    def _snapshot_authorized(self, request: HttpRequest) -> bool:
        spec = self.spec
        if spec.snapshot_auth == "none":
            return True
        query = parse_qs(urlsplit(request.target).query)
        if query.get("user") == [spec.username] and query.get("pwd") == [spec.password]:
            return spec.embed_credentials_in_uris
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if spec.snapshot_auth == "basic" and scheme.lower() == "basic":
            expected = base64.b64encode(f"{spec.username}:{spec.password}".encode()).decode()
            return hmac.compare_digest(value.strip(), expected)
        if spec.snapshot_auth == "digest" and scheme.lower() == "digest":
            return self._digest_valid(request, dict(_DIGEST_PARAM.findall(value)))
        return False

    def _digest_valid(self, request: HttpRequest, params: dict[str, str]) -> bool:
        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - RFC 7616 MD5 digest

        params = {k: v.strip('"') for k, v in params.items()}
        if (
            params.get("nonce") not in self._digest_nonces
            or params.get("username") != self.spec.username
        ):
            return False
        ha1 = md5(f"{self.spec.username}:{params.get('realm', '')}:{self.spec.password}")
        ha2 = md5(f"{request.method}:{params.get('uri', '')}")
        expected = md5(
            f"{ha1}:{params['nonce']}:{params.get('nc', '')}:{params.get('cnonce', '')}:"
            f"{params.get('qop', '')}:{ha2}"
        )
        return hmac.compare_digest(expected, params.get("response", ""))


_DIGEST_PARAM = re.compile(r'(\w+)=("[^"]*"|[^,\s]+)')


def _not_found() -> HttpResponse:
    return HttpResponse(404, b"<html><body>Not Found</body></html>", "text/html")


def _media_uri(uri: str) -> str:
    return (
        f"<trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
        "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri>"
    )


def _service_for_path(path: str) -> str | None:
    if path.startswith("/onvif/subscription/"):
        return "subscription"
    return {
        "/onvif/device_service": "device",
        "/onvif/media_service": "media",
        "/onvif/event_service": "events",
        "/onvif/ptz_service": "ptz",
    }.get(path)


async def _linger(reader: asyncio.StreamReader) -> None:
    """Hold the connection without answering until the client or the simulator closes it."""
    while await reader.read(65536):
        pass


async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | HttpResponse | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return HttpResponse(400, b"", "text/plain")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding"):
        return HttpResponse(411, b"", "text/plain")
    length = int(headers.get("content-length", "0") or "0")
    if length > MAX_REQUEST_BODY:
        return HttpResponse(413, b"", "text/plain")
    body = await reader.readexactly(length) if length else b""
    return HttpRequest(parts[0], parts[1], headers, body)


def _serialize_response(
    response: HttpResponse, *, keep_alive: bool, date: str | None = ""
) -> bytes:
    """``date``: the Date header ("" for now on our clock, None for none at all)."""
    stamp = {"Date": date or formatdate(usegmt=True)} if date is not None else {}
    headers = {
        "Server": "Acme-Webs",
        **stamp,
        "Content-Type": response.content_type,
        "Content-Length": str(len(response.body)),
        "Connection": "keep-alive" if keep_alive else "close",
        **response.headers,
    }
    head = f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + response.body


async def _write_response(
    writer: asyncio.StreamWriter, response: HttpResponse, *, keep_alive: bool
) -> None:
    writer.write(_serialize_response(response, keep_alive=keep_alive))
    await writer.drain()


# -- WS-Discovery ------------------------------------------------------------------------


class _DiscoveryProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_probe: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_probe = on_probe

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._on_probe(data, (str(addr[0]), int(addr[1])))


class DiscoveryResponder:
    """Answers WS-Discovery Probes for the fleet, over unicast and optionally multicast."""

    def __init__(self, cameras: Callable[[], Iterable[SimulatedCamera]], host: str) -> None:
        self._cameras = cameras
        self._host = host
        self._unicast: asyncio.DatagramTransport | None = None
        self._multicast: asyncio.DatagramTransport | None = None
        self.probes_answered = 0

    async def start(
        self,
        port: int = 0,
        multicast_group: str | None = None,
        multicast_port: int = DISCOVERY_PORT,
    ) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _DiscoveryProtocol(self._answer), local_addr=(self._host, port)
        )
        self._unicast = transport
        if multicast_group is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((multicast_group, multicast_port))
            membership = socket.inet_aton(multicast_group) + socket.inet_aton(self._host)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            self._multicast, _ = await loop.create_datagram_endpoint(
                lambda: _DiscoveryProtocol(self._answer), sock=sock
            )
        return int(transport.get_extra_info("sockname")[1])

    def stop(self) -> None:
        for transport in (self._unicast, self._multicast):
            if transport is not None:
                transport.close()
        self._unicast = self._multicast = None

    def _answer(self, data: bytes, sender: tuple[str, int]) -> None:
        try:
            envelope = _parse_xml(data)
        except ET.ParseError:
            return
        header = _child(envelope, "Header")
        probe = _child(_child(envelope, "Body"), "Probe")
        if probe is None:
            return
        types = _text(probe, "Types")
        if types and "NetworkVideoTransmitter" not in types and "Device" not in types:
            return
        message_id = _text(header, "MessageID")
        assert self._unicast is not None
        for camera in self._cameras():
            if camera.spec.fault in {CameraFault.DOWN, CameraFault.NOT_ONVIF}:
                continue
            quirks = camera.spec.discovery_quirks
            if DiscoveryQuirk.GARBAGE_FIRST in quirks:
                self._unicast.sendto(b"\x00\x01 not a probe match <<<", sender)
            self._unicast.sendto(probe_match(camera, message_id, quirks), sender)
            self.probes_answered += 1


def probe_match(
    camera: SimulatedCamera, relates_to: str, quirks: frozenset[DiscoveryQuirk]
) -> bytes:
    """The ProbeMatches datagram a camera sends, bent the way the quirks say."""
    odd = DiscoveryQuirk.ODD_PREFIXES in quirks
    env, wsa, wsd = ("SOAP-ENV", "wsadis", "d2") if odd else ("s", "a", "d")
    soap_ns = SOAP11 if DiscoveryQuirk.SOAP11 in quirks else SOAP12
    scopes = " ".join(
        [
            "onvif://www.onvif.org/type/video_encoder",
            "onvif://www.onvif.org/Profile/Streaming",
            f"onvif://www.onvif.org/location/{camera.spec.location}",
            f"onvif://www.onvif.org/hardware/{camera.spec.model}",
            f"onvif://www.onvif.org/name/{camera.spec.name}",
        ]
    )
    xaddrs = camera.xaddr
    if DiscoveryQuirk.FOREIGN_XADDR in quirks:
        xaddrs += " http://192.0.2.77/onvif/device_service"
    address = f"<{wsa}:Address>{escape(camera.endpoint_ref)}</{wsa}:Address>"
    if DiscoveryQuirk.BARE_ADDRESS not in quirks:
        address = f"<{wsa}:EndpointReference>{address}</{wsa}:EndpointReference>"
    # With odd prefixes the discovery elements sit in a default namespace, unprefixed.
    d = "" if odd else f"{wsd}:"
    match = (
        f"<{d}ProbeMatch>{address}<{d}Types>dn:NetworkVideoTransmitter</{d}Types>"
        f"<{d}Scopes>{escape(scopes)}</{d}Scopes><{d}XAddrs>{escape(xaddrs)}</{d}XAddrs>"
        f"<{d}MetadataVersion>1</{d}MetadataVersion></{d}ProbeMatch>"
    )
    if DiscoveryQuirk.NO_MATCHES_WRAPPER not in quirks:
        match = f"<{d}ProbeMatches>{match}</{d}ProbeMatches>"
    relates = (
        ""
        if DiscoveryQuirk.NO_RELATES_TO in quirks or not relates_to
        else f"<{wsa}:RelatesTo>{escape(relates_to)}</{wsa}:RelatesTo>"
    )
    default_ns = f' xmlns="{WSD}"' if odd else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{env}:Envelope xmlns:{env}="{soap_ns}" '
        f'xmlns:{wsa}="{WSA_DISCOVERY}" xmlns:{wsd}="{WSD}"{default_ns} '
        'xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
        f"<{env}:Header><{wsa}:MessageID>urn:uuid:{uuid.uuid4()}</{wsa}:MessageID>{relates}"
        f"<{wsa}:To>{WSA_DISCOVERY}/role/anonymous</{wsa}:To>"
        f"<{wsa}:Action>{WSD}/ProbeMatches</{wsa}:Action></{env}:Header>"
        f"<{env}:Body>{match}</{env}:Body></{env}:Envelope>"
    ).encode()


# -- the fleet --------------------------------------------------------------------------


class CameraSimulator:
    """Many simulated cameras in one process, one loopback port each."""

    def __init__(self, specs: Iterable[CameraSpec], *, host: str = "127.0.0.1") -> None:
        if not _is_loopback(host):
            raise ValueError(f"the simulator binds only to loopback, not {host!r}")
        self.host = host
        self.cameras: dict[str, SimulatedCamera] = {}
        for spec in specs:
            if spec.name in self.cameras:
                raise ValueError(f"two simulated cameras are named {spec.name!r}")
            self.cameras[spec.name] = SimulatedCamera(spec, host)
        self._discovery: DiscoveryResponder | None = None

    def __getitem__(self, name: str) -> SimulatedCamera:
        return self.cameras[name]

    async def start(self) -> None:
        await asyncio.gather(*(camera.start() for camera in self.cameras.values()))

    async def add(self, spec: CameraSpec) -> SimulatedCamera:
        """Plug in another camera while the fleet runs."""
        camera = SimulatedCamera(spec, self.host)
        self.cameras[spec.name] = camera
        await camera.start()
        return camera

    async def start_discovery(
        self,
        port: int = 0,
        multicast_group: str | None = None,
        multicast_port: int = DISCOVERY_PORT,
    ) -> int:
        """Answer Probes on host:port (returned) and, if asked, on the multicast group."""
        self._discovery = DiscoveryResponder(lambda: list(self.cameras.values()), self.host)
        return await self._discovery.start(port, multicast_group, multicast_port)

    @property
    def probes_answered(self) -> int:
        return self._discovery.probes_answered if self._discovery else 0

    async def stop(self) -> None:
        if self._discovery is not None:
            self._discovery.stop()
        await asyncio.gather(*(camera.stop() for camera in self.cameras.values()))

    async def __aenter__(self) -> CameraSimulator:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


def fleet(count: int, *, prefix: str = "cam", **overrides: object) -> list[CameraSpec]:
    """``count`` cameras named prefix-001.. with the same settings."""
    specs = []
    for index in range(1, count + 1):
        spec = CameraSpec(name=f"{prefix}-{index:03d}")
        for key, value in overrides.items():
            setattr(spec, key, value)
        specs.append(spec)
    return specs


async def _serve_forever(args: argparse.Namespace) -> None:
    specs = fleet(args.cameras, username=args.username, password=args.password)
    for spec, offset in zip(specs, itertools.cycle(args.clock_offset or [0.0]), strict=False):
        spec.clock_offset_s = offset
    async with CameraSimulator(specs, host=args.host) as simulator:
        discovery_port = await simulator.start_discovery(
            args.discovery_port, DISCOVERY_MULTICAST_GROUP if args.multicast else None
        )
        print(
            json.dumps(
                {
                    "discovery_port": discovery_port,
                    "cameras": [
                        {"name": c.name, "port": c.port, "endpoint_ref": c.endpoint_ref}
                        for c in simulator.cameras.values()
                    ],
                }
            ),
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve simulated ONVIF cameras on loopback.")
    parser.add_argument("--cameras", type=int, default=4, help="how many cameras")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="Cam-Passw0rd")
    parser.add_argument(
        "--clock-offset", type=float, action="append", help="seconds, cycled over cameras"
    )
    parser.add_argument(
        "--discovery-port", type=int, default=0, help="unicast WS-Discovery port (0: any)"
    )
    parser.add_argument(
        "--multicast",
        action="store_true",
        help=f"also join {DISCOVERY_MULTICAST_GROUP}:{DISCOVERY_PORT}",
    )
    asyncio.run(_serve_forever(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
