"""Daily and hourly VN_AQI history through the API, from hourly rollups kept for months.

Expected values are computed by hand from Decision 1459/QĐ-TCMT's Table 2 ("Bảng 2: Các
giá trị BPi"): between breakpoints BP_i and BP_i+1 with indices I_i and I_i+1, the
sub-index is I_i + (I_i+1 − I_i) / (BP_i+1 − BP_i) × (C − BP_i) (Formula 2, §2.2),
rounded half up; the daily AQI is the highest sub-index (§2.2.2).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from hub.telemetry.rollups import refresh_hourly
from tests.conftest import Clients

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=HCM).astimezone(UTC)


def days_ago(days: int) -> date:
    return datetime.now(HCM).date() - timedelta(days=days)


async def put_hours(
    db: asyncpg.Connection,
    device_id: int,
    metric: str,
    day: date,
    values: dict[int, float],
) -> None:
    """Two readings in each local hour of ``day`` given, averaging to the value."""
    midnight = local_midnight(day)
    rows = []
    for hour, value in values.items():
        start = midnight + timedelta(hours=hour)
        rows += [
            (start + timedelta(minutes=10), device_id, metric, value - 1.0),
            (start + timedelta(minutes=40), device_id, metric, value + 1.0),
        ]
    await db.copy_records_to_table(
        "reading", records=rows, columns=("time", "device_id", "metric", "value")
    )


async def roll_up(state: Any, db: asyncpg.Connection) -> None:
    """What the hub's rollup keeps doing (every 5 min on plain PostgreSQL), done now."""
    start, end = datetime.now(UTC) - timedelta(days=40), datetime.now(UTC)
    if state.database.backend == "timescaledb":
        await db.execute(
            "CALL refresh_continuous_aggregate('reading_1h', $1::timestamptz, $2::timestamptz)",
            start,
            end,
        )
    else:
        await refresh_hourly(state.database.pool, start, end)


def every_hour(value: float) -> dict[int, float]:
    return dict.fromkeys(range(24), value)


async def daily(clients: Any, start: date, end: date, **params: Any) -> dict[str, Any]:
    response = await clients.get(
        "/api/v1/telemetry/aqi",
        params={
            "resolution": "day",
            "start": local_midnight(start).isoformat(),
            "end": local_midnight(end).isoformat(),
            **params,
        },
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_daily_aqi_per_station_and_ward_matches_the_decisions_tables(
    sensors: dict[str, int], clients: Clients, db: asyncpg.Connection, state: Any
) -> None:
    first = days_ago(20)
    second, third = first + timedelta(days=1), first + timedelta(days=2)
    aq1, aq2 = sensors["aq-1"], sensors["aq-2"]
    # Day 1, aq-1. PM2.5 24-h mean 40: band 25-50 (index 50-100): 50 + 50/25 × 15 = 80.
    # PM10 mean 100: band 50-150 (50-100): 50 + 50/100 × 50 = 75. O3 110 every hour but
    # 180 at noon: 1-h max 180, band 160-200 (50-100): 50 + 50/40 × 20 = 75; 8-h max
    # (7 × 110 + 180) / 8 = 118.75, 8-h band 100-120 (50-100): 50 + 50/20 × 18.75 = 96.875
    # → 97. Daily AQI 97, O3 dominant, "Trung bình" (51-100, Table 1).
    await put_hours(db, aq1, "pm2_5", first, every_hour(40.0))
    await put_hours(db, aq1, "pm10", first, every_hour(100.0))
    await put_hours(db, aq1, "o3", first, every_hour(110.0) | {12: 180.0})
    # Day 2, aq-1: PM2.5 in 12 hours only, no PM10: no AQI, and the answer says why.
    await put_hours(db, aq1, "pm2_5", second, dict.fromkeys(range(12), 40.0))
    # Day 3, aq-1: PM2.5 40 (→ 80) and PM10 110: 50 + 50/100 × 60 = 80: a tie.
    await put_hours(db, aq1, "pm2_5", third, every_hour(40.0))
    await put_hours(db, aq1, "pm10", third, every_hour(110.0))
    # Day 3, aq-2: PM2.5 60: band 50-80 (100-150): 100 + 50/30 × 10 = 116.67 → 117.
    await put_hours(db, aq2, "pm2_5", third, every_hour(60.0))
    await roll_up(state, db)
    # Raw readings expire long before rollups (30 against 730 days by default).
    await db.execute("DELETE FROM reading")

    answer = await daily(clients.viewer, first, third + timedelta(days=1), ward="ward-a")
    stations = {s["station"]: s["points"] for s in answer["stations"]}
    assert sorted(stations) == ["aq-1", "aq-2"]
    one, two, three = stations["aq-1"]
    assert [p["local_date"] for p in (one, two, three)] == [
        first.isoformat(),
        second.isoformat(),
        third.isoformat(),
    ]
    assert one["aqi"]["value"] == 97 and one["aqi"]["dominant_pollutants"] == ["o3"]
    assert one["aqi"]["sub_indices"] == {"pm2_5": 80, "pm10": 75, "o3": 97}
    assert (one["aqi"]["category"], one["aqi"]["label_vi"]) == ("moderate", "Trung bình")
    assert two["aqi"] is None
    assert two["missing"] == [
        "pm2_5: 12 of 24 hourly means, the 24-hour mean needs 18",
        "pm10: no data that day",
        "no AQI without PM2.5 or PM10 (§2.1b)",
    ]
    assert three["aqi"]["value"] == 80
    assert three["aqi"]["dominant_pollutants"] == ["pm2_5", "pm10"]
    [ward] = answer["wards"]
    assert ward["ward"] == "ward-a"
    assert [(p["aqi"] or {}).get("value") for p in ward["points"]] == [97, None, 117]
    assert ward["points"][2]["station"] == "aq-2"
    assert ward["points"][2]["aqi"]["colour"].upper() == "#FF7E00"
    assert "aq-1: pm2_5: 12 of 24 hourly means" in ward["points"][1]["missing"][0]


async def test_hourly_aqi_history_says_when_the_nowcast_lacks_hours(
    sensors: dict[str, int], clients: Clients, db: asyncpg.Connection, state: Any
) -> None:
    day = days_ago(2)
    # PM2.5 35 at 09:00, 10:00 and 11:00 local (NowCast of equal hours: 35, band 25-50:
    # 50 + 50/25 × 10 = 70), nothing before.
    await put_hours(db, sensors["aq-1"], "pm2_5", day, dict.fromkeys((9, 10, 11), 35.0))
    await roll_up(state, db)
    midnight = local_midnight(day)
    response = await clients.viewer.get(
        "/api/v1/telemetry/aqi",
        params={
            "resolution": "hour",
            "device": "aq-1",
            "start": (midnight + timedelta(hours=9)).isoformat(),
            "end": (midnight + timedelta(hours=12)).isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    points = response.json()["stations"][0]["points"]
    assert [(p["aqi"] or {}).get("value") for p in points] == [None, 70, 70]
    assert points[0]["missing"] == [
        "pm2_5: 1 of the 3 latest hours have data, the NowCast needs 2 (§2.2.1a)",
        "pm10: no data in the last 12 hours",
        "no AQI without PM2.5 or PM10 (§2.1b)",
    ]
    assert points[1]["missing"] == []


async def test_aqi_history_is_ward_scoped_and_bounded(
    sensors: dict[str, int], clients: Clients, db: asyncpg.Connection, state: Any
) -> None:
    day = days_ago(3)
    await put_hours(db, sensors["aq-3"], "pm2_5", day, every_hour(40.0))
    await roll_up(state, db)
    seen = await daily(clients.viewer, day, day + timedelta(days=1))
    assert [s["station"] for s in seen["stations"]] == ["aq-3"]
    mine = await daily(clients.staff_a, day, day + timedelta(days=1))
    assert mine["stations"] == [] and mine["wards"] == []
    hidden = await clients.staff_a.get(
        "/api/v1/telemetry/aqi", params={"resolution": "day", "device": "aq-3"}
    )
    assert hidden.status_code == 404
    too_long = await clients.viewer.get(
        "/api/v1/telemetry/aqi",
        params={
            "resolution": "hour",
            "start": (datetime.now(UTC) - timedelta(days=40)).isoformat(),
        },
    )
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "start"


async def test_ward_summaries_show_yesterdays_daily_aqi_and_why_the_hourly_is_missing(
    sensors: dict[str, int], clients: Clients, db: asyncpg.Connection, state: Any
) -> None:
    yesterday = days_ago(1)
    await put_hours(db, sensors["aq-1"], "pm2_5", yesterday, every_hour(40.0))
    await roll_up(state, db)
    summaries = {s["ward"]: s for s in (await clients.viewer.get("/api/v1/telemetry/wards")).json()}
    ward_a = summaries["ward-a"]
    assert ward_a["daily_aqi"]["aqi"]["value"] == 80
    assert ward_a["daily_aqi"]["local_date"] == yesterday.isoformat()
    ward_b = summaries["ward-b"]
    assert ward_b["aqi"] is None
    assert ward_b["aqi_missing"] == ["no pollutant data in the last 12 hours"]
    assert ward_b["daily_aqi"]["aqi"] is None
    assert ward_b["daily_aqi"]["missing"] == [
        "no station of the ward measured PM2.5, PM10 or gases that day"
    ]


async def test_aqi_history_refuses_times_out_of_range(
    sensors: dict[str, int], clients: Clients
) -> None:
    for params, field in (
        ({"start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z"}, "start"),
        ({"start": "9999-12-30T00:00:00Z", "end": "9999-12-31T00:00:00Z"}, "start"),
    ):
        response = await clients.viewer.get("/api/v1/telemetry/aqi", params=params)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
