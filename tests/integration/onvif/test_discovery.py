"""WS-Discovery by unicast UDP Probes to simulated cameras on loopback."""

from __future__ import annotations

from drivers.contract import DeviceKind
from drivers.onvif.discovery import discover, scope_value
from drivers.onvif.simulator import CameraFault, CameraSpec, DiscoveryQuirk
from tests.support.cameras import StartCameras

LOOPBACK = ["127.0.0.0/8"]


async def test_unicast_probe_finds_cameras_with_their_endpoint_refs(
    start_cameras: StartCameras,
) -> None:
    simulator = await start_cameras(
        CameraSpec("cam-1", location="vn/hcm/district-1/ward-ben-nghe"),
        CameraSpec("cam-2"),
        CameraSpec("cam-off", fault=CameraFault.DOWN),
    )
    port = await simulator.start_discovery()

    report = await discover(
        allowed_subnets=LOOPBACK, unicast_targets=[f"127.0.0.1:{port}"], wait=0.3
    )

    found = {d.endpoint_ref: d for d in report.found}
    assert set(found) == {simulator["cam-1"].endpoint_ref, simulator["cam-2"].endpoint_ref}
    first = found[simulator["cam-1"].endpoint_ref]
    assert first.kind is DeviceKind.CAMERA
    assert first.addresses == (simulator["cam-1"].xaddr,)
    assert scope_value(first.scopes, "location") == "vn/hcm/district-1/ward-ben-nghe"
    assert scope_value(first.scopes, "name") == "cam-1"
    assert scope_value(first.scopes, "hardware") == simulator["cam-1"].spec.model
    assert first.time is not None and first.time.tzinfo is not None
    assert report.filtered == () and report.skipped == ()


async def test_quirky_replies_are_read_and_garbage_is_skipped(start_cameras: StartCameras) -> None:
    quirks = [
        frozenset({DiscoveryQuirk.ODD_PREFIXES}),
        frozenset({DiscoveryQuirk.NO_MATCHES_WRAPPER, DiscoveryQuirk.NO_RELATES_TO}),
        frozenset({DiscoveryQuirk.BARE_ADDRESS, DiscoveryQuirk.SOAP11}),
        frozenset({DiscoveryQuirk.GARBAGE_FIRST}),
    ]
    simulator = await start_cameras(
        *(CameraSpec(f"quirky-{i}", discovery_quirks=q) for i, q in enumerate(quirks))
    )
    port = await simulator.start_discovery()

    report = await discover(
        allowed_subnets=LOOPBACK, unicast_targets=[f"127.0.0.1:{port}"], wait=0.3
    )

    assert {d.endpoint_ref for d in report.found} == {
        c.endpoint_ref for c in simulator.cameras.values()
    }
    assert all(len(d.addresses) == 1 and len(d.scopes) == 5 for d in report.found)
    [skipped] = report.skipped
    assert skipped.sender == "127.0.0.1" and skipped.reason.startswith("not XML")


async def test_addresses_outside_the_configured_subnets_are_not_followed(
    start_cameras: StartCameras,
) -> None:
    simulator = await start_cameras(
        CameraSpec("dual-homed", discovery_quirks=frozenset({DiscoveryQuirk.FOREIGN_XADDR})),
        CameraSpec("elsewhere", advertised_host="198.51.100.7"),
    )
    port = await simulator.start_discovery()

    report = await discover(
        allowed_subnets=LOOPBACK, unicast_targets=[f"127.0.0.1:{port}"], wait=0.3
    )

    [dual] = report.found  # the camera advertising only a foreign address is not offered
    assert dual.endpoint_ref == simulator["dual-homed"].endpoint_ref
    assert dual.addresses == (simulator["dual-homed"].xaddr,)
    assert {(f.endpoint_ref, f.xaddr, f.reason) for f in report.filtered} == {
        (
            simulator["dual-homed"].endpoint_ref,
            "http://192.0.2.77/onvif/device_service",
            "outside the configured subnets",
        ),
        (
            simulator["elsewhere"].endpoint_ref,
            simulator["elsewhere"].xaddr,
            "outside the configured subnets",
        ),
    }


async def test_a_camera_that_moves_keeps_its_endpoint_ref(start_cameras: StartCameras) -> None:
    simulator = await start_cameras(CameraSpec("roamer"))
    camera = simulator["roamer"]
    port = await simulator.start_discovery()
    probe_targets = [f"127.0.0.1:{port}"]

    [before] = (
        await discover(allowed_subnets=LOOPBACK, unicast_targets=probe_targets, wait=0.2)
    ).found
    await camera.move(host="127.0.0.3")  # new address and port after a DHCP renewal
    [after] = (
        await discover(allowed_subnets=LOOPBACK, unicast_targets=probe_targets, wait=0.2)
    ).found

    assert after.endpoint_ref == before.endpoint_ref == camera.endpoint_ref
    assert before.addresses != after.addresses
    assert after.addresses == (f"http://127.0.0.3:{camera.port}/onvif/device_service",)


async def test_a_camera_plugged_in_later_answers_the_next_probe(
    start_cameras: StartCameras,
) -> None:
    simulator = await start_cameras(CameraSpec("first"))
    port = await simulator.start_discovery()
    probe_targets = [f"127.0.0.1:{port}"]
    before = await discover(allowed_subnets=LOOPBACK, unicast_targets=probe_targets, wait=0.2)

    newcomer = await simulator.add(CameraSpec("newcomer"))
    after = await discover(allowed_subnets=LOOPBACK, unicast_targets=probe_targets, wait=0.2)

    assert newcomer.endpoint_ref not in {d.endpoint_ref for d in before.found}
    assert {d.endpoint_ref for d in after.found} == {
        simulator["first"].endpoint_ref,
        newcomer.endpoint_ref,
    }


async def test_probing_a_subnet_reaches_each_host(start_cameras: StartCameras) -> None:
    simulator = await start_cameras(CameraSpec("in-range"))
    port = await simulator.start_discovery()

    # 127.0.0.1-6: only .1 answers; the others are silent or refuse, and are no error.
    report = await discover(
        allowed_subnets=LOOPBACK, unicast_targets=["127.0.0.0/29"], port=port, wait=0.3
    )

    assert [d.endpoint_ref for d in report.found] == [simulator["in-range"].endpoint_ref]
    assert simulator.probes_answered == 1
