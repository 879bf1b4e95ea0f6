"""The technician's home page: how many devices stand where (ward × kind × status), and
every device in the caller's wards, the unhealthy first, with why and since when.

Filters and the search stay in the URL, so a filtered list can be shared and reloaded; the
live script (static/ops-live.js) re-reads this page when a device's status moves.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import Template

from hub.auth import CurrentUser
from hub.devices import registry
from hub.errors import NotFound
from hub.health import STATUS_ORDER, BoardQuery, board_counts, health_board
from hub.runtime import runtime_of

PAGE_SIZE = 100
KINDS = ("camera", "speaker", "sensor")
NO_WARD = ""


def filter_link(**filters: str) -> str:
    """The home page with these filters (empty ones left out)."""
    shown = {k: v for k, v in filters.items() if v}
    return "/?" + urlencode(shown) if shown else "/"


class HomeController(Controller):
    include_in_schema = False

    @get("/")
    async def devices_page(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        kind: Annotated[str, QueryParameter(max_length=32)] = "",
        ward: Annotated[str, QueryParameter(max_length=32)] = "",
        status: Annotated[str, QueryParameter(max_length=32)] = "",
        q: Annotated[str, QueryParameter(max_length=200)] = "",
        page: Annotated[int, QueryParameter(ge=1, le=10_000)] = 1,
    ) -> Template:
        pool = runtime_of(request).database.pool
        directory = await registry.WardDirectory.load()
        wards = await registry.list_wards(principal)
        ward_id = None
        if ward:
            if ward not in {w.code for w in wards}:
                raise NotFound(f"no ward {ward!r}")
            ward_id = directory.by_code[ward].id
        query = BoardQuery(kind or None, ward_id, status or None, q or None)
        rows, more = await health_board(pool, principal, query, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        counts = await board_counts(pool, principal)

        by_status: Counter[str] = Counter()
        by_kind: Counter[str] = Counter()
        # ward code -> kind -> status -> devices
        grid: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        for count in counts:
            by_status[count.status] += count.devices
            by_kind[count.kind] += count.devices
            code = directory.code(count.ward_id) or NO_WARD
            grid[code][count.kind][count.status] += count.devices
        ward_rows = [(w.code, w.name) for w in wards if w.code in grid]
        if NO_WARD in grid:
            ward_rows.append((NO_WARD, ""))
        filters = {"kind": kind, "ward": ward, "status": status, "q": q}
        return Template(
            "devices.html",
            context={
                "principal": principal,
                "rows": rows,
                "wards": wards,
                "ward_names": {w.code: w.name for w in wards},
                "ward_codes": {w.id: w.code for w in directory.by_id.values()},
                "ward_rows": ward_rows,
                "grid": grid,
                "counts": by_status,
                "kinds": by_kind,
                "kind_names": KINDS,
                "statuses": STATUS_ORDER,
                "filters": filters,
                "filter_link": filter_link,
                "page": page,
                "first_rank": (page - 1) * PAGE_SIZE,
                "next_link": filter_link(**filters, page=str(page + 1)) if more else None,
                "previous_link": (
                    filter_link(**filters, page=str(page - 1) if page > 2 else "")
                    if page > 1
                    else None
                ),
                "total": sum(by_kind.values()),
                "now": datetime.now(UTC),
            },
        )
