"""probe_camera against simulated cameras over real HTTP/SOAP on loopback."""

from __future__ import annotations

import logging
import time

import pytest

from drivers.onvif.client import (
    CameraAuthError,
    CameraNotOnvif,
    CameraProtocolError,
    CameraTimeout,
    CameraUnreachable,
    probe_camera,
)
from drivers.onvif.simulator import CameraFault, CameraSpec, SimulatedProfile
from tests.support.cameras import StartCameras


async def test_probe_reads_identity_services_profiles_and_features(
    start_cameras: StartCameras,
) -> None:
    spec = CameraSpec(
        "gate-north",
        manufacturer="Hanwha",
        model="XNO-6080R",
        firmware="2.21.02_20240131",
        serial="ZH7C6V2K300012",
        hardware_id="XNO-6080R/HW2",
        ptz=True,
        profiles=(
            SimulatedProfile("p0", "main", "H265", 1920, 1080, 30),
            SimulatedProfile("p1", "mobile", "H264", 640, 480, 10),
        ),
    )
    camera = (await start_cameras(spec))["gate-north"]

    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=5)

    assert (probe.manufacturer, probe.model, probe.firmware) == (
        "Hanwha",
        "XNO-6080R",
        "2.21.02_20240131",
    )
    assert (probe.serial, probe.hardware_id, probe.hostname) == (
        "ZH7C6V2K300012",
        "XNO-6080R/HW2",
        "gate-north",
    )
    assert len(probe.mac_addresses) == 1 and probe.mac_addresses[0].count(":") == 5
    assert set(probe.services) == {"device", "media", "events", "ptz"}
    assert probe.services["media"] == f"http://127.0.0.1:{camera.port}/onvif/media_service"
    main, mobile = probe.profiles
    assert (main.token, main.name, main.encoding, main.width, main.height) == (
        "p0",
        "main",
        "H265",
        1920,
        1080,
    )
    assert main.frame_rate == 30
    assert (mobile.encoding, mobile.width, mobile.height) == ("H264", 640, 480)
    assert main.stream_uri == "rtsp://127.0.0.1:554/Streaming/p0"
    assert main.snapshot_uri == f"http://127.0.0.1:{camera.port}/onvif/snapshot/p0.jpg"
    assert probe.snapshot_uri == main.snapshot_uri
    assert probe.supports_ptz and main.ptz
    assert probe.supports_events and probe.supports_pullpoint
    assert set(probe.event_topics) == {
        "RuleEngine/CellMotionDetector/Motion",
        "VideoSource/GlobalSceneChange/ImagingService",
    }
    assert probe.clock_drift_s is not None and abs(probe.clock_drift_s) < 1.5


async def test_features_are_gated_on_what_the_camera_offers(start_cameras: StartCameras) -> None:
    spec = CameraSpec("plain", events=False, ptz=False)
    camera = (await start_cameras(spec))["plain"]

    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password)

    assert set(probe.services) == {"device", "media"}
    assert not probe.supports_ptz
    assert not probe.supports_events and not probe.supports_pullpoint
    assert probe.event_topics == ()
    # Only the operations of offered services were called.
    assert "GetNodes" not in camera.stats.operations
    assert "GetEventProperties" not in camera.stats.operations


async def test_credentials_embedded_in_uris_are_stripped(start_cameras: StartCameras) -> None:
    spec = CameraSpec("leaky", embed_credentials_in_uris=True)
    camera = (await start_cameras(spec))["leaky"]

    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password)

    for profile in probe.profiles:
        assert profile.stream_uri is not None and profile.snapshot_uri is not None
        assert spec.password not in profile.stream_uri + profile.snapshot_uri
        assert "@" not in profile.stream_uri
        assert profile.snapshot_uri.endswith(f"/onvif/snapshot/{profile.token}.jpg")
    assert spec.password not in repr(probe)


async def test_service_addresses_advertised_elsewhere_are_pinned_to_the_camera(
    start_cameras: StartCameras,
) -> None:
    spec = CameraSpec("natted", advertised_host="192.0.2.40")
    camera = (await start_cameras(spec))["natted"]

    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=5)

    assert all(
        url.startswith(f"http://127.0.0.1:{camera.port}/") for url in probe.services.values()
    )
    assert probe.profiles  # the media service was reached through the pinned address


async def test_wrong_password_is_a_terminal_auth_error(start_cameras: StartCameras) -> None:
    spec = CameraSpec("strict")
    camera = (await start_cameras(spec))["strict"]

    with pytest.raises(CameraAuthError) as raised:
        await probe_camera(camera.host, camera.port, spec.username, "not-the-password")

    assert raised.value.retryable is False
    assert "not-the-password" not in str(raised.value)
    assert camera.stats.rejected_tokens >= 1


async def test_camera_that_authenticates_everything_still_probes(
    start_cameras: StartCameras,
) -> None:
    spec = CameraSpec("axis-like", authenticate_everything=True, clock_offset_s=-90)
    camera = (await start_cameras(spec))["axis-like"]

    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password)

    assert probe.model == spec.model
    assert probe.clock_drift_s is not None and abs(probe.clock_drift_s + 90) < 1.5


async def test_wrong_clock_is_not_mistaken_for_wrong_credentials(
    start_cameras: StartCameras,
) -> None:
    # The camera refuses tokens dated more than 30 s from its own clock, which is 2 h off.
    spec = CameraSpec("drifted", clock_offset_s=7200, token_window_s=30)
    camera = (await start_cameras(spec))["drifted"]

    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password)

    assert probe.clock_drift_s is not None and abs(probe.clock_drift_s - 7200) < 1.5
    assert camera.stats.rejected_tokens == 0


async def test_camera_down_is_unreachable(start_cameras: StartCameras) -> None:
    spec = CameraSpec("off", fault=CameraFault.DOWN)
    camera = (await start_cameras(spec))["off"]

    with pytest.raises(CameraUnreachable) as raised:
        await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=2)
    assert raised.value.retryable


@pytest.mark.parametrize("fault", [CameraFault.HUNG, CameraFault.HANG_MID_RESPONSE])
async def test_silent_camera_times_out_within_the_limit(
    start_cameras: StartCameras, fault: CameraFault
) -> None:
    spec = CameraSpec("silent", fault=fault)
    camera = (await start_cameras(spec))["silent"]

    started = time.monotonic()
    with pytest.raises(CameraTimeout) as raised:
        await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=0.8)
    elapsed = time.monotonic() - started

    assert 0.7 < elapsed < 1.5
    assert raised.value.retryable


async def test_malformed_soap_is_a_retryable_protocol_error(start_cameras: StartCameras) -> None:
    spec = CameraSpec("garbled", fault=CameraFault.MALFORMED)
    camera = (await start_cameras(spec))["garbled"]

    with pytest.raises(CameraProtocolError) as raised:
        await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=2)
    assert raised.value.retryable


async def test_web_server_without_onvif_is_not_onvif(start_cameras: StartCameras) -> None:
    spec = CameraSpec("nvr-web-ui", fault=CameraFault.NOT_ONVIF)
    camera = (await start_cameras(spec))["nvr-web-ui"]

    with pytest.raises(CameraNotOnvif) as raised:
        await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=2)
    assert not raised.value.retryable


async def test_credentials_never_reach_the_logs(
    start_cameras: StartCameras, caplog: pytest.LogCaptureFixture
) -> None:
    spec = CameraSpec("chatty", embed_credentials_in_uris=True, password="S3cret-Camera-Pw")
    camera = (await start_cameras(spec))["chatty"]
    caplog.set_level(logging.DEBUG)

    await probe_camera(camera.host, camera.port, spec.username, spec.password)
    with pytest.raises(CameraAuthError):
        await probe_camera(camera.host, camera.port, spec.username, "Wr0ng-Guess-Pw")

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "HTTP Post" in logged  # the transport did log its requests, with bodies elided
    for secret in ("S3cret-Camera-Pw", "Wr0ng-Guess-Pw", "PasswordDigest", "Nonce"):
        assert secret not in logged


async def test_an_unreadable_optional_reply_marks_only_that_feature_unavailable(
    start_cameras: StartCameras,
) -> None:
    # As captured from a real camera: GetSnapshotUri answered with an undeclared SOAP-ENV prefix.
    spec = CameraSpec("odd-snapshot", malformed_replies=frozenset({"GetSnapshotUri"}))
    camera = (await start_cameras(spec))["odd-snapshot"]

    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=5)

    assert probe.serial == spec.serial and len(probe.profiles) == 2
    assert probe.snapshot_uri is None
    assert all(p.stream_uri for p in probe.profiles)
    assert set(probe.unavailable) == {"GetSnapshotUri profile_main", "GetSnapshotUri profile_sub"}
    assert all("SOAP" in reason for reason in probe.unavailable.values()), probe.unavailable


async def test_an_unreadable_required_reply_names_the_call(start_cameras: StartCameras) -> None:
    spec = CameraSpec("odd-profiles", malformed_replies=frozenset({"GetProfiles"}))
    camera = (await start_cameras(spec))["odd-profiles"]

    with pytest.raises(CameraNotOnvif) as raised:
        await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=5)

    assert raised.value.operation == "GetProfiles"
    assert "GetProfiles" in str(raised.value)


TWELVE_YEARS_S = 12 * 365 * 86400.0


async def test_a_camera_that_wants_credentials_for_its_clock_is_dated_by_its_http_date(
    start_cameras: StartCameras,
) -> None:
    # Outside ONVIF Core's PRE_AUTH rule, and twelve years behind: tokens dated on our clock
    # are refused, so the Date header of its refusal dates them on the camera's.
    spec = CameraSpec("strict-old", authenticate_everything=True, clock_offset_s=-TWELVE_YEARS_S)
    camera = (await start_cameras(spec))["strict-old"]

    probe = await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=5)

    assert probe.clock_drift_s is not None and abs(probe.clock_drift_s + TWELVE_YEARS_S) < 2


async def test_a_clock_that_cannot_be_read_is_named_as_the_possible_cause(
    start_cameras: StartCameras,
) -> None:
    spec = CameraSpec(
        "strict-mute",
        authenticate_everything=True,
        http_date=False,
        clock_offset_s=-TWELVE_YEARS_S,
    )
    camera = (await start_cameras(spec))["strict-mute"]

    with pytest.raises(CameraAuthError) as raised:
        await probe_camera(camera.host, camera.port, spec.username, spec.password, timeout=5)

    assert raised.value.clock_suspect is not None and "clock" in raised.value.clock_suspect
    assert "clock" in str(raised.value)
