"""The client's boundary: library exceptions become CameraErrors, secrets stay out of sight."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
import zeep.exceptions
from onvif.exceptions import ONVIFError

from drivers.onvif.client import (
    CameraAuthError,
    CameraError,
    CameraNotOnvif,
    CameraProtocolError,
    CameraTarget,
    CameraTimeout,
    CameraUnreachable,
    pin_to_host,
    strip_credentials,
    translate_error,
)

WHERE = "10.0.0.7:80"
zeep_errors: Any = zeep.exceptions  # untyped constructors


def _fault(
    subcode: str | None, message: str = "refused", code: str | None = "env:Sender"
) -> Exception:
    subcodes = [ET.QName("http://www.onvif.org/ver10/error", subcode)] if subcode else None
    error: Exception = zeep_errors.Fault(message, code=code, subcodes=subcodes)
    return error


@pytest.mark.parametrize(
    ("error", "expected", "retryable"),
    [
        (_fault("NotAuthorized", "Sender not Authorized"), CameraAuthError, False),
        (_fault("ActionNotSupported", "no"), CameraProtocolError, False),
        (_fault(None, "Unknown fault occured", code=None), CameraNotOnvif, False),
        (zeep_errors.TransportError("x", status_code=401), CameraAuthError, False),
        (zeep_errors.TransportError("x", status_code=404), CameraNotOnvif, False),
        (zeep_errors.TransportError("x", status_code=200), CameraProtocolError, True),
        (zeep_errors.TransportError("x", status_code=503), CameraProtocolError, True),
        (zeep_errors.XMLSyntaxError("not an Envelope"), CameraNotOnvif, False),
        (zeep_errors.XMLParseError("bad"), CameraProtocolError, False),
        (TimeoutError(), CameraTimeout, True),
        (ConnectionRefusedError(111, "refused"), CameraUnreachable, True),
        (OSError(113, "No route to host"), CameraUnreachable, True),
        (KeyError("Uri"), CameraProtocolError, True),
    ],
)
def test_library_errors_translate(
    error: Exception, expected: type[CameraError], retryable: bool
) -> None:
    translated = translate_error(error, WHERE)
    assert type(translated) is expected
    assert translated.retryable is retryable
    assert WHERE in str(translated)


def test_onvif_wrapper_is_translated_by_its_cause() -> None:
    cause = TimeoutError()
    wrapped = ONVIFError(cause)
    wrapped.__cause__ = cause
    assert type(translate_error(wrapped, WHERE)) is CameraTimeout


def test_password_stays_out_of_reprs() -> None:
    target = CameraTarget("cam-7", "10.0.0.7", 80, "operator", "hunter2-camera")
    assert "hunter2-camera" not in repr(target) and "operator" in repr(target)


@pytest.mark.parametrize(
    ("uri", "clean"),
    [
        ("rtsp://admin:pa55@10.0.0.7:554/Streaming/101", "rtsp://10.0.0.7:554/Streaming/101"),
        (
            "http://10.0.0.7/cgi-bin/snapshot.cgi?channel=1&user=admin&pwd=pa55",
            "http://10.0.0.7/cgi-bin/snapshot.cgi?channel=1",
        ),
        ("http://10.0.0.7/snap.jpg?Password=pa55&PASSWD=x", "http://10.0.0.7/snap.jpg"),
        ("http://10.0.0.7/snap.jpg", "http://10.0.0.7/snap.jpg"),
    ],
)
def test_credentials_are_stripped_from_uris(uri: str, clean: str) -> None:
    assert strip_credentials(uri) == clean


def test_service_addresses_are_pinned_to_the_camera_host() -> None:
    assert pin_to_host("http://192.168.1.64:8000/onvif/media", "10.0.0.7") == (
        "http://10.0.0.7:8000/onvif/media"
    )
    assert (
        pin_to_host("http://192.168.1.64/onvif/media", "10.0.0.7") == "http://10.0.0.7/onvif/media"
    )
    assert pin_to_host("http://10.0.0.7/onvif/media", "10.0.0.7") == "http://10.0.0.7/onvif/media"
    assert pin_to_host("http://192.168.1.64/x", "fd00::7") == "http://[fd00::7]/x"
