"""The cameras that can see a place: nearest first within a radius, with links to watch them.

Other slices use this for an alert's `nearby_cameras` and its webhook payload; the radius
and the hub's public address are set once by the camera slice's wiring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from hub.cameras import store
from hub.cameras.schemas import CameraLinks, NearbyCameraOut


class NearbyDefaults:
    """Set once by hub.cameras.wiring: IOCHUB_CAMERAS__NEAR_RADIUS_M and the public URL."""

    radius_m: float = 300.0
    base_url: str = ""


DEFAULTS = NearbyDefaults()


def links(uid: str, *, has_snapshot: bool, base_url: str = "") -> CameraLinks:
    api = f"{base_url}/api/v1/cameras/{uid}"
    return CameraLinks(
        view=f"{base_url}/cameras/{uid}",
        hls=f"{api}/live/sub/index.m3u8",
        mjpeg=f"{api}/live.mjpeg" if has_snapshot else None,
        snapshot=f"{api}/snapshot" if has_snapshot else None,
    )


def nearby_out(camera: store.NearbyCamera, base_url: str = "") -> NearbyCameraOut:
    return NearbyCameraOut(
        uid=camera.uid,
        name=camera.name,
        ward=camera.ward,
        latitude=camera.latitude,
        longitude=camera.longitude,
        distance_m=round(camera.distance_m, 1),
        status=camera.status,
        health=camera.health_state,  # type: ignore[arg-type]
        links=links(camera.uid, has_snapshot=camera.has_snapshot, base_url=base_url),
    )


async def near_device(
    conn: store.Queryable,
    device_uid: str,
    *,
    ward_ids: Sequence[int] | None = None,
    radius_m: float | None = None,
    base_url: str = "",
) -> list[NearbyCameraOut]:
    """Cameras near a registered device (the device itself left out); [] if it has no place."""
    place = await store.location_of(conn, device_uid)
    if place is None:
        return []
    found = await store.cameras_near(
        conn,
        *place,
        radius_m or DEFAULTS.radius_m,
        ward_ids=ward_ids,
        exclude_uid=device_uid,
    )
    return [nearby_out(camera, base_url) for camera in found]


async def webhook_nearby(conn: store.Queryable, device_uid: str) -> list[dict[str, Any]]:
    """What an alert's webhook payload says of the cameras near its device: absolute links."""
    found = await near_device(conn, device_uid, base_url=DEFAULTS.base_url)
    return [msgspec.to_builtins(camera) for camera in found]
