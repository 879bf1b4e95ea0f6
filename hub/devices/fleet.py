"""The demo fleet of Ngô Quyền district (Hải Phòng): 8 wards, 272 speakers, 86 cameras,
120 environmental sensors, at plausible coordinates around each ward's centre. The demo
registers the sensors and speakers; its cameras enter the registry by being onboarded over
ONVIF, as installed cameras do (hub.server.demo.demo_cameras)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hub.devices.boundaries import hull_outline
from hub.devices.schemas import DeviceIn

# (code, name, latitude, longitude of the ward's centre)
WARDS: tuple[tuple[str, str, float, float], ...] = (
    ("may-chai", "Máy Chai", 20.8675, 106.6965),
    ("may-to", "Máy Tơ", 20.8642, 106.6880),
    ("van-my", "Vạn Mỹ", 20.8590, 106.7135),
    ("cau-tre", "Cầu Tre", 20.8560, 106.7030),
    ("lac-vien", "Lạc Viên", 20.8600, 106.6935),
    ("gia-vien", "Gia Viên", 20.8545, 106.6860),
    ("dong-khe", "Đông Khê", 20.8495, 106.6965),
    ("lach-tray", "Lạch Tray", 20.8430, 106.6915),
)
SPEAKERS_PER_WARD = 34  # 272 in all, as installed in 8/8 wards
CAMERAS = 86
SENSORS_PER_WARD = (("aq", 8, "air"), ("wl", 3, "water"), ("ns", 4, "noise"))  # 15 per ward
OUTLINE_MARGIN_DEG = 0.0006  # about 65 m beyond the outermost device


@dataclass(frozen=True, slots=True)
class Fleet:
    wards: tuple[tuple[str, str], ...]
    devices: tuple[DeviceIn, ...]

    def outlines(self) -> dict[str, dict[str, Any]]:
        """Each ward's outline for the demo's map. APPROXIMATE, not the wards' official
        boundaries: the convex hull of the ward's devices, a little beyond the outermost
        (the demo's devices are scattered around each ward's centre, so outlines overlap)."""
        points: dict[str, list[tuple[float, float]]] = {}
        for d in self.devices:
            if d.ward and d.latitude is not None and d.longitude is not None:
                points.setdefault(d.ward, []).append((d.longitude, d.latitude))
        outlines = {}
        for code, found in points.items():
            outline = hull_outline(found, OUTLINE_MARGIN_DEG)
            if outline is not None:
                outlines[code] = outline
        return outlines


def demo_fleet(seed: int = 2025) -> Fleet:
    rng = random.Random(seed)
    devices: list[DeviceIn] = []

    def near(lat: float, lon: float, spread: float = 0.0035) -> tuple[float, float]:
        return round(lat + rng.uniform(-spread, spread), 6), round(
            lon + rng.uniform(-spread, spread), 6
        )

    for index, (code, name, lat, lon) in enumerate(WARDS):
        for n in range(1, SPEAKERS_PER_WARD + 1):
            la, lo = near(lat, lon)
            devices.append(
                DeviceIn(
                    uid=f"spk-{code}-{n:03d}",
                    kind="speaker",
                    name=f"Loa {name} {n:02d}",
                    serial=f"SPK{index:02d}{n:04d}",
                    vendor="VNPT Technology",
                    model="IP Speaker S30",
                    firmware_version=rng.choice(["2.3.1", "2.3.1", "2.4.0", "2.2.7"]),
                    ward=code,
                    latitude=la,
                    longitude=lo,
                    tags=["public-address"],
                )
            )
        for prefix, count, tag in SENSORS_PER_WARD:
            for n in range(1, count + 1):
                la, lo = near(lat, lon)
                model = {"aq": "AQM-65", "wl": "WL-Radar 20", "ns": "NSM-1"}[prefix]
                devices.append(
                    DeviceIn(
                        uid=f"{prefix}-{code}-{n:02d}",
                        kind="sensor",
                        name=f"{tag.title()} {name} {n}",
                        serial=f"{prefix.upper()}{index:02d}{n:04d}",
                        vendor="Envitech",
                        model=model,
                        firmware_version=rng.choice(["1.8.0", "1.9.2"]),
                        ward=code,
                        latitude=la,
                        longitude=lo,
                        tags=[tag],
                    )
                )
    for n in range(1, CAMERAS + 1):
        code, name, lat, lon = WARDS[(n - 1) % len(WARDS)]
        la, lo = near(lat, lon, 0.004)
        vendor, model, firmware = rng.choice(
            [
                ("Hikvision", "DS-2CD2T47G2-L", "V5.7.3"),
                ("Dahua", "IPC-HFW5442E-ZE", "V2.840.0000000.18"),
                ("Hanwha", "XNO-6080R", "2.10.02"),
            ]
        )
        devices.append(
            DeviceIn(
                uid=f"cam-{code}-{(n - 1) // len(WARDS) + 1:02d}",
                kind="camera",
                name=f"Camera {name} {(n - 1) // len(WARDS) + 1}",
                serial=f"CAM{n:05d}",
                vendor=vendor,
                model=model,
                firmware_version=firmware,
                ward=code,
                latitude=la,
                longitude=lo,
                endpoint=f"http://10.20.{n // 250}.{n % 250 + 1}/onvif/device_service",
                tags=["traffic" if n % 3 else "security"],
            )
        )
    return Fleet(wards=tuple((code, name) for code, name, _, _ in WARDS), devices=tuple(devices))
