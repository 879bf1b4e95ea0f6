"""Alert changes, each written with its outbox row in one transaction.

One alert per (rule, device) fingerprint is open at a time: firing → acknowledged →
resolved (automatically when the condition clears, or by a person).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hub.cameras import webhook_nearby
from hub.errors import Conflict, NotFound
from hub.integrations import enqueue
from hub.runtime import notify_live

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
ALERT_COLUMNS = """
a.id, a.fingerprint, a.rule_id, a.rule_name, a.severity, a.state, a.value, a.threshold,
a.message, a.started_at, a.updated_at, a.acknowledged_at, a.acknowledged_by, a.resolved_at,
a.resolved_by, a.resolved_reason, a.assignee, a.ward_id, a.device_id, d.uid AS device_uid, d.kind AS device_kind,
d.name AS device_name, w.code AS ward
"""
ALERT_FROM = "alert a JOIN device d ON d.id = a.device_id LEFT JOIN ward w ON w.id = a.ward_id"


def fingerprint(rule_id: int, device_id: int) -> str:
    return f"rule-{rule_id}/device-{device_id}"


def flapping_fingerprint(device_id: int) -> str:
    """A flapping device has one alert of its own, whatever rules cover it."""
    return f"flapping/device-{device_id}"


@dataclass(frozen=True, slots=True)
class NewAlert:
    rule_id: int
    rule_name: str
    device_id: int
    ward_id: int | None
    severity: str
    value: float | None
    threshold: float | None
    message: str
    started_at: datetime


def as_data(row: asyncpg.Record) -> dict[str, Any]:
    data = dict(row.items())
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    data["alert_id"] = data.pop("id")
    del data["device_id"]  # the hub's own key: receivers know a device by its uid
    data["rule"] = data.pop("rule_name")
    return data


async def load(conn: Connection, alert_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM} WHERE a.id = $1", alert_id)
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return row


async def publish(
    conn: Connection, change: str, row: asyncpg.Record, extra: dict[str, Any] | None = None
) -> None:
    data = as_data(row) | (extra or {})
    # The IOC opens these links to see the place of the alert (issue: live camera view).
    data["nearby_cameras"] = await webhook_nearby(conn, row["device_uid"])
    await enqueue(
        conn,
        event_type=f"vn.iochub.alert.{change}",
        subject=row["fingerprint"],
        ordering_key=row["device_uid"],
        ward_id=row["ward_id"],
        data=data,
    )
    await notify_live(
        conn,
        [
            {
                "topic": "alert",
                "id": row["id"],
                "change": change,
                "ward_id": row["ward_id"],
                "device": row["device_uid"],
                "state": row["state"],
                "severity": row["severity"],
            }
        ],
    )


async def fire(pool: asyncpg.Pool, alert: NewAlert) -> int | None:
    """Open an alert; None if one is already open for this fingerprint."""
    async with pool.acquire() as conn, conn.transaction():
        alert_id = await conn.fetchval(
            "INSERT INTO alert (fingerprint, rule_id, rule_name, device_id, ward_id, severity, "
            "state, value, threshold, message, started_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, 'firing', $7, $8, $9, $10) "
            "ON CONFLICT (fingerprint) WHERE state <> 'resolved' DO NOTHING RETURNING id",
            fingerprint(alert.rule_id, alert.device_id),
            alert.rule_id,
            alert.rule_name,
            alert.device_id,
            alert.ward_id,
            alert.severity,
            alert.value,
            alert.threshold,
            alert.message,
            alert.started_at,
        )
        if alert_id is None:
            return None
        await conn.execute(
            "DELETE FROM alert_rule_state WHERE rule_id = $1 AND device_id = $2",
            alert.rule_id,
            alert.device_id,
        )
        await publish(conn, "firing", await load(conn, alert_id))
    return int(alert_id)


async def fire_flapping(
    pool: asyncpg.Pool,
    device_id: int,
    ward_id: int | None,
    severity: str,
    message: str,
    started_at: datetime,
) -> int | None:
    """Open the device's flapping alert; None if it is open already."""
    async with pool.acquire() as conn, conn.transaction():
        alert_id = await conn.fetchval(
            "INSERT INTO alert (fingerprint, rule_id, rule_name, device_id, ward_id, severity, "
            "state, message, started_at) VALUES ($1, NULL, 'flapping', $2, $3, $4, 'firing', "
            "$5, $6) ON CONFLICT (fingerprint) WHERE state <> 'resolved' DO NOTHING RETURNING id",
            flapping_fingerprint(device_id),
            device_id,
            ward_id,
            severity,
            message,
            started_at,
        )
        if alert_id is not None:
            await publish(conn, "firing", await load(conn, alert_id))
    return int(alert_id) if alert_id is not None else None


async def resolve_flapping(pool: asyncpg.Pool, device_id: int) -> int | None:
    async with pool.acquire() as conn, conn.transaction():
        alert_id = await conn.fetchval(
            "UPDATE alert SET state = 'resolved', resolved_at = now(), resolved_by = 'auto', "
            "updated_at = now() WHERE fingerprint = $1 AND state <> 'resolved' RETURNING id",
            flapping_fingerprint(device_id),
        )
        if alert_id is not None:
            await publish(conn, "resolved", await load(conn, alert_id))
    return int(alert_id) if alert_id is not None else None


async def resolve_open(
    pool: asyncpg.Pool,
    rule_id: int,
    device_id: int,
    by: str,
    value: float | None = None,
    reason: str | None = None,
) -> int | None:
    async with pool.acquire() as conn, conn.transaction():
        alert_id = await conn.fetchval(
            "UPDATE alert SET state = 'resolved', resolved_at = now(), resolved_by = $2, "
            "updated_at = now(), value = coalesce($3, value), resolved_reason = $4 "
            "WHERE fingerprint = $1 AND state <> 'resolved' RETURNING id",
            fingerprint(rule_id, device_id),
            by,
            value,
            reason,
        )
        if alert_id is not None:
            await publish(conn, "resolved", await load(conn, alert_id))
    return int(alert_id) if alert_id is not None else None


@dataclass(frozen=True, slots=True)
class WindowState:
    """Where a windowed rule's window stands at an instant: the start of its current
    opening, or None while it is closed, and the reason its alerts resolve with."""

    rule_id: int
    opened: datetime | None
    reason: str


async def close_windows(
    pool: asyncpg.Pool, states: list[WindowState], now: datetime
) -> list[tuple[int, int]]:
    """Resolve the open alerts of windowed rules that began before their window's current
    opening (all of them, while it is closed) and drop what was pending from then; returns
    the (rule, device) pairs whose alert resolved."""
    if not states:
        return []
    ids = [s.rule_id for s in states]
    opened = [s.opened for s in states]
    reasons = [s.reason for s in states]
    async with pool.acquire() as conn, conn.transaction():
        closed = await conn.fetch(
            "UPDATE alert a SET state = 'resolved', resolved_at = $4, resolved_by = 'auto', "
            "resolved_reason = w.reason, updated_at = now() "
            "FROM unnest($1::int[], $2::timestamptz[], $3::text[]) AS w(rule_id, opened, reason) "
            "WHERE a.rule_id = w.rule_id AND a.state <> 'resolved' "
            "AND (w.opened IS NULL OR a.started_at < w.opened) RETURNING a.id, a.rule_id, a.device_id",
            ids,
            opened,
            reasons,
            now,
        )
        await conn.execute(
            "DELETE FROM alert_rule_state s USING unnest($1::int[], $2::timestamptz[]) "
            "AS w(rule_id, opened) WHERE s.rule_id = w.rule_id "
            "AND (w.opened IS NULL OR s.pending_since < w.opened)",
            ids,
            opened,
        )
        for row in closed:
            await publish(conn, "resolved", await load(conn, row["id"]))
    return [(row["rule_id"], row["device_id"]) for row in closed]


async def raise_severity(
    pool: asyncpg.Pool, rule_id: int, device_id: int, severity: str, value: float
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        alert_id = await conn.fetchval(
            "UPDATE alert SET severity = $2, value = $3, updated_at = now() "
            "WHERE fingerprint = $1 AND state <> 'resolved' RETURNING id",
            fingerprint(rule_id, device_id),
            severity,
            value,
        )
        if alert_id is not None:
            await publish(conn, "severity_raised", await load(conn, alert_id))


async def acknowledge(pool: asyncpg.Pool, alert_id: int, by: str) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        row = await load(conn, alert_id)
        if row["state"] != "firing":
            raise Conflict(
                f"alert {alert_id} is {row['state']}; only a firing alert is acknowledged"
            )
        await conn.execute(
            "UPDATE alert SET state = 'acknowledged', acknowledged_at = now(), "
            "acknowledged_by = $2, updated_at = now() WHERE id = $1",
            alert_id,
            by,
        )
        row = await load(conn, alert_id)
        await publish(conn, "acknowledged", row)
    return row


async def resolve_manually(pool: asyncpg.Pool, alert_id: int, by: str) -> asyncpg.Record:
    """Close an alert by hand. As Zabbix does for a manual close, this closes the alert, not
    the condition: the (rule, device) pair starts pending again at the resolve, so a breach
    that persists opens a new alert once it has lasted the rule's duration again."""
    async with pool.acquire() as conn, conn.transaction():
        row = await load(conn, alert_id)
        if row["state"] == "resolved":
            raise Conflict(f"alert {alert_id} is resolved already")
        resolved_at = await conn.fetchval(
            "UPDATE alert SET state = 'resolved', resolved_at = now(), "
            "resolved_by = $2, updated_at = now() WHERE id = $1 RETURNING resolved_at",
            alert_id,
            by,
        )
        if row["rule_id"] is not None:
            await conn.execute(
                "INSERT INTO alert_rule_state (rule_id, device_id, pending_since) "
                "SELECT $1, device_id, $3 FROM alert WHERE id = $2 "
                "ON CONFLICT (rule_id, device_id) DO UPDATE SET pending_since = $3",
                row["rule_id"],
                alert_id,
                resolved_at,
            )
        row = await load(conn, alert_id)
        await publish(conn, "resolved", row)
    return row


async def assign(
    pool: asyncpg.Pool, alert_id: int, assignee: str | None, by: str
) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        await load(conn, alert_id)
        await conn.execute(
            "UPDATE alert SET assignee = $2, updated_at = now() WHERE id = $1", alert_id, assignee
        )
        row = await load(conn, alert_id)
        await publish(conn, "assigned", row, {"assigned_by": by})
    return row


async def comment(pool: asyncpg.Pool, alert_id: int, author: str, text: str) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        row = await load(conn, alert_id)
        note = await conn.fetchrow(
            "INSERT INTO alert_comment (alert_id, author, text) VALUES ($1, $2, $3) RETURNING *",
            alert_id,
            author,
            text,
        )
        assert note is not None
        await publish(
            conn,
            "commented",
            row,
            {"comment": {"author": author, "text": text, "at": note["at"].isoformat()}},
        )
    return note


async def save_pending(
    pool: asyncpg.Pool, rule_id: int, device_id: int, since: datetime | None
) -> None:
    if since is None:
        await pool.execute(
            "DELETE FROM alert_rule_state WHERE rule_id = $1 AND device_id = $2", rule_id, device_id
        )
    else:
        await pool.execute(
            "INSERT INTO alert_rule_state (rule_id, device_id, pending_since) VALUES ($1, $2, $3) "
            "ON CONFLICT (rule_id, device_id) DO UPDATE SET pending_since = excluded.pending_since",
            rule_id,
            device_id,
            since,
        )


def now() -> datetime:
    return datetime.now(UTC)
