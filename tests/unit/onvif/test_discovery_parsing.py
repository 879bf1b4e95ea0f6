"""Parsing WS-Discovery ProbeMatches the way cameras really send them."""

from __future__ import annotations

import contextlib
import ipaddress
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.contract import DecodeError
from drivers.onvif.discovery import (
    build_probe,
    normalize_endpoint_ref,
    parse_probe_matches,
    parse_targets,
    report_from_replies,
    xaddr_refusal,
)

# As sent by a common NVR-class camera: SOAP-ENV prefixes, WS-Addressing as "wsadis".
VENDOR_REPLY = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
  xmlns:wsadis="http://schemas.xmlsoap.org/ws/2004/08/addressing"
  xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"
  xmlns:dn="http://www.onvif.org/ver10/network/wsdl">
 <SOAP-ENV:Header>
  <wsadis:MessageID>uuid:1c852a4d-b8f9-4bf6-8a86-0012410b5b4d</wsadis:MessageID>
  <wsadis:RelatesTo>urn:uuid:00000000-0000-4000-8000-000000000001</wsadis:RelatesTo>
  <wsadis:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsadis:To>
  <wsadis:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsadis:Action>
 </SOAP-ENV:Header>
 <SOAP-ENV:Body>
  <d:ProbeMatches>
   <d:ProbeMatch>
    <wsadis:EndpointReference>
     <wsadis:Address>urn:uuid:4E3A1B2C-0000-1111-2222-BCBAC2F1E0A9</wsadis:Address>
    </wsadis:EndpointReference>
    <d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>
    <d:Scopes>onvif://www.onvif.org/type/video_encoder
      onvif://www.onvif.org/location/city/hcmc onvif://www.onvif.org/name/IPC</d:Scopes>
    <d:XAddrs>http://10.20.0.15/onvif/device_service http://[fe80::1]/onvif/device_service</d:XAddrs>
    <d:MetadataVersion>10</d:MetadataVersion>
   </d:ProbeMatch>
  </d:ProbeMatches>
 </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""
OUR_PROBE = "urn:uuid:00000000-0000-4000-8000-000000000001"


def test_vendor_reply_is_read() -> None:
    [match] = parse_probe_matches(VENDOR_REPLY, {OUR_PROBE})

    assert match.endpoint_ref == "urn:uuid:4e3a1b2c-0000-1111-2222-bcbac2f1e0a9"
    assert match.xaddrs == (
        "http://10.20.0.15/onvif/device_service",
        "http://[fe80::1]/onvif/device_service",
    )
    assert "onvif://www.onvif.org/location/city/hcmc" in match.scopes
    assert match.types == ("dn:NetworkVideoTransmitter", "tds:Device")


def test_reply_to_another_probe_is_refused() -> None:
    with pytest.raises(DecodeError, match="answers another probe"):
        parse_probe_matches(VENDOR_REPLY, {"urn:uuid:someone-else"})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\x01garbage", "not XML"),
        (b"<html><body>hello</body></html>", "not a SOAP envelope"),
        (
            b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/></s:Envelope>',
            "without a Body",
        ),
        (
            b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
            b'<Hello xmlns="http://schemas.xmlsoap.org/ws/2005/04/discovery"/></s:Body></s:Envelope>',
            "no ProbeMatch",
        ),
        (
            b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
            b"<ProbeMatch><XAddrs>http://10.0.0.1/</XAddrs></ProbeMatch></s:Body></s:Envelope>",
            "without an endpoint reference",
        ),
        (
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>',
            "document type declarations",
        ),
    ],
)
def test_unreadable_replies_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        parse_probe_matches(payload)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_crash_the_parser(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse_probe_matches(payload)


def test_probe_is_a_soap12_ws_discovery_probe() -> None:
    probe = build_probe("urn:uuid:00000000-0000-4000-8000-000000000002")
    assert b"http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe<" in probe
    assert b"<d:Types>dn:NetworkVideoTransmitter</d:Types>" in probe
    assert b"urn:uuid:00000000-0000-4000-8000-000000000002" in probe


def test_endpoint_refs_compare_case_insensitively_only_when_they_are_uuids() -> None:
    assert (
        normalize_endpoint_ref(" URN:UUID:ABCDEF00-1111-2222-3333-444455556666 ")
        == "urn:uuid:abcdef00-1111-2222-3333-444455556666"
    )
    assert normalize_endpoint_ref("http://camera.example/Ref") == "http://camera.example/Ref"


def test_targets_expand_subnets_and_keep_ports() -> None:
    assert parse_targets(["10.1.2.3", "10.1.2.4:4000"]) == [("10.1.2.3", 3702), ("10.1.2.4", 4000)]
    assert parse_targets(["10.9.0.0/30"]) == [("10.9.0.1", 3702), ("10.9.0.2", 3702)]
    with pytest.raises(ValueError, match="more than"):
        parse_targets(["10.0.0.0/16"])
    with pytest.raises(ValueError):
        parse_targets(["camera.local"])


def test_only_addresses_inside_the_subnets_are_followed() -> None:
    subnets = [ipaddress.IPv4Network("10.20.0.0/16")]
    assert xaddr_refusal("http://10.20.0.15/onvif/device_service", subnets) is None
    assert xaddr_refusal("http://10.21.0.15/onvif/device_service", subnets) == (
        "outside the configured subnets"
    )
    assert "host name" in str(xaddr_refusal("http://cam.local/onvif/device_service", subnets))
    assert xaddr_refusal("ftp://10.20.0.15/", subnets) == "not an HTTP URL"
    assert xaddr_refusal("http://[fe80::1]/onvif", subnets) == "outside the configured subnets"


def test_report_merges_replies_per_endpoint_and_filters_foreign_addresses() -> None:
    now = datetime.now(UTC)
    subnets = [ipaddress.IPv4Network("10.20.0.0/16")]
    replies = [
        (VENDOR_REPLY, "10.20.0.15", now),
        (VENDOR_REPLY, "10.20.0.15", now),
        (b"junk", "10.20.0.9", now),
    ]

    report = report_from_replies(replies, {OUR_PROBE}, subnets)

    [camera] = report.found
    assert camera.addresses == ("http://10.20.0.15/onvif/device_service",)
    assert camera.time == now
    [filtered] = report.filtered
    assert filtered.xaddr == "http://[fe80::1]/onvif/device_service"
    assert [s.sender for s in report.skipped] == ["10.20.0.9"]
