"""Prometheus at /metrics: HTTP, database pool and broker link figures beside the iochub_* ones.

Prometheus scrapes with a token of its own (``IOCHUB_METRICS__SCRAPE_TOKEN``, sent as
``Authorization: Bearer``) or from an allow-listed address (``IOCHUB_METRICS__ALLOW_FROM``),
so no person's API token has to sit in its configuration. A person's token or console
session still works, for a look by hand.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import asyncpg
from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr

from drivers.sensors.mqtt import SensorMqttDriver
from hub.auth.middleware import HubAuthentication
from hub.broadcasts.dispatch import SPEAKERS
from hub.runtime import HubRuntime, RuntimeKey, runtime_of

# Request latencies of a console page or an API call: 5 ms to 10 s.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsSettings(BaseModel):
    scrape_token: SecretStr | None = Field(
        None, description="Bearer token that may read /metrics and nothing else (Prometheus)."
    )
    allow_from: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Addresses (CIDR) that may read /metrics without a token, e.g. 10.0.5.0/24.",
    )


UNMATCHED_ROUTE = "unmatched"
HTTP_REQUESTS = Counter(
    "iochub_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "iochub_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response.",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("iochub_http_requests_in_flight", "HTTP requests being answered.")


class HttpMetrics:
    """ASGI middleware around the whole application, so answers that the authentication
    middleware or the error mapping make (401, 403, problem+json) count with their real
    status. The route is the template the router matched (``/api/v1/devices/{uid}``), never
    the raw path, so a label cannot grow with device uids or scanners' guesses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before starting a response

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_counted)
        finally:
            HTTP_IN_FLIGHT.dec()
            path = scope.get("path", "")
            if not path.startswith("/static/"):
                labels = (
                    scope["method"],
                    scope.get("path_template") or UNMATCHED_ROUTE,
                    str(status),
                )
                HTTP_REQUESTS.labels(*labels).inc()
                HTTP_SECONDS.labels(*labels).observe(time.perf_counter() - started)


def scrape_allowed(settings: MetricsSettings, authorization: str, client: str | None) -> bool:
    """The scrape token, or an allow-listed address; compared in constant time."""
    scheme, _, credentials = authorization.partition(" ")
    token = settings.scrape_token.get_secret_value() if settings.scrape_token else ""
    given = credentials.strip().encode()
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given, token.encode()):
        return True
    if client and settings.allow_from:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in settings.allow_from)
    return False


_people = HubAuthentication(app=None)  # type: ignore[arg-type]  # only its check is used


async def scraper_or_person(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard of /metrics: Prometheus' own credentials, else a person's token or session."""
    settings = runtime_of(connection).settings.group(MetricsSettings)
    client = connection.client.host if connection.client else None
    if scrape_allowed(settings, connection.headers.get("authorization", ""), client):
        return
    await _people.authenticate_request(connection)  # raises NotAuthenticated (401) otherwise


@get(
    "/metrics",
    tags=["health"],
    media_type=CONTENT_TYPE_LATEST,
    include_in_schema=False,
    exclude_from_auth=True,  # authenticated by its guard: see scraper_or_person
    guards=[scraper_or_person],
)
async def prometheus_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _LiveGauges(Collector):
    """Gauges read when Prometheus scrapes: the database pool, the broker links.

    Sources belong to the running hub: ``watch_pool`` and ``watch_broker_link`` register
    them at start and the returned callable removes them at stop.
    """

    def __init__(self) -> None:
        self.pools: dict[str, asyncpg.Pool] = {}
        self.links: dict[str, Callable[[], bool]] = {}

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "iochub_db_pool_connections",
            "Connections of the hub's database pool, by state (in_use, idle).",
            labels=["pool", "state"],
        )
        limit = GaugeMetricFamily(
            "iochub_db_pool_max_connections",
            "Upper bound of connections of the hub's database pool.",
            labels=["pool"],
        )
        for name, pool in self.pools.items():
            size, idle = pool.get_size(), pool.get_idle_size()
            connections.add_metric([name, "in_use"], size - idle)
            connections.add_metric([name, "idle"], idle)
            limit.add_metric([name], pool.get_max_size())
        links = GaugeMetricFamily(
            "iochub_broker_link_up",
            "1 while the hub's MQTT link is connected to the broker, else 0.",
            labels=["link"],
        )
        for name, is_up in self.links.items():
            links.add_metric([name], 1.0 if is_up() else 0.0)
        yield from (connections, limit, links)

    def describe(self) -> Iterable[Metric]:
        return []


LIVE = _LiveGauges()
REGISTRY.register(LIVE)


def watch_pool(name: str, pool: asyncpg.Pool) -> Callable[[], None]:
    LIVE.pools[name] = pool
    return lambda: _forget(LIVE.pools, name, pool)


def watch_broker_link(name: str, is_up: Callable[[], bool]) -> Callable[[], None]:
    LIVE.links[name] = is_up
    return lambda: _forget(LIVE.links, name, is_up)


def _forget(registry: dict[str, Any], name: str, source: object) -> None:
    # A newer hub in the same process may have taken the name: leave its source alone.
    if registry.get(name) is source:
        del registry[name]


# The sensors' MQTT link, when this process takes readings over MQTT.
SENSORS: RuntimeKey[SensorMqttDriver] = RuntimeKey("the sensor MQTT driver")


def _connected_of(driver: Any) -> Callable[[], bool]:
    return lambda: bool(driver.connected)


def watch_running_hub(hub: HubRuntime) -> Callable[[], None]:
    """Register a started hub's pool and broker links; the result unregisters them."""
    stops = [watch_pool("hub", hub.database.pool)]
    for link, source in (("sensors", hub.find(SENSORS)), ("speakers", hub.find(SPEAKERS))):
        if source is not None:
            stops.append(watch_broker_link(link, _connected_of(source)))

    def stop() -> None:
        for forget in stops:
            forget()

    return stop
