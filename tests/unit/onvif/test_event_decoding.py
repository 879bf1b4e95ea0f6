"""Turning ONVIF notification messages into DeviceEvents.

zeep hands over each wsnt:NotificationMessage as an object whose tt:Message is
either parsed (a typed object) or, for schemas it does not know, a raw XML
element; both shapes are built here from real XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from drivers.contract import DecodeError
from drivers.onvif.events import decode_notification, normalize_topic

RECEIVED = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
TT = "http://www.onvif.org/ver10/schema"


def _message_element(
    item: str, value: str, operation: str = "Changed", utc: str | None = None
) -> Any:
    utc_attr = f' UtcTime="{utc}"' if utc else ""
    return ET.fromstring(  # noqa: S314 - the test's own XML
        f'<tt:Message xmlns:tt="{TT}"{utc_attr} PropertyOperation="{operation}">'
        '<tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="vsc_1"/></tt:Source>'
        f'<tt:Data><tt:SimpleItem Name="{item}" Value="{value}"/></tt:Data></tt:Message>'
    )


def _notification(topic: str | None, body: Any) -> SimpleNamespace:
    return SimpleNamespace(
        Topic=SimpleNamespace(_value_1=topic), Message=SimpleNamespace(_value_1=body)
    )


def test_topic_prefixes_and_wildcard_suffixes_are_dropped() -> None:
    assert normalize_topic("tns1:RuleEngine/CellMotionDetector/Motion") == (
        "RuleEngine/CellMotionDetector/Motion"
    )
    assert (
        normalize_topic(" tns1:VideoSource/tnsvendor:MotionAlarm//. ") == "VideoSource/MotionAlarm"
    )


def test_motion_from_a_raw_message_element() -> None:
    message = _notification(
        "tns1:RuleEngine/CellMotionDetector/Motion",
        _message_element("IsMotion", "true", utc="2025-03-01T07:59:58Z"),
    )

    event = decode_notification("cam-1", message, RECEIVED)

    assert event is not None
    assert (event.kind, event.active, event.device_uid) == ("motion", True, "cam-1")
    assert event.time == datetime(2025, 3, 1, 7, 59, 58, tzinfo=UTC)
    assert event.data["source"] == {"VideoSourceConfigurationToken": "vsc_1"}


def test_tamper_from_a_parsed_message_without_a_time() -> None:
    body = SimpleNamespace(
        UtcTime=None,
        PropertyOperation="Initialized",
        Source=SimpleNamespace(SimpleItem=[]),
        Data=SimpleNamespace(SimpleItem=[SimpleNamespace(Name="State", Value="false")]),
    )
    message = _notification("tns1:VideoSource/GlobalSceneChange/ImagingService", body)

    event = decode_notification("cam-2", message, RECEIVED)

    assert event is not None
    assert (event.kind, event.active, event.time) == ("tamper", False, RECEIVED)
    assert event.data["operation"] == "Initialized"


def test_topics_the_hub_does_not_track_are_ignored() -> None:
    message = _notification(
        "tns1:Device/Trigger/DigitalInput", _message_element("LogicalState", "true")
    )
    assert decode_notification("cam-1", message, RECEIVED) is None


def test_a_deleted_property_is_no_event() -> None:
    message = _notification(
        "tns1:RuleEngine/CellMotionDetector/Motion",
        _message_element("IsMotion", "false", "Deleted"),
    )
    assert decode_notification("cam-1", message, RECEIVED) is None


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        (None, None, "without a topic"),
        ("tns1:RuleEngine/CellMotionDetector/Motion", None, "without a tt:Message"),
        (
            "tns1:RuleEngine/CellMotionDetector/Motion",
            _message_element("Sensitivity", "80"),
            "carries none of IsMotion",
        ),
        (
            "tns1:RuleEngine/TamperDetector/Tamper",
            _message_element("IsTamper", "maybe"),
            "is not a boolean",
        ),
        (
            "tns1:RuleEngine/CellMotionDetector/Motion",
            _message_element("IsMotion", "true", utc="yesterday"),
            "is not a time",
        ),
    ],
)
def test_malformed_messages_raise_decode_error(topic: str | None, body: Any, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_notification("cam-1", _notification(topic, body), RECEIVED)
