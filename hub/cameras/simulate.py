"""`iochub simulate cameras`: simulated ONVIF cameras on loopback, optionally onboarded."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from drivers.onvif.simulator import STREAMING_PROFILES, CameraSimulator, fleet
from hub.auth import Principal, Role
from hub.cameras.errors import CameraAlreadyOnboarded
from hub.cameras.schemas import CameraIn
from hub.cameras.service import CameraService
from hub.cameras.settings import CameraSettings
from hub.runtime import CoreSettings
from hub.storage import database

SIMULATION = Principal(user_id=0, username="simulate", role=Role.ADMIN, ward_ids=None, via="token")


async def run_camera_simulation(
    count: int,
    *,
    host: str = "127.0.0.1",
    username: str = "admin",
    password: str | None = None,
    register_ward: str | None = None,
    settings: CoreSettings | None = None,
    rtsp: bool = False,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``count`` cameras until cancelled or ``stop`` is set, printing how to reach
    them and their credentials (they are simulated); ``password`` defaults to the simulator's.

    With ``register_ward`` (a ward code) and ``settings``, each camera is also onboarded
    into the hub's database in that ward, exactly as a technician would; running again
    recognises the cameras (same serials) and moves them to their new ports. With
    ``rtsp``, each camera streams H.264 over RTSP (ffmpeg encodes while someone watches),
    so that the hub's live views show it.
    """
    if register_ward is not None and settings is None:
        raise ValueError("registering simulated cameras needs the hub's settings")
    specs = fleet(count, username=username, **({"password": password} if password else {}))
    for spec in specs if rtsp else []:
        spec.rtsp, spec.profiles = True, STREAMING_PROFILES
    shared_password = specs[0].password if specs else ""
    async with CameraSimulator(specs, host=host) as simulator:
        discovery_port = await simulator.start_discovery()
        uids: dict[str, str] = {}
        if register_ward is not None and settings is not None:
            uids = await _register(simulator, register_ward, settings, username, shared_password)
        print(
            f"{count} simulated ONVIF cameras on {host} (user {username!r}, password {shared_password!r})",
            file=out,
        )
        for camera in simulator.cameras.values():
            registered = f"  {uids[camera.name]}" if camera.name in uids else ""
            print(
                f"  {camera.name}  {camera.host}:{camera.port}  {camera.endpoint_ref}"
                f"  serial {camera.spec.serial}{registered}",
                file=out,
            )
        print(
            f"WS-Discovery answers on {host}:{discovery_port}: POST /api/v1/cameras/discover "
            f'{{"targets": ["{host}:{discovery_port}"]}}',
            file=out,
            flush=True,
        )
        await (stop or asyncio.Event()).wait()


async def _register(
    simulator: CameraSimulator, ward: str, settings: CoreSettings, username: str, password: str
) -> dict[str, str]:
    db = await database.connect(settings.database.url.get_secret_value(), max_size=4)
    try:
        service = CameraService(db.pool, settings.secret_box(), settings.group(CameraSettings))
        uids = {}
        for camera in simulator.cameras.values():
            request = CameraIn(
                username=username,
                password=password,
                ward=ward,
                host=camera.host,
                port=camera.port,
                name=camera.name,
            )
            try:
                detail, _ = await service.onboard(SIMULATION, request)
                uids[camera.name] = detail.uid
            except CameraAlreadyOnboarded as known:
                uids[camera.name] = known.uid
        return uids
    finally:
        await db.close()
