"""OSCORE key material and security contexts, without a network."""

from __future__ import annotations

import aiocoap
import pytest
from aiocoap import oscore
from aiocoap.message import Direction

from drivers.contract import RefusedDevice
from drivers.sensors.coap import Unauthenticated
from drivers.sensors.oscore import (
    ALGORITHM,
    HKDF,
    DeviceClaim,
    OscoreAuthoriser,
    OscoreKeyMaterial,
    ReplayWindowState,
    SecurityContextRegistry,
    device_context,
    hub_context,
    new_key_material,
    sequence_floor,
)
from hub.devices.coap_keys import HUB_SENDER_ID, key_id


def test_derivation_matches_the_rfc_8613_test_vector() -> None:
    # RFC 8613 appendix C.1.1, the client's side.
    material = OscoreKeyMaterial(
        bytes.fromhex("0102030405060708090a0b0c0d0e0f10"),
        bytes.fromhex("9e7ca92223786340"),
        sender_id=b"",
        recipient_id=b"\x01",
    )
    context = device_context(material, "client")
    assert context.sender_key.hex() == "f0910ed7295e6ad4b54fc793154302ff"
    assert context.recipient_key.hex() == "ffb14e093c94c9cac9471648b4f98710"
    assert context.common_iv.hex() == "4622d4dd6d944168eefb54987c"


def test_new_material_is_random_with_the_documented_sizes() -> None:
    first = new_key_material(HUB_SENDER_ID, key_id(1))
    second = new_key_material(HUB_SENDER_ID, key_id(1))
    assert (len(first.master_secret), len(first.master_salt)) == (32, 8)
    assert first.master_secret != second.master_secret
    assert first.master_salt != second.master_salt
    assert (
        (first.algorithm, first.hkdf) == (ALGORITHM, HKDF) == ("AES-CCM-16-64-128", "HKDF SHA-256")
    )


def test_the_two_sides_derive_crossed_keys() -> None:
    hub_side = new_key_material(HUB_SENDER_ID, key_id(7))
    device_side = hub_side.for_peer()
    assert (device_side.sender_id, device_side.recipient_id) == (b"\x07", b"")
    hub = hub_context(
        hub_side, "aq-7", next_sequence=0, sequence_limit=10, replay_window=ReplayWindowState(0, 0)
    )
    device = device_context(device_side, "aq-7")
    assert hub.recipient_key == device.sender_key
    assert hub.sender_key == device.recipient_key
    assert hub.common_iv == device.common_iv


def test_a_request_protected_by_the_device_opens_only_with_its_hub_context() -> None:
    hub_side = new_key_material(HUB_SENDER_ID, key_id(7))
    device = device_context(hub_side.for_peer(), "aq-7", first_sequence=5)
    hub = hub_context(
        hub_side, "aq-7", next_sequence=0, sequence_limit=10, replay_window=ReplayWindowState(0, 0)
    )
    stranger = hub_context(
        new_key_material(HUB_SENDER_ID, key_id(7)),
        "aq-7",
        next_sequence=0,
        sequence_limit=10,
        replay_window=ReplayWindowState(0, 0),
    )
    request = aiocoap.Message(code=aiocoap.POST, uri="coap://h/s/aq-7", payload=b"[]")
    request.direction = Direction.OUTGOING
    outer, _ = device.protect(request)
    assert b"[]" not in outer.payload and outer.opt.uri_path == ()
    outer.direction = Direction.INCOMING
    with pytest.raises(oscore.ProtectionInvalid):
        stranger.unprotect(outer)
    inner, _ = hub.unprotect(outer)
    assert (inner.opt.uri_path, inner.payload) == (("s", "aq-7"), b"[]")


def test_material_round_trips_through_json_as_hex() -> None:
    material = new_key_material(b"\x01\x02", b"")
    data = material.to_json()
    assert data["sender_id"] == "0102" and data["recipient_id"] == ""
    assert data["master_secret"] == material.master_secret.hex()
    assert OscoreKeyMaterial.from_json(data) == material


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"master_secret": "00" * 8}, "at least 16 bytes"),
        ({"sender_id": "01" * 8}, "at most 7 bytes"),
        ({"sender_id": "", "recipient_id": ""}, "must differ"),
        ({"algorithm": "A128CBC"}, "unsupported OSCORE algorithm"),
        ({"hkdf": "HKDF MD5"}, "unsupported HKDF"),
        ({"master_secret": "zz"}, "non-hexadecimal"),
        ({"master_secret": 5}, "hex text"),
    ],
)
def test_bad_material_is_refused_with_the_reason(change: dict[str, object], reason: str) -> None:
    data: dict[str, object] = new_key_material(b"\x01", b"").to_json() | change
    with pytest.raises(ValueError, match=reason):
        OscoreKeyMaterial.from_json(data)


def test_missing_fields_are_named() -> None:
    with pytest.raises(ValueError, match="lacks 'sender_id'"):
        OscoreKeyMaterial.from_json({"master_secret": "00" * 16, "recipient_id": ""})


def test_the_secret_never_shows_in_a_repr() -> None:
    material = new_key_material(HUB_SENDER_ID, key_id(3))
    context = hub_context(material, "aq-3", next_sequence=0, sequence_limit=1, replay_window=None)
    for text in (repr(material), repr(context)):
        assert material.master_secret.hex() not in text
        assert material.master_salt.hex() not in text
        assert context.recipient_key.hex() not in text


def test_key_ids_are_the_shortest_big_endian_form() -> None:
    assert [key_id(n) for n in (1, 255, 256, 2**56 - 1)] == [
        b"\x01",
        b"\xff",
        b"\x01\x00",
        b"\xff" * 7,
    ]


def test_the_hub_stops_at_its_reserved_sequence_numbers_and_asks_for_more() -> None:
    asked: list[int] = []
    context = hub_context(
        new_key_material(HUB_SENDER_ID, key_id(4)),
        "aq-4",
        next_sequence=10,
        sequence_limit=13,
        replay_window=None,
        on_sequence_low=lambda ctx: asked.append(ctx.sender_sequence_number),
        sequence_low_water=1,
    )
    assert [context.new_sequence_number() for _ in range(3)] == [10, 11, 12]
    assert asked == [12, 13]
    with pytest.raises(oscore.ContextUnavailable):
        context.new_sequence_number()
    context.sequence_limit = 20
    assert context.new_sequence_number() == 13


def test_sequence_floor_grows_with_time_and_stays_within_oscore() -> None:
    assert sequence_floor(1_700_000_000.0) < sequence_floor(1_700_000_000.01)
    assert sequence_floor(10_000_000_000.0) < oscore.MAX_SEQNO


def test_registry_finds_contexts_by_key_id_only() -> None:
    registry = SecurityContextRegistry()
    context = hub_context(
        new_key_material(HUB_SENDER_ID, key_id(9)),
        "aq-9",
        next_sequence=0,
        sequence_limit=1,
        replay_window=None,
    )
    registry.add(context)
    assert registry.find_oscore({oscore.COSE_KID: b"\x09"}) is context
    for unprotected in ({oscore.COSE_KID: b"\x08"}, {}, {oscore.COSE_KID: b"\x09", 10: b"x"}):
        with pytest.raises(KeyError):
            registry.find_oscore(unprotected)
    assert registry.remove(b"\x09") is context and len(registry) == 0


class _Remote:
    def __init__(self, *claims: object) -> None:
        self.authenticated_claims = list(claims)


class _Request:
    def __init__(self, *claims: object) -> None:
        self.remote = _Remote(*claims)


def test_authoriser_binds_the_context_to_the_uid() -> None:
    authorise = OscoreAuthoriser()
    authorise("aq-1", _Request(DeviceClaim("aq-1")))
    with pytest.raises(Unauthenticated, match="not OSCORE-protected"):
        authorise("aq-1", _Request())
    with pytest.raises(RefusedDevice, match="'aq-1' may not speak for 'aq-2'") as refused:
        authorise("aq-2", _Request(DeviceClaim("aq-1")))
    assert not isinstance(refused.value, Unauthenticated)


def test_authoriser_without_requirement_still_binds_protected_requests() -> None:
    authorise = OscoreAuthoriser(required=False)
    authorise("aq-1", _Request())
    with pytest.raises(RefusedDevice):
        authorise("aq-2", _Request(DeviceClaim("aq-1")))
