"""The console's map: every device the person may see, by kind and status, clustered, over
the ward outlines the registry keeps; Leaflet served by the hub itself.

Tiles come from the IOC's own tile server when one is set (IOCHUB_CONSOLE__TILE_URL);
without one the map draws the outlines and the devices on a plain background, and fetches
nothing from anywhere.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromQuery
from litestar.response import Template

from hub.auth import CurrentUser, Principal
from hub.devices import registry
from hub.runtime import runtime_of
from hub.web import words
from hub.web.i18n import gettext_for
from hub.web.settings import ConsoleSettings
from hub.web.words import _

KINDS = ("speaker", "camera", "sensor")
# Worst first: a cluster takes the colour of the worst status among its devices.
STATUSES = ("offline", "degraded", "late", "maintenance", "unknown", "online")
# Where the map opens when nothing has a place yet: Ngô Quyền district, Hải Phòng.
DEFAULT_VIEW = {"latitude": 20.856, "longitude": 106.697, "zoom": 14}
# The hub's own policy (hub.server.security), with the tile server's origin for images.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:{tiles}; media-src 'self' blob:; worker-src 'self' blob:; "
    "frame-ancestors 'none'"
)


def chosen(value: str, allowed: tuple[str, ...]) -> str:
    """A filter from the URL: one of the allowed values, else no filter."""
    return value if value in allowed else ""


async def map_data(
    request: Request[Any, Any, Any], principal: Principal, kind: str, status: str, ward: str
) -> dict[str, Any]:
    devices = registry.scoped(principal).filter(latitude__isnull=False)
    if kind:
        devices = devices.filter(kind=kind)
    if status:
        devices = devices.filter(status=status)
    if ward:
        devices = devices.filter(ward__code=ward)
    rows = await devices.order_by("uid").values_list(
        "uid", "name", "kind", "status", "latitude", "longitude"
    )
    settings = runtime_of(request).settings.group(ConsoleSettings)
    return {
        "devices": [
            {"uid": u, "name": n, "kind": k, "status": s, "lat": la, "lon": lo}
            for u, n, k, s, la, lo in rows
        ],
        "wards": {"type": "FeatureCollection", "features": await registry.ward_features(principal)},
        "tiles": (
            {
                "url": settings.tile_url,
                "attribution": settings.tile_attribution,
                "max_zoom": settings.tile_max_zoom,
            }
            if settings.tile_url
            else None
        ),
        "view": DEFAULT_VIEW,
        "statuses": list(STATUSES),
        "words": {
            "status": {
                s: gettext_for(request, words.word(words.STATUS_WORDS, s)) for s in STATUSES
            },
            "kind": {k: gettext_for(request, words.word(words.KIND_WORDS, k)) for k in KINDS},
            "open": gettext_for(request, _("Open the device's page")),
            "live": gettext_for(request, _("Live view")),
        },
    }


class MapConsoleController(Controller):
    include_in_schema = False

    @get("/map")
    async def map_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        kind: FromQuery[str] = "",
        status: FromQuery[str] = "",
        ward: FromQuery[str] = "",
        focus: FromQuery[str] = "",
    ) -> Template:
        filters = {
            "kind": chosen(kind, KINDS),
            "status": chosen(status, STATUSES),
            "ward": ward if ward.replace("-", "").isalnum() else "",
        }
        data = await map_data(request, principal, **filters)
        data["focus"] = focus[:128]
        counts = Counter(d["status"] for d in data["devices"])
        settings = runtime_of(request).settings.group(ConsoleSettings)
        origin = settings.tile_origin()
        return Template(
            "map.html",
            context={
                "principal": principal,
                "data": data,
                "filters": filters,
                "kinds": KINDS,
                "statuses": STATUSES,
                "counts": counts,
                "kind_counts": Counter(d["kind"] for d in data["devices"]),
                "wards": await registry.list_wards(principal),
                "words": words,
                "tiles": settings.tile_url,
                "attribution": settings.tile_attribution,
            },
            headers={"content-security-policy": CSP.format(tiles=f" {origin}" if origin else "")},
        )
