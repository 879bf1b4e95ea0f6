"""`iochub simulate ...`: the district's devices on the wire, for the demo and for trials.

The fleet is the demo fleet (hub.devices.fleet); per-device broker credentials come from
a JSON file {uid: secret} (the demo writes one), so simulated devices log in as themselves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from drivers.sensors.simulator import (
    AIR_METRICS,
    HYDRO_METRICS,
    PayloadStyle,
    SimulatedSensor,
    run_sensor_fleet,
)
from drivers.speaker.simulator import SimulatorConfig, SpeakerSpec, run_speaker_fleet
from hub.devices.fleet import demo_fleet

NOISE_METRICS = ("noise", "temperature", "humidity")
# Two sensors misbehave, so the demo's alert rules have something to say within minutes: one
# air station stands beside a building site (PM2.5 well above VN_AQI "Kém" most of the
# day), one noise meter's firmware hangs (it connects, then says nothing: offline).
BESIDE_A_BUILDING_SITE = "aq-may-chai-01"
BUILDING_SITE = 3.0
HUNG_SENSOR = "ns-may-to-01"
# Three cameras misbehave as cameras in the field do, in three wards, so camera health and
# its alerts have something to tell.
HUNG_CAMERA = "cam-may-chai-09"  # accepts TCP, never answers
SKEWED_CAMERA = "cam-van-my-04"  # its clock three hours off: WS-Security refuses its tokens
LOCKED_CAMERA = "cam-cau-tre-07"  # its password changed on the camera, not in the hub


def read_credentials(path: Path | None) -> Mapping[str, str]:
    if path is None:
        return {}
    data = json.loads(path.read_text())
    return {str(uid): str(secret) for uid, secret in data.items()}


def sensor_fleet(credentials: Mapping[str, str], coap_every: int = 0) -> list[SimulatedSensor]:
    sensors = []
    for n, device in enumerate(d for d in demo_fleet().devices if d.kind == "sensor"):
        prefix = device.uid.split("-", 1)[0]
        metrics = {"wl": HYDRO_METRICS, "ns": NOISE_METRICS}.get(prefix, AIR_METRICS)
        # A mix of payload styles, as a real district has several vendors.
        style = (PayloadStyle.SENML_JSON, PayloadStyle.JSON, PayloadStyle.SENML_CBOR)[n % 3]
        secret = credentials.get(device.uid)
        sensors.append(
            SimulatedSensor(
                device.uid,
                device.ward or "",
                device.latitude or 0.0,
                device.longitude or 0.0,
                metrics,
                style=style,
                username=device.uid if secret else None,
                password=secret,
                model=device.model,
                firmware_version=device.firmware_version,
                pollution_source=BUILDING_SITE if device.uid == BESIDE_A_BUILDING_SITE else 1.0,
                silent=device.uid == HUNG_SENSOR,
            )
        )
    return sensors


async def simulate_sensors(
    host: str,
    port: int,
    credentials: Mapping[str, str],
    *,
    interval: float,
    time_scale: float,
    malformed: float,
) -> None:
    fleet = sensor_fleet(credentials)
    await run_sensor_fleet(
        fleet,
        host,
        port,
        interval=interval,
        time_scale=time_scale,
        malformed_share=malformed,
        dedicated_connections=bool(credentials),
    )


async def simulate_speakers(
    host: str, port: int, credentials: Mapping[str, str], *, speed: float, status_interval: float
) -> None:
    specs = []
    for device in demo_fleet().devices:
        if device.kind != "speaker":
            continue
        secret = credentials.get(device.uid)
        specs.append(
            SpeakerSpec(
                device.uid,
                device.ward or "",
                device.uid if secret else None,
                secret,
                firmware_version=device.firmware_version,
                model=device.model,
            )
        )
    config = SimulatorConfig(host=host, port=port, speed=speed, status_interval_s=status_interval)
    await run_speaker_fleet(specs, config)
