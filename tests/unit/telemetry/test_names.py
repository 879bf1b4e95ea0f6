"""SenML names to catalog metrics through device profiles (RFC 8428, RFC 9039 device URNs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from drivers.sensors.payloads import PayloadLimits, decode_senml_json
from hub.devices import NATIVE, DeviceIdentity, Profile, ProfileBook, parse_profile
from hub.errors import ValidationFailed
from hub.telemetry.names import DeviceNames, NameRefused, mapping_problem
from tests.support.senml import MULTIPLE_MEASUREMENTS_SERIES, SERIES_SERIAL

UID = "hp-aq-0007"
NATIVE_NAMES = DeviceNames(NATIVE, DeviceIdentity(UID, "", None))
GENERIC = ProfileBook().profile_for("RFC 8428 sensor")


def generic(serial: str = "10e2073a01080063", uid: str = "gen-1") -> DeviceNames:
    return DeviceNames(GENERIC, DeviceIdentity(uid, "RFC 8428 sensor", serial))


def test_native_names_may_claim_the_device_with_colon_slash_or_a_device_urn() -> None:
    for name in ("humidity", f"{UID}:humidity", f"{UID}/humidity", f"urn:dev:ops:{UID}:humidity"):
        assert NATIVE_NAMES.resolve(name, "%RH", "topic") == ("humidity", "%RH")


def test_a_name_claiming_another_device_is_refused() -> None:
    with pytest.raises(NameRefused) as raised:
        NATIVE_NAMES.resolve("urn:dev:mac:0024befffe804ff1:pm2_5", None, "topic")
    assert str(raised.value) == (
        "payload claims device 'urn:dev:mac:0024befffe804ff1' on device 'hp-aq-0007''s topic"
    )
    with pytest.raises(NameRefused, match="on device 'hp-aq-0007''s resource"):
        NATIVE_NAMES.resolve("other:pm2_5", None, "resource")


def test_without_a_profile_unknown_names_are_refused_with_the_reason() -> None:
    with pytest.raises(
        NameRefused, match=r"SenML name 'Temp' \(unit 'Cel'\) is not in the catalog"
    ):
        NATIVE_NAMES.resolve(f"{UID}:Temp", "Cel", "topic")
    with pytest.raises(NameRefused, match="names the device but no measurement"):
        NATIVE_NAMES.resolve(f"{UID}:", None, "topic")


def test_a_profile_binds_base_names_to_the_devices_own_serial() -> None:
    names = generic()
    assert names.resolve("urn:dev:ow:10e2073a01080063:temp", "Cel", "topic") == (
        "temperature",
        "Cel",
    )
    assert names.resolve("urn:dev:mac:10e2073a01080063:voltage", None, "topic") == ("voltage", "V")
    # Another device's serial is another device: refused, whatever the profile says.
    with pytest.raises(NameRefused, match="claims device 'urn:dev:ow:ffffffffffffffff'"):
        names.resolve("urn:dev:ow:ffffffffffffffff:temp", "Cel", "topic")
    # A device without a registered serial cannot use the serial's names at all.
    unserialised = DeviceNames(GENERIC, DeviceIdentity("gen-2", "RFC 8428 sensor", None))
    with pytest.raises(NameRefused, match="claims device"):
        unserialised.resolve("urn:dev:ow:10e2073a01080063:temp", "Cel", "topic")


def test_a_record_named_by_the_identity_alone_is_told_by_its_unit() -> None:
    # RFC 8428 section 5.1, "Single Datapoint": the name is the device, the unit says what.
    names = generic()
    assert names.resolve("urn:dev:ow:10e2073a01080063", "Cel", "topic") == ("temperature", "Cel")
    assert names.resolve("urn:dev:ow:10e2073a01080063:", "%RH", "topic") == ("humidity", "%RH")
    assert names.resolve("urn:dev:ow:10e2073a01080063:", "lat", "topic") == ("raw/lat", "lat")


def test_unmapped_names_are_kept_raw_or_refused_as_the_profile_says() -> None:
    assert generic().resolve("urn:dev:ow:10e2073a01080063:label", None, "topic") == (
        "raw/label",
        None,
    )
    aqm = DeviceNames(
        ProfileBook().profile_for("AQM-65"), DeviceIdentity("aq-1", "AQM-65", "0024befffe804ff1")
    )
    assert aqm.resolve("urn:dev:mac:0024befffe804ff1:pm25", None, "topic") == ("pm2_5", "ug/m3")
    with pytest.raises(NameRefused, match="not in the catalog nor profile 'AQM-65'"):
        aqm.resolve("urn:dev:mac:0024befffe804ff1:label", None, "topic")


def test_profiles_are_checked_when_imported() -> None:
    document = {
        "model": "X-1",
        "identities": ["urn:dev:ow:"],
        "names": {"t": {"metric": "temp", "unit": "Cel"}, "p": {"metric": "pressure", "unit": "C"}},
    }
    with pytest.raises(ValidationFailed) as raised:
        parse_profile(json.dumps(document), mapping_problem)
    fields = {problem.field: problem.message for problem in raised.value.errors}
    assert "names no one device" in fields["identities"]
    assert fields["names.t"] == "'temp' is not a catalog metric"
    assert fields["names.p"] == "unit 'C' is not accepted for pressure"
    with pytest.raises(ValidationFailed, match="not a device profile"):
        parse_profile(json.dumps({"model": "X-1", "unmapped": "drop"}))


def test_an_imported_profile_replaces_the_shipped_one_and_invalidates_caches() -> None:
    book = ProfileBook()
    version = book.version
    mine = Profile(model="AQM-65", names={}, catalog_names=False)
    book.replace([mine])
    assert book.profile_for("AQM-65") is mine and book.version == version + 1
    book.replace([mine])
    assert book.version == version + 1
    assert book.profile_for("unknown model") is NATIVE


def resolve_pack(pack: list[dict[str, Any]], names: DeviceNames, now: datetime) -> list[Any]:
    readings = decode_senml_json(
        json.dumps(pack).encode(),
        names.device.uid,
        now=now,
        limits=PayloadLimits(max_age=now - datetime(2000, 1, 1, tzinfo=UTC)),
    )
    return [
        (*names.resolve(r.metric, r.unit, "topic"), r.value, r.time.timestamp()) for r in readings
    ]


def test_rfc_8428_multiple_measurements_resolve_as_the_rfc_does() -> None:
    # RFC 8428 section 5.1, "Multiple Measurements" (bver 5 on the first record only).
    pack = [dict(record) for record in MULTIPLE_MEASUREMENTS_SERIES]
    now = datetime(2010, 6, 8, 18, 5, tzinfo=UTC)
    resolved = resolve_pack(pack, generic(serial=SERIES_SERIAL), now)
    assert resolved[0] == ("voltage", "V", 120.1, pytest.approx(1276020076.001))
    assert [(m, u, v) for m, u, v, _ in resolved[1:]] == [
        ("current", "A", value) for value in (1.2, 1.3, 1.4, 1.5, 1.6, 1.7)
    ]
    assert resolved[1][3] == pytest.approx(1276020071.001)
