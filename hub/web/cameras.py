"""Console pages for seeing a place: a camera's live view, and an alert with the live views
of the cameras nearest to it, side by side.

The players fetch the HLS playlist (or the MJPEG fallback) from the camera API, which
enforces roles and ward scope; these pages only lay them out with the camera's health.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get
from litestar.params import FromPath
from litestar.response import Template

from hub.alerts import ALERTS
from hub.auth import CurrentUser, Permission
from hub.cameras import CAMERAS, CameraService
from hub.runtime import runtime_of

LOCAL_TIME = ZoneInfo("Asia/Ho_Chi_Minh")
PLAYERS_PER_ALERT = 4  # side by side on one screen; the cap on streams may allow fewer


def _cameras(request: Request[Any, Any, Any]) -> CameraService:
    return runtime_of(request).get(CAMERAS)


class CameraConsoleController(Controller):
    path = "/"
    include_in_schema = False

    @get("/cameras/{uid:str}")
    async def camera_page(
        self, request: Request[Any, Any, Any], principal: CurrentUser, uid: FromPath[str]
    ) -> Template:
        cameras = _cameras(request)
        camera = await cameras.get_camera(principal, uid)
        near = []
        if camera.latitude is not None and camera.longitude is not None:
            near = (
                await cameras.nearby(
                    principal,
                    latitude=camera.latitude,
                    longitude=camera.longitude,
                    device_uid=uid,
                    radius_m=None,
                )
            ).items
        return Template(
            "camera.html", context={"principal": principal, "camera": camera, "nearby": near}
        )

    @get("/alerts/{alert_id:int}")
    async def alert_page(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> Template:
        principal.require(Permission.DEVICES_READ)
        # The alert as the API gives it, with the cameras nearest its device.
        alert = await runtime_of(request).get(ALERTS).get(principal, alert_id)
        near = alert.nearby_cameras
        players = [
            {
                "uid": camera.uid,
                "name": f"{camera.name or camera.uid} · {round(camera.distance_m)} m",
                "snapshot": camera.links.snapshot,
                "health": {"state": camera.health},
            }
            for camera in near[:PLAYERS_PER_ALERT]
        ]
        return Template(
            "alert.html",
            context={
                "principal": principal,
                "alert": alert,
                "players": players,
                "tz": LOCAL_TIME,
            },
        )
