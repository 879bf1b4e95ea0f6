"""The demo fleet's past, as the health monitor would have written it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from hub.server.history import (
    FAULT_SINCE,
    POWER_CUT_WARD,
    PROGRAMME_LOCAL_TIMES,
    Fleet,
    first_slot,
    health_history,
)
from hub.server.simulate import HUNG_CAMERA, HUNG_SENSOR, LOCKED_CAMERA
from tests.support.clock import INSTANTS

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
FLEET = Fleet(
    [
        (1, "spk-may-chai-001", "speaker", "may-chai"),
        (2, f"spk-{POWER_CUT_WARD}-001", "speaker", POWER_CUT_WARD),
        (3, f"aq-{POWER_CUT_WARD}-01", "sensor", POWER_CUT_WARD),
        (4, HUNG_SENSOR, "sensor", "may-to"),
        (5, HUNG_CAMERA, "camera", "may-chai"),
        (6, LOCKED_CAMERA, "camera", "cau-tre"),
    ]
)


def by_device(now: datetime, hours: float = 48) -> dict[int, list[tuple[datetime, str, str, str]]]:
    changes: dict[int, list[tuple[datetime, str, str, str]]] = {}
    for device_id, at, before, after, reason in health_history(
        FLEET, now - timedelta(hours=hours), now
    ):
        changes.setdefault(device_id, []).append((at, before, after, reason))
    return changes


@pytest.mark.parametrize("now", INSTANTS.values(), ids=INSTANTS.keys())
def test_each_device_history_is_a_chain_inside_the_window(now: datetime) -> None:
    start = now - timedelta(hours=48)
    for device_id, changes in by_device(now).items():
        assert changes[0][1] == "unknown", (device_id, changes)
        for (at, _, to, _), (later, frm, _, _) in pairwise(changes):
            assert at < later and frm == to, (device_id, changes)
        assert all(start <= at < now for at, *_ in changes), (device_id, changes)


@pytest.mark.parametrize("now", INSTANTS.values(), ids=INSTANTS.keys())
def test_the_power_cut_takes_mains_devices_off_yesterday_morning(now: datetime) -> None:
    history = by_device(now)
    cut = [c for c in history[2] if c[2] == "offline"]
    assert len(cut) == 1 and cut[0][3] == "disconnected"
    local = cut[0][0].astimezone(LOCAL)
    assert local.date() == (now.astimezone(LOCAL) - timedelta(days=1)).date()
    assert (local.hour, local.minute) == (8, 0)
    back = history[2][-1]
    assert back[1:] == ("offline", "online", "")
    assert timedelta(hours=2, minutes=30) < back[0] - cut[0][0] < timedelta(hours=2, minutes=34)
    # the sensors there have batteries; other wards had power
    assert [c[2] for c in history[3]] == ["online"]
    assert [c[2] for c in history[1]] == ["online"]


def test_the_misbehaving_devices_fall_into_their_states() -> None:
    now = datetime(2026, 3, 4, 5, 0, tzinfo=UTC)
    history = by_device(now)
    assert [(c[2], c[3][:6]) for c in history[4]] == [("offline", "silent")]
    for device_id, uid in ((5, HUNG_CAMERA), (6, LOCKED_CAMERA)):
        ago, status, reason = FAULT_SINCE[uid]
        assert history[device_id][-1] == (now - ago, "online", status, reason)
    # a window shorter than the fault's age starts with the fault already there
    short = by_device(now, hours=2)
    assert [c[2] for c in short[5]][-1] == "offline"


@pytest.mark.parametrize("now", INSTANTS.values(), ids=INSTANTS.keys())
def test_the_programme_starts_at_its_first_slot(now: datetime) -> None:
    slot = first_slot(now)
    assert now <= slot < now + timedelta(hours=12)
    local = slot.astimezone(LOCAL)
    assert local.time() in PROGRAMME_LOCAL_TIMES
    # and no slot of the programme lies between
    for at in PROGRAMME_LOCAL_TIMES:
        for day in (now.astimezone(LOCAL).date(), slot.astimezone(LOCAL).date()):
            other = datetime.combine(day, at, LOCAL)
            assert not now <= other < slot, other
