"""WS-Discovery of ONVIF cameras: multicast Probes on local interfaces, unicast Probes to hosts.

Multicast does not cross subnets, so remote wards are probed host by host. Replies
are parsed tolerantly (prefixes, missing wrappers, SOAP 1.1); what cannot be read
is skipped with its reason. Addresses outside the configured subnets are never
handed on: they are reported as filtered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from drivers.contract import DecodeError, DeviceKind, Discovered

log = logging.getLogger(__name__)

MULTICAST_GROUP = "239.255.255.250"
DISCOVERY_PORT = 3702
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
MAX_UNICAST_TARGETS = 4096
_UUID_URN = re.compile(
    r"urn:uuid:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", re.I
)
_SEND_BURST = 128  # unicast datagrams sent before yielding, so a /22 does not flood the socket


@dataclass(frozen=True, slots=True)
class ProbeMatch:
    endpoint_ref: str
    xaddrs: tuple[str, ...]
    scopes: tuple[str, ...]
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FilteredAddress:
    """An XAddr a camera advertised that the hub will not follow."""

    endpoint_ref: str
    xaddr: str
    sender: str
    reason: str


@dataclass(frozen=True, slots=True)
class SkippedReply:
    sender: str
    reason: str


@dataclass(frozen=True, slots=True)
class DiscoveryReport:
    found: tuple[Discovered, ...] = ()
    filtered: tuple[FilteredAddress, ...] = ()
    skipped: tuple[SkippedReply, ...] = ()


def build_probe(message_id: str, types: str = "dn:NetworkVideoTransmitter") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}" xmlns:d="{WSD}" '
        'xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{WSD}/Probe</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{WSA}/role/anonymous</a:Address></a:ReplyTo>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
        "</s:Header>"
        f"<s:Body><d:Probe><d:Types>{types}</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode()


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _namespace(element: ET.Element) -> str:
    return element.tag[1:].split("}", 1)[0] if element.tag.startswith("{") else ""


def _first(element: ET.Element | None, local_name: str) -> ET.Element | None:
    if element is None:
        return None
    return next((e for e in element.iter() if _local(e) == local_name), None)


def _words(element: ET.Element | None, local_name: str) -> tuple[str, ...]:
    found = _first(element, local_name)
    return tuple((found.text or "").split()) if found is not None else ()


def normalize_endpoint_ref(ref: str) -> str:
    """urn:uuid references compare case-insensitively; anything else is kept as sent."""
    ref = ref.strip()
    match = _UUID_URN.fullmatch(ref)
    return f"urn:uuid:{match.group(1).lower()}" if match else ref


def parse_probe_matches(data: bytes, expected_relates_to: Collection[str] = ()) -> list[ProbeMatch]:
    """The ProbeMatch entries of one datagram; DecodeError says why there are none."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DecodeError("document type declarations are not allowed in SOAP")
    try:
        envelope = ET.fromstring(data)  # noqa: S314 - DTDs refused above
    except ET.ParseError as error:
        raise DecodeError(f"not XML: {error}") from None
    if _local(envelope) != "Envelope" or _namespace(envelope) not in {SOAP12, SOAP11}:
        raise DecodeError(f"not a SOAP envelope but <{_local(envelope)}>")
    header = next((e for e in envelope if _local(e) == "Header"), None)
    body = next((e for e in envelope if _local(e) == "Body"), None)
    if body is None:
        raise DecodeError("SOAP envelope without a Body")
    relates_to = _first(header, "RelatesTo")
    answered = (relates_to.text or "").strip() if relates_to is not None else ""
    if expected_relates_to and answered and answered not in expected_relates_to:
        raise DecodeError(f"answers another probe ({answered})")
    matches, problems = [], []
    for element in body.iter():
        if _local(element) != "ProbeMatch":
            continue
        reference = _first(element, "EndpointReference")
        address = _first(element if reference is None else reference, "Address")
        if address is None or not (address.text or "").strip():
            problems.append("a ProbeMatch without an endpoint reference")
            continue
        matches.append(
            ProbeMatch(
                endpoint_ref=normalize_endpoint_ref(address.text or ""),
                xaddrs=_words(element, "XAddrs"),
                scopes=_words(element, "Scopes"),
                types=_words(element, "Types"),
            )
        )
    if not matches:
        raise DecodeError(problems[0] if problems else "no ProbeMatch in the reply")
    return matches


def parse_targets(
    targets: Iterable[str], default_port: int = DISCOVERY_PORT
) -> list[tuple[str, int]]:
    """Unicast destinations from "10.1.2.3", "10.1.2.3:3702" or "10.1.2.0/24" (its hosts)."""
    destinations: list[tuple[str, int]] = []
    for target in targets:
        text = target.strip()
        if "/" in text:
            network = ipaddress.IPv4Network(text, strict=False)
            hosts = list(network.hosts()) or [network.network_address]
            destinations.extend((str(host), default_port) for host in hosts)
        else:
            host, _, port = text.partition(":")
            ipaddress.IPv4Address(host)  # names are not resolved: a probe goes to an address
            destinations.append((host, int(port) if port else default_port))
        if len(destinations) > MAX_UNICAST_TARGETS:
            raise ValueError(f"more than {MAX_UNICAST_TARGETS} unicast probe targets")
    return destinations


def xaddr_refusal(xaddr: str, subnets: Sequence[ipaddress.IPv4Network]) -> str | None:
    """Why the hub must not follow this XAddr, or None if it may."""
    try:
        parts = urlsplit(xaddr)
        host = parts.hostname
    except ValueError:
        return "not a URL"
    if parts.scheme not in {"http", "https"} or not host:
        return "not an HTTP URL"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "a host name, not an address: it could resolve anywhere"
    if not any(address in subnet for subnet in subnets):
        return "outside the configured subnets"
    return None


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: list[tuple[bytes, str, datetime]] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.replies.append((data, str(addr[0]), datetime.now(UTC)))

    def error_received(self, exc: Exception) -> None:
        log.debug("discovery socket error: %s", exc)


async def discover(
    *,
    allowed_subnets: Sequence[str | ipaddress.IPv4Network],
    interfaces: Sequence[str] = (),
    unicast_targets: Sequence[str] = (),
    wait: float = 3.0,
    port: int = DISCOVERY_PORT,
    multicast_group: str = MULTICAST_GROUP,
    ttl: int = 1,
) -> DiscoveryReport:
    """Probe, listen for ``wait`` seconds, and report what answered.

    ``interfaces`` are IPv4 addresses of local interfaces to send multicast Probes
    from; ``unicast_targets`` are addresses or subnets to probe one by one.
    """
    subnets = [ipaddress.IPv4Network(subnet, strict=False) for subnet in allowed_subnets]
    destinations = parse_targets(unicast_targets, port)
    message_id = f"urn:uuid:{uuid.uuid4()}"
    probe = build_probe(message_id)
    loop = asyncio.get_running_loop()
    inbox = _Inbox()
    transports: list[asyncio.DatagramTransport] = []
    repeats: list[asyncio.TimerHandle] = []
    try:
        for interface in interfaces:
            sock = _multicast_socket(interface, ttl)
            transport, _ = await loop.create_datagram_endpoint(lambda: inbox, sock=sock)
            transports.append(transport)
            # UDP may drop a datagram; WS-Discovery repeats multicast Probes.
            transport.sendto(probe, (multicast_group, port))
            repeats.append(loop.call_later(0.1, transport.sendto, probe, (multicast_group, port)))
        if destinations:
            transport, _ = await loop.create_datagram_endpoint(lambda: inbox, family=socket.AF_INET)
            transports.append(transport)
            for index, destination in enumerate(destinations, 1):
                transport.sendto(probe, destination)
                if index % _SEND_BURST == 0:
                    await asyncio.sleep(0.01)
        await asyncio.sleep(wait)
    finally:
        for repeat in repeats:
            repeat.cancel()
        for transport in transports:
            transport.close()
    return report_from_replies(inbox.replies, {message_id}, subnets)


def _multicast_socket(interface: str, ttl: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.bind((interface, 0))
    except OSError:
        sock.close()
        raise
    return sock


def report_from_replies(
    replies: Sequence[tuple[bytes, str, datetime]],
    message_ids: Collection[str],
    subnets: Sequence[ipaddress.IPv4Network],
) -> DiscoveryReport:
    found: dict[str, Discovered] = {}
    filtered: dict[tuple[str, str], FilteredAddress] = {}
    skipped: list[SkippedReply] = []
    for data, sender, received_at in replies:
        try:
            matches = parse_probe_matches(data, message_ids)
        except DecodeError as error:
            log.info("skipped a discovery reply from %s: %s", sender, error)
            skipped.append(SkippedReply(sender, str(error)))
            continue
        for match in matches:
            usable = []
            for xaddr in match.xaddrs:
                reason = xaddr_refusal(xaddr, subnets)
                if reason is None:
                    usable.append(xaddr)
                elif (match.endpoint_ref, xaddr) not in filtered:
                    log.info("not following %s of %s: %s", xaddr, match.endpoint_ref, reason)
                    filtered[(match.endpoint_ref, xaddr)] = FilteredAddress(
                        match.endpoint_ref, xaddr, sender, reason
                    )
            if not usable:
                continue
            earlier = found.get(match.endpoint_ref)
            found[match.endpoint_ref] = Discovered(
                kind=DeviceKind.CAMERA,
                endpoint_ref=match.endpoint_ref,
                addresses=_union(earlier.addresses if earlier else (), usable),
                scopes=_union(earlier.scopes if earlier else (), match.scopes),
                time=earlier.time if earlier else received_at,
            )
    return DiscoveryReport(tuple(found.values()), tuple(filtered.values()), tuple(skipped))


def _union(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


def scope_value(scopes: Iterable[str], key: str) -> str | None:
    """The value of an ONVIF scope such as ``onvif://www.onvif.org/location/<value>``."""
    prefix = f"onvif://www.onvif.org/{key}/"
    return next((scope[len(prefix) :] for scope in scopes if scope.startswith(prefix)), None)
