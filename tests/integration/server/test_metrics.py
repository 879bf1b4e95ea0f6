"""/metrics for Prometheus: its own scrape token, HTTP figures per route, pool and broker gauges."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from hub.server.metrics import MetricsSettings, scrape_allowed
from tests.conftest import Clients
from tests.support.hub import RunningHub

SCRAPE_TOKEN = "prometheus-scrape-token-0123456789"


@pytest.fixture
def scraped_hub(hub: RunningHub) -> Iterator[RunningHub]:
    """The session's hub, given a scrape token for the test (one ORM context per process
    allows one hub, and the route reads its settings on every request)."""
    before = hub.settings.metrics
    hub.settings.metrics = MetricsSettings(
        scrape_token=SecretStr(SCRAPE_TOKEN),
        allow_from=[ipaddress.ip_network("192.0.2.0/24")],  # documentation range: not us
    )
    try:
        yield hub
    finally:
        hub.settings.metrics = before


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the exposition text, None when absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


async def test_scrape_token_reads_metrics_and_nothing_else(scraped_hub: RunningHub) -> None:
    scraper = {"authorization": f"Bearer {SCRAPE_TOKEN}"}
    async with httpx.AsyncClient(base_url=scraped_hub.base_url) as client:
        assert (await client.get("/metrics", headers=scraper)).status_code == 200
        assert (await client.get("/api/v1/devices", headers=scraper)).status_code == 401
        wrong = {"authorization": f"Bearer {SCRAPE_TOKEN}x"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        anonymous = await client.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        assert len(anonymous.headers["x-request-id"]) == 32  # also on answers the auth makes


async def test_people_still_read_metrics_with_their_own_credentials(clients: Clients) -> None:
    assert (await clients.viewer.get("/metrics")).status_code == 200
    assert (await clients.anonymous.get("/metrics")).status_code == 401


async def test_requests_counted_per_route_template_and_status(scraped_hub: RunningHub) -> None:
    scraper = {"authorization": f"Bearer {SCRAPE_TOKEN}"}
    async with httpx.AsyncClient(base_url=scraped_hub.base_url) as client:
        before = await client.get("/metrics", headers=scraper)
        for _ in range(3):
            await client.get("/api/v1/devices/no-such-device")  # 401: no credentials
        await client.get("/healthz")
        after = (await client.get("/metrics", headers=scraper)).text
    route = {"method": "GET", "route": "/api/v1/devices/{uid}", "status": "401"}
    was = sample(before.text, "iochub_http_requests_total", **route) or 0.0
    assert sample(after, "iochub_http_requests_total", **route) == was + 3
    assert "no-such-device" not in after  # the template, never the raw path
    assert sample(after, "iochub_http_request_duration_seconds_count", **route) == was + 3
    assert sample(after, "iochub_http_requests_total", route="/healthz", status="200")


async def test_pool_and_broker_link_gauges(scraped_hub: RunningHub) -> None:
    scraper = {"authorization": f"Bearer {SCRAPE_TOKEN}"}
    async with httpx.AsyncClient(base_url=scraped_hub.base_url) as client:
        text = (await client.get("/metrics", headers=scraper)).text
    limit = sample(text, "iochub_db_pool_max_connections", pool="hub")
    assert limit == scraped_hub.settings.database.pool_max_size
    in_use = sample(text, "iochub_db_pool_connections", pool="hub", state="in_use")
    idle = sample(text, "iochub_db_pool_connections", pool="hub", state="idle")
    assert in_use is not None and idle is not None and 0 <= in_use + idle <= limit
    assert sample(text, "iochub_broker_link_up", link="sensors") == 1.0
    # The existing ingest figures sit beside the new ones.
    assert "iochub_readings_stored_total" in text


def test_allow_list_admits_only_its_networks() -> None:
    settings = MetricsSettings(allow_from=[ipaddress.ip_network("10.8.0.0/16")])
    assert scrape_allowed(settings, "", "10.8.3.4")
    assert not scrape_allowed(settings, "", "10.9.0.1")
    assert not scrape_allowed(settings, "", "not-an-address")
    assert not scrape_allowed(MetricsSettings(), "Bearer ", "10.8.3.4")
    assert not scrape_allowed(MetricsSettings(), "Bearer ", None)
