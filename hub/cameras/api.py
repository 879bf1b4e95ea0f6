"""Camera routes under /api/v1/cameras."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.response import File, Stream

from hub.auth import CurrentUser
from hub.cameras.errors import CameraAlreadyOnboarded
from hub.cameras.schemas import (
    CameraDetail,
    CameraIn,
    CameraPage,
    CandidateOut,
    CredentialsIn,
    DiscoverIn,
    DiscoveryOut,
    HealthStateName,
    NearbyCamerasOut,
)
from hub.cameras.service import CAMERAS, MAX_PAGE, MJPEG_BOUNDARY, CameraService
from hub.devices import StatusName
from hub.runtime import problem, slice_object

UidParam = Annotated[str, PathParameter(max_length=128, description="The camera's uid.")]
StreamParam = Annotated[
    Literal["sub", "main"],
    PathParameter(description="sub: the camera's smallest stream (default); main: its largest."),
]
SegmentParam = Annotated[str, PathParameter(max_length=32, pattern=r"^seg[0-9]{5}\.ts$")]
NO_STORE = {"cache-control": "no-store"}
Cameras: TypeAlias = NamedDependency[CameraService]


def already_onboarded(
    request: Request[Any, Any, Any], exc: CameraAlreadyOnboarded
) -> Response[dict[str, Any]]:
    response = problem(
        request, exc.status, exc.slug, exc.title, exc.detail, [e.as_dict() for e in exc.errors]
    )
    response.content["uid"] = exc.uid
    return response


class CameraController(Controller):
    path = "/api/v1/cameras"
    tags = ["cameras"]
    dependencies = {"cameras": Provide(slice_object(CAMERAS), sync_to_thread=False)}
    exception_handlers = {CameraAlreadyOnboarded: already_onboarded}

    @get("")
    async def list_cameras(
        self,
        principal: CurrentUser,
        cameras: Cameras,
        ward: Annotated[
            list[str] | None, QueryParameter(description="Ward code; repeat for several.")
        ] = None,
        health: FromQuery[HealthStateName | None] = None,
        status: FromQuery[StatusName | None] = None,
        decommissioned: Annotated[
            bool, QueryParameter(description="List decommissioned cameras instead.")
        ] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> CameraPage:
        """Cameras in the wards you serve, filtered by ward, health state or status."""
        return await cameras.list_cameras(
            principal,
            wards=tuple(ward or ()),
            health=health,
            status=status,
            lifecycle="decommissioned" if decommissioned else "active",
            limit=limit,
            cursor=cursor,
        )

    @post("", status_code=201)
    async def onboard(
        self, principal: CurrentUser, cameras: Cameras, data: JSONBody[CameraIn]
    ) -> Response[CameraDetail]:
        """Probe a camera over ONVIF and register it (technicians).

        201: registered. 200: the camera was onboarded already and answered at a new
        address, which is now stored with these credentials. 409: onboarded already at
        this address (`uid` names it). 422 camera-credentials-rejected: wrong username or
        password. 502/504: the camera is unreachable, not ONVIF there, or too slow.
        """
        camera, created = await cameras.onboard(principal, data)
        return Response(camera, status_code=201 if created else 200)

    @get("/candidates")
    async def list_candidates(
        self, principal: CurrentUser, cameras: Cameras, dismissed: FromQuery[bool] = False
    ) -> list[CandidateOut]:
        """Cameras discovered on the network and not onboarded yet (technicians)."""
        return await cameras.list_candidates(principal, include_dismissed=dismissed)

    @post("/candidates/{candidate_id:int}/dismiss", status_code=200)
    async def dismiss_candidate(
        self, principal: CurrentUser, cameras: Cameras, candidate_id: FromPath[int]
    ) -> CandidateOut:
        return await cameras.dismiss_candidate(principal, candidate_id)

    @post("/discover", status_code=200)
    async def discover(
        self, principal: CurrentUser, cameras: Cameras, data: JSONBody[DiscoverIn]
    ) -> DiscoveryOut:
        """WS-Discovery: unicast Probes to the configured and given targets, multicast on
        the configured interfaces. New cameras become candidates; onboarded cameras
        heard at a new address are followed there once they prove to be the same camera."""
        return await cameras.discover(principal, data)

    @get("/near")
    async def near(
        self,
        principal: CurrentUser,
        cameras: Cameras,
        lat: Annotated[float | None, QueryParameter(ge=-90, le=90)] = None,
        lon: Annotated[float | None, QueryParameter(ge=-180, le=180)] = None,
        device: Annotated[str | None, QueryParameter(max_length=128)] = None,
        radius_m: Annotated[float | None, QueryParameter(gt=0, le=50_000)] = None,
        alert: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
    ) -> NearbyCamerasOut:
        """Cameras within `radius_m` (default IOCHUB_CAMERAS__NEAR_RADIUS_M, 300 m) of a map
        point (`lat`, `lon`), of a device, or of an alert's device, nearest first, in the
        wards you serve."""
        return await cameras.nearby(
            principal,
            latitude=lat,
            longitude=lon,
            device_uid=device,
            radius_m=radius_m,
            alert_id=alert,
        )

    @get("/{uid:str}/live/{stream:str}/index.m3u8", media_type="application/vnd.apple.mpegurl")
    async def live_playlist(
        self, principal: CurrentUser, cameras: Cameras, uid: UidParam, stream: StreamParam
    ) -> Response[bytes]:
        """The live view as HLS: starts the camera's stream on demand (remuxed, not
        transcoded, when it is H.264) and waits for its first segment. 503
        camera-stream-limit: the hub streams as many cameras as it may; 502/504: the camera
        cannot stream (the detail says its last health state)."""
        playlist = await cameras.live_playlist(principal, uid, stream)
        return Response(playlist, media_type="application/vnd.apple.mpegurl", headers=NO_STORE)

    @get("/{uid:str}/live/{stream:str}/{segment:str}", media_type="video/mp2t")
    async def live_segment(
        self,
        principal: CurrentUser,
        cameras: Cameras,
        uid: UidParam,
        stream: StreamParam,
        segment: SegmentParam,
    ) -> File:
        """One MPEG-TS segment of a running live view."""
        path = await cameras.live_segment(principal, uid, stream, segment)
        return File(
            path, media_type="video/mp2t", headers=NO_STORE, content_disposition_type="inline"
        )

    @get(
        "/{uid:str}/live.mjpeg", media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}"
    )
    async def live_mjpeg(
        self,
        principal: CurrentUser,
        cameras: Cameras,
        uid: UidParam,
        fps: Annotated[float | None, QueryParameter(ge=1, le=2)] = None,
    ) -> Stream:
        """The fallback live view for any ONVIF camera: snapshots as multipart MJPEG at
        `fps` (1 to 2; default IOCHUB_CAMERAS__MJPEG_FPS)."""
        frames = await cameras.mjpeg(principal, uid, fps or cameras.settings.mjpeg_fps)
        return Stream(
            frames,
            media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            headers=NO_STORE,
        )

    @get("/{uid:str}")
    async def get_camera(
        self, principal: CurrentUser, cameras: Cameras, uid: UidParam
    ) -> CameraDetail:
        """Identity, profiles (stream URIs without credentials), capabilities, health, events."""
        return await cameras.get_camera(principal, uid)

    @get("/{uid:str}/snapshot", media_type="image/jpeg")
    async def snapshot(
        self, principal: CurrentUser, cameras: Cameras, uid: UidParam
    ) -> Response[bytes]:
        """The camera's current image, fetched by the hub (which alone holds its password)."""
        image = await cameras.snapshot(principal, uid)
        return Response(
            image.content,
            media_type=image.content_type,
            headers={"cache-control": "no-store"},
        )

    @post("/{uid:str}/probe", status_code=200)
    async def reprobe(
        self, principal: CurrentUser, cameras: Cameras, uid: UidParam
    ) -> CameraDetail:
        """Read the camera again (firmware, profiles, features) with its stored credentials."""
        return await cameras.reprobe(principal, uid)

    @put("/{uid:str}/credentials")
    async def update_credentials(
        self,
        principal: CurrentUser,
        cameras: Cameras,
        uid: UidParam,
        data: JSONBody[CredentialsIn],
    ) -> CameraDetail:
        """Replace the camera's credentials; they are stored only once the camera accepts them."""
        return await cameras.update_credentials(principal, uid, data)

    @delete("/{uid:str}", status_code=200)
    async def decommission(
        self, principal: CurrentUser, cameras: Cameras, uid: UidParam
    ) -> CameraDetail:
        """Decommission the camera in the registry (history kept) and drop its password."""
        return await cameras.decommission(principal, uid)
