"""Telemetry queries through HTTP, on whichever backend this database has."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from drivers.contract import Reading
from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem


def this_hour() -> datetime:
    """The start of the current hour (UTC), read when a test needs it, not at import."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


async def fill_hours(
    state: Any, uid: str, metric: str, values_by_hour: list[float], per_hour: int = 4
) -> datetime:
    """values_by_hour[0] is the current hour; each hour gets `per_hour` equal readings.
    Returns the current hour it used."""
    batch = []
    hour = this_hour()
    for age, value in enumerate(values_by_hour):
        for n in range(per_hour):
            at = hour - timedelta(hours=age) + timedelta(minutes=n * 10)
            batch.append(Reading(uid, metric, value, min(at, datetime.now(UTC))))
    await state.sink.readings(batch, "test")
    return hour


async def test_series_buckets_aggregates_and_gap_filling(
    state: Any, sensors: dict[str, int], clients: Clients
) -> None:
    start = this_hour() - timedelta(hours=3)
    batch = [
        Reading("aq-1", "noise", v, start + timedelta(minutes=m))
        for m, v in ((0, 50.0), (10, 60.0), (20, 70.0), (130, 40.0), (140, 44.0))
    ]
    await state.sink.readings(batch, "test")
    params: dict[str, Any] = {
        "device": "aq-1",
        "metric": "noise",
        "start": start.isoformat(),
        "end": (start + timedelta(hours=3)).isoformat(),
        "bucket": "1h",
    }
    body = (await clients.viewer.get("/api/v1/telemetry/series", params=params)).json()
    assert body["bucket"] == "1h" and body["unit"] == "dBA"
    assert [(p["value"], p["count"]) for p in body["points"]] == [(60.0, 3), (42.0, 2)]
    filled = (
        await clients.viewer.get("/api/v1/telemetry/series", params={**params, "fill": "null"})
    ).json()["points"]
    assert [p["value"] for p in filled] == [60.0, None, 42.0]
    carried = (
        await clients.viewer.get(
            "/api/v1/telemetry/series", params={**params, "fill": "previous", "aggregate": "max"}
        )
    ).json()
    assert [p["value"] for p in carried["points"]] == [70.0, 70.0, 44.0]
    last = (
        await clients.viewer.get(
            "/api/v1/telemetry/series", params={**params, "aggregate": "last", "bucket": "30m"}
        )
    ).json()
    assert [p["value"] for p in last["points"]] == [70.0, 44.0]
    raw = (
        await clients.viewer.get("/api/v1/telemetry/series", params={**params, "bucket": "raw"})
    ).json()
    assert [p["value"] for p in raw["points"]] == [50.0, 60.0, 70.0, 40.0, 44.0]
    auto = (
        await clients.viewer.get(
            "/api/v1/telemetry/series",
            params={**params, "bucket": "auto", "start": (start - timedelta(days=5)).isoformat()},
        )
    ).json()
    assert auto["bucket"] in ("5m", "15m")


async def test_series_bad_input(clients: Clients, sensors: dict[str, int]) -> None:
    base = {"device": "aq-1", "metric": "noise"}
    for bad, status, field in (
        ({"metric": "vibes"}, 422, "metric"),
        ({"bucket": "7x"}, 422, "bucket"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, 422, "end"),
        ({"start": "2026-01-01T00:00:00"}, 422, "start"),
        ({"bucket": "1s", "start": "2025-01-01T00:00:00Z"}, 422, "bucket"),
        ({"device": "nope"}, 404, None),
    ):
        assert_problem(
            await clients.viewer.get("/api/v1/telemetry/series", params={**base, **bad}),
            status,
            field,
        )


async def test_ward_scope_applies_to_telemetry(
    state: Any, sensors: dict[str, int], clients: Clients
) -> None:
    hour = this_hour()
    await state.sink.readings(
        [Reading("aq-3", "pm10", 30.0, hour), Reading("aq-1", "pm10", 20.0, hour)], "test"
    )
    assert_problem(
        await clients.staff_a.get(
            "/api/v1/telemetry/series", params={"device": "aq-3", "metric": "pm10"}
        ),
        404,
    )
    latest = (await clients.staff_a.get("/api/v1/telemetry/latest")).json()
    assert [(r["device"], r["value"]) for r in latest] == [("aq-1", 20.0)]
    everyone = (
        await clients.viewer.get("/api/v1/telemetry/latest", params={"metric": "pm10"})
    ).json()
    assert {r["device"] for r in everyone} == {"aq-1", "aq-3"}
    summaries = (await clients.staff_a.get("/api/v1/telemetry/wards")).json()
    assert [s["ward"] for s in summaries] == ["ward-a"]


@pytest.mark.any_hour
async def test_ward_summary_gives_the_worst_station_vn_aqi(
    state: Any, sensors: dict[str, int], clients: Clients
) -> None:
    # aq-1: PM2.5 steady at 35 µg/m³ for 12 hours, so NowCast = 35 and, in Table 2's
    # 25-50 µg/m³ band (index 50-100): 50 + (35 - 25) * 50 / 25 = 70.
    await fill_hours(state, "aq-1", "pm2_5", [35.0] * 12)
    # aq-2: PM10 steady at 100 µg/m³: band 50-150 (index 50-100): 50 + 50 * 50 / 100 = 75.
    await fill_hours(state, "aq-2", "pm10", [100.0] * 12)
    await state.sink.readings([Reading("aq-1", "temperature", 31.0, datetime.now(UTC))], "test")
    (ward_a,) = [
        w
        for w in (await clients.viewer.get("/api/v1/telemetry/wards")).json()
        if w["ward"] == "ward-a"
    ]
    assert ward_a["aqi"]["value"] == 75 and ward_a["aqi"]["station"] == "aq-2"
    assert ward_a["aqi"]["dominant"] == "pm10" and ward_a["aqi"]["colour"].upper() == "#FFFF00"
    by_metric = {m["metric"]: m for m in ward_a["metrics"]}
    assert by_metric["temperature"]["latest_avg"] == 31.0
    assert by_metric["pm2_5"]["today_max"] == 35.0


@pytest.mark.any_hour
async def test_ward_summary_names_every_dominant_pollutant_on_a_tie(
    state: Any, sensors: dict[str, int], clients: Clients
) -> None:
    # Table 2: PM2.5 35 → 50 + 50/25 × 10 = 70; PM10 90 → 50 + 50/100 × 40 = 70: a tie.
    await fill_hours(state, "aq-1", "pm2_5", [35.0] * 12)
    await fill_hours(state, "aq-1", "pm10", [90.0] * 12)
    (ward_a,) = [
        w
        for w in (await clients.viewer.get("/api/v1/telemetry/wards")).json()
        if w["ward"] == "ward-a"
    ]
    assert ward_a["aqi"]["value"] == 70
    assert ward_a["aqi"]["dominant_pollutants"] == ["pm2_5", "pm10"]
    assert ward_a["aqi"]["dominant"] == "pm2_5"


async def test_csv_export_streams_readings(
    state: Any, sensors: dict[str, int], clients: Clients
) -> None:
    hour = await fill_hours(state, "aq-1", "pm10", [10.0, 20.0], per_hour=2)
    response = await clients.viewer.get(
        "/api/v1/telemetry/export.csv",
        params={"device": "aq-1", "start": (hour - timedelta(hours=2)).isoformat()},
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 4 and rows[0]["unit"] == "µg/m³"
    assert [float(r["value"]) for r in rows] == [20.0, 20.0, 10.0, 10.0]


async def test_quarantine_is_visible_through_the_api(
    state: Any, sensors: dict[str, int], clients: Clients
) -> None:
    await state.sink.readings([Reading("aq-1", "pm2_5", -1.0, this_hour())], "test")
    await state.sink.readings([Reading("aq-3", "pm2_5", -1.0, this_hour())], "test")
    items = (await clients.technician.get("/api/v1/quarantine")).json()
    assert len(items) == 2 and "range" in items[0]["reason"]
    mine = (await clients.staff_a.get("/api/v1/quarantine")).json()
    assert [i["device_uid"] for i in mine] == ["aq-1"]
    other = next(i for i in items if i["device_uid"] == "aq-3")
    assert_problem(await clients.staff_a.get(f"/api/v1/quarantine/{other['id']}"), 404)


async def test_metrics_endpoint_counts_ingest(
    state: Any, sensors: dict[str, int], clients: Clients
) -> None:
    await state.sink.readings([Reading("aq-1", "pm10", 5.0, this_hour())], "test")
    text = (await clients.viewer.get("/metrics")).text
    assert "iochub_readings_stored_total" in text and "iochub_ingest_queue_depth" in text
    assert_problem(await clients.anonymous.get("/metrics"), 401)


@pytest.mark.timescaledb
async def test_timescaledb_layout_and_rollups(
    state: Any, sensors: dict[str, int], db: asyncpg.Connection, clients: Clients
) -> None:
    if state.database.backend != "timescaledb":
        pytest.skip(
            "TimescaleDB extension not installed on this PostgreSQL; "
            "the plain-PostgreSQL backend is tested instead"
        )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'reading'"
        )
        == 1
    )
    caggs = {
        r["view_name"]
        for r in await db.fetch(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        )
    }
    assert caggs == {"reading_1m", "reading_1h"}
    jobs = {
        (r["proc_name"], r["hypertable_name"])
        for r in await db.fetch(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs"
        )
    }
    assert ("policy_compression", "reading") in jobs and ("policy_retention", "reading") in jobs
    assert sum(1 for j in jobs if j[0] == "policy_refresh_continuous_aggregate") == 2
    hour = await fill_hours(state, "aq-1", "pm10", [10.0, 20.0, 30.0], per_hour=3)
    params: dict[str, Any] = {
        "device": "aq-1",
        "metric": "pm10",
        "bucket": "1h",
        "start": (hour - timedelta(hours=2)).isoformat(),
        "end": (hour + timedelta(hours=1)).isoformat(),
    }
    body = (await clients.viewer.get("/api/v1/telemetry/series", params=params)).json()
    assert body["source"] == "reading_1h"
    assert [(p["value"], p["count"]) for p in body["points"]] == [(30.0, 3), (20.0, 3), (10.0, 3)]
    await db.execute("CALL refresh_continuous_aggregate('reading_1h', NULL, NULL)")
    chunks = await db.fetch(
        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('reading') c"
    )
    assert chunks
    again = (await clients.viewer.get("/api/v1/telemetry/series", params=params)).json()
    assert again["points"] == body["points"]
    # A redelivered reading into a compressed chunk is still a no-op.
    await fill_hours(state, "aq-1", "pm10", [10.0], per_hour=1)
    assert await db.fetchval("SELECT count(*) FROM reading WHERE metric = 'pm10'") == 9
