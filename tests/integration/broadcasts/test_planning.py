"""Quiet hours, conflict preview and placement, and the calendar, through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.conftest import Clients
from tests.support.broadcasts import Speakers, problem_fields

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def tomorrow(hour: int, minute: int = 0) -> datetime:
    """Local wall-clock time tomorrow (naive: the API reads it as Asia/Ho_Chi_Minh)."""
    day = (datetime.now(HCM) + timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, hour, minute)


def utc(local: datetime) -> datetime:
    return local.replace(tzinfo=HCM).astimezone(UTC)


def body(audio: dict[str, Any], start: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "title": overrides.pop("title", "Lịch tiêm chủng"),
        "targets": overrides.pop("targets", {"wards": ["ward-a"]}),
        "starts_at": start.isoformat(),
        "audio_asset_id": audio["id"],
    } | overrides


def in_default_quiet_hours(instant: datetime) -> bool:
    """The district's default quiet hours, 22:00-05:00 local, told by the hour alone."""
    hour = instant.astimezone(HCM).hour
    return hour >= 22 or hour < 5


@pytest.mark.any_hour
async def test_the_local_hour_decides_whether_a_broadcast_soon_may_play(
    clients: Clients, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    starts = datetime.now(UTC) + timedelta(seconds=5)
    quiet = in_default_quiet_hours(starts) or in_default_quiet_hours(starts + timedelta(seconds=2))
    normal = await clients.staff_a.post("/api/v1/broadcasts", json=body(jingle, starts))
    if quiet:
        assert normal.status_code == 422, normal.text
        assert "quiet hours of ward-a (22:00–05:00)" in normal.json()["detail"]
    else:
        assert normal.status_code == 201, normal.text
    emergency = await clients.staff_a.post(
        "/api/v1/broadcasts", json=body(jingle, starts, priority="emergency")
    )
    assert emergency.status_code == 201, emergency.text
    # Nothing is to play after the test: no speaker would answer.
    made = [emergency] + ([normal] if not quiet else [])
    for response in made:
        broadcast_id = response.json()["broadcast"]["id"]
        cancelled = await clients.staff_a.delete(f"/api/v1/broadcasts/{broadcast_id}")
        assert cancelled.status_code == 200, cancelled.text


@pytest.mark.any_hour
async def test_quiet_hours_stop_all_but_emergencies(
    clients: Clients, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    night = await clients.staff_a.post("/api/v1/broadcasts", json=body(jingle, tomorrow(23)))
    assert night.status_code == 422
    assert problem_fields(night) == ["starts_at"]
    assert "quiet hours of ward-a (22:00–05:00)" in night.json()["detail"]

    alarm = await clients.staff_a.post(
        "/api/v1/broadcasts", json=body(jingle, tomorrow(23), priority="emergency")
    )
    assert alarm.status_code == 201, alarm.text

    refused = await clients.staff_a.put(
        "/api/v1/broadcasts/quiet-hours/ward-a", json={"starts": "12:00", "ends": "13:00"}
    )
    assert refused.status_code == 403
    changed = await clients.admin.put(
        "/api/v1/broadcasts/quiet-hours/ward-a", json={"starts": "12:00", "ends": "13:00"}
    )
    assert changed.status_code == 200, changed.text
    listed = (await clients.staff_a.get("/api/v1/broadcasts/quiet-hours")).json()
    assert listed == [{"ward": "ward-a", "starts": "12:00", "ends": "13:00", "default": False}]

    noon = await clients.staff_a.post("/api/v1/broadcasts", json=body(jingle, tomorrow(12, 30)))
    assert noon.status_code == 422
    assert "12:00–13:00" in noon.json()["detail"]
    late = await clients.staff_a.post("/api/v1/broadcasts", json=body(jingle, tomorrow(23)))
    assert late.status_code == 201, late.text
    # Two wards: the quiet hours of each apply.
    both = await clients.admin.post(
        "/api/v1/broadcasts",
        json=body(jingle, tomorrow(23, 30), targets={"wards": ["ward-a", "ward-b"]}),
    )
    assert both.status_code == 422
    assert "ward-b (22:00–05:00)" in both.json()["detail"]


async def test_conflicts_are_previewed_and_settled_by_priority(
    clients: Clients, db: asyncpg.Connection, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    eight = tomorrow(8)
    first = await clients.admin.post("/api/v1/broadcasts", json=body(jingle, eight, title="A"))
    assert first.status_code == 201, first.text
    first_id = first.json()["broadcast"]["id"]
    one_speaker = {"speakers": [speakers["ward-a"][0]]}

    preview = await clients.staff_a.post(
        "/api/v1/broadcasts/conflicts", json=body(jingle, eight, targets=one_speaker)
    )
    assert preview.status_code == 200, preview.text
    [conflict] = preview.json()["conflicts"]
    assert conflict["other_broadcast_id"] == first_id
    assert conflict["resolution"] == "placed_after"
    assert conflict["speakers"] == [speakers["ward-a"][0]]
    after = utc(eight) + timedelta(seconds=2 + 5)  # the jingle, then the gap of silence
    assert datetime.fromisoformat(conflict["placed_at"]) == after
    assert datetime.fromisoformat(preview.json()["occurrences"][0]["starts_at"]) == after
    assert await db.fetchval("SELECT count(*) FROM broadcast") == 1

    placed = await clients.staff_a.post(
        "/api/v1/broadcasts", json=body(jingle, eight, targets=one_speaker, title="B")
    )
    assert placed.status_code == 201, placed.text
    slot = placed.json()["plan"]["occurrences"][0]
    assert datetime.fromisoformat(slot["starts_at"]) == after
    assert datetime.fromisoformat(slot["shifted_from"]) == utc(eight)

    rejected = await clients.staff_a.post(
        "/api/v1/broadcasts", json=body(jingle, eight, on_conflict="reject", title="C")
    )
    assert rejected.status_code == 409
    assert set(problem_fields(rejected)) == {"starts_at"}
    # A, not B: B now begins exactly when the gap after C would end.
    assert len(rejected.json()["errors"]) == 1

    # Circular 39: a priority bulletin plays ahead of the normal schedule, which gives way.
    ahead = await clients.admin.post(
        "/api/v1/broadcasts", json=body(jingle, eight, priority="priority", title="D")
    )
    assert ahead.status_code == 201, ahead.text
    assert {c["resolution"] for c in ahead.json()["plan"]["conflicts"]} == {"preempts"}
    assert ahead.json()["plan"]["occurrences"][0]["shifted_from"] is None
    [kept] = ahead.json()["broadcast"]["flagged_conflicts"]
    assert kept["other_broadcast_id"] == first_id

    alarm = await clients.admin.post(
        "/api/v1/broadcasts", json=body(jingle, eight, priority="emergency", title="E")
    )
    assert {c["resolution"] for c in alarm.json()["plan"]["conflicts"]} == {"preempts"}
    assert {c["other_title"] for c in alarm.json()["plan"]["conflicts"]} == {"A", "D"}

    elsewhere = await clients.admin.post(
        "/api/v1/broadcasts", json=body(jingle, eight, targets={"wards": ["ward-b"]}, title="F")
    )
    assert elsewhere.json()["plan"]["conflicts"] == []

    daily = await clients.admin.post(
        "/api/v1/broadcasts",
        json=body(
            jingle,
            eight,
            targets={"wards": ["ward-b"]},
            rrule="FREQ=DAILY;BYHOUR=8;BYMINUTE=0;COUNT=3",
            title="G",
        ),
    )
    occurrences = daily.json()["plan"]["occurrences"]
    assert [o["shifted_from"] is not None for o in occurrences] == [True, False, False]
    assert [o["local_start"][11:19] for o in occurrences] == ["08:00:07", "08:00:00", "08:00:00"]


async def test_calendar_expands_recurrences_in_local_time_within_scope(
    clients: Clients, speakers: Speakers, jingle: dict[str, Any]
) -> None:
    start = tomorrow(0, 0)
    skipped = (start + timedelta(days=2)).date().isoformat()
    daily = await clients.staff_a.post(
        "/api/v1/broadcasts",
        json=body(jingle, start, rrule="FREQ=DAILY;BYHOUR=6;BYMINUTE=30", exdates=[skipped]),
    )
    assert daily.status_code == 201, daily.text
    other_ward = await clients.admin.post(
        "/api/v1/broadcasts", json=body(jingle, tomorrow(9), targets={"wards": ["ward-b"]})
    )
    assert other_ward.status_code == 201

    window = {"start": utc(start).isoformat(), "end": (utc(start) + timedelta(days=4)).isoformat()}
    mine = (await clients.staff_a.get("/api/v1/broadcasts/calendar", params=window)).json()
    starts = [datetime.fromisoformat(e["starts_at"]) for e in mine["items"]]
    first = utc(start.replace(hour=6, minute=30))
    assert first.hour == 23 and first.minute == 30  # 06:30 local is 23:30 UTC the day before
    assert starts == [first, first + timedelta(days=1), first + timedelta(days=3)]
    assert {e["status"] for e in mine["items"]} == {"scheduled"}
    assert mine["items"][0]["local_start"].endswith("06:30:00+07:00")

    everything = (await clients.admin.get("/api/v1/broadcasts/calendar", params=window)).json()
    assert len(everything["items"]) == 4
    only_b = await clients.admin.get(
        "/api/v1/broadcasts/calendar", params=window | {"ward": "ward-b"}
    )
    assert [e["wards"] for e in only_b.json()["items"]] == [["ward-b"]]
    too_long = await clients.admin.get(
        "/api/v1/broadcasts/calendar",
        params={"start": window["start"], "end": (utc(start) + timedelta(days=200)).isoformat()},
    )
    assert too_long.status_code == 422
    assert problem_fields(too_long) == ["end"]


async def test_calendar_reads_yearly_rules_past_the_planning_horizon(
    clients: Clients, speakers: Speakers, jingle: dict[str, Any], db: asyncpg.Connection
) -> None:
    # National Day, 2 September, five times: only the first one or two fall within the
    # 366 days that are planned; the calendar reads the others from the rule (RFC 5545).
    today = datetime.now(HCM).date()
    year = today.year if (today.month, today.day) < (9, 1) else today.year + 1
    first = datetime(year, 9, 2, 8, 0)
    created = await clients.staff_a.post(
        "/api/v1/broadcasts",
        json=body(jingle, first, title="Quốc khánh", rrule="FREQ=YEARLY;COUNT=5"),
    )
    assert created.status_code == 201, created.text
    planned_through = await db.fetchval("SELECT planned_through FROM broadcast")
    assert planned_through is not None and planned_through < utc(first.replace(year=year + 2))
    seen = []
    for offset in range(6):
        day = utc(first.replace(year=year + offset))
        window = {
            "start": (day - timedelta(days=45)).isoformat(),
            "end": (day + timedelta(days=45)).isoformat(),
        }
        answer = (await clients.staff_a.get("/api/v1/broadcasts/calendar", params=window)).json()
        assert answer["truncated"] is False
        seen.append([(e["local_start"], e["planned"]) for e in answer["items"]])
    assert [entries[0][0][:16] for entries in seen[:5]] == [
        f"{year + offset}-09-02T08:00" for offset in range(5)
    ]
    assert [len(entries) for entries in seen] == [1, 1, 1, 1, 1, 0]  # COUNT=5 ends the rule
    assert seen[0][0][1] is True and all(entries[0][1] is False for entries in seen[2:5])


async def test_calendar_across_the_horizon_joins_planned_and_expanded_occurrences(
    clients: Clients, speakers: Speakers, jingle: dict[str, Any], db: asyncpg.Connection
) -> None:
    daily = await clients.staff_a.post(
        "/api/v1/broadcasts",
        json=body(jingle, tomorrow(7), rrule="FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=7;BYMINUTE=0"),
    )
    assert daily.status_code == 201, daily.text
    horizon = await db.fetchval("SELECT planned_through FROM broadcast")
    last_planned = await db.fetchval("SELECT max(starts_at) FROM broadcast_slot")
    window = {
        "start": (horizon - timedelta(days=28)).isoformat(),
        "end": (horizon + timedelta(days=28)).isoformat(),
    }
    answer = (await clients.staff_a.get("/api/v1/broadcasts/calendar", params=window)).json()
    starts = [datetime.fromisoformat(e["starts_at"]) for e in answer["items"]]
    assert len(starts) == 16  # eight weeks, Mondays and Thursdays
    assert all(s.astimezone(HCM).strftime("%a %H:%M") in ("Mon 07:00", "Thu 07:00") for s in starts)
    assert [e["planned"] for e in answer["items"]] == [s <= last_planned for s in starts]
    assert answer["truncated"] is False and answer["planned_until"] is not None
