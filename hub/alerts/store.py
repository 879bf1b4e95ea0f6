"""The alerts slice's queries: alerts as people list them, comments, and the rules.

Row to struct mapping happens here, once (`alert_out`, `rule_out`); the lifecycle's own
transactions, each written with its outbox row, are in lifecycle.py.
"""

from __future__ import annotations

import asyncpg
import msgspec

from hub.alerts import lifecycle
from hub.alerts.rules import Escalation, RuleIn, Scope
from hub.alerts.schemas import AlertOut, CommentOut, RuleOut
from hub.alerts.windows import ActiveWindow, parse_hh_mm
from hub.errors import Conflict, FieldProblem, NotFound

# A rule is in a ward's scope when it targets every device, a device kind, or that ward (by
# code, through one of its groups, or one of its devices): ward staff read only those.
VISIBLE_RULES = (
    "SELECT r.* FROM alert_rule r WHERE $1::int[] IS NULL OR r.scope_type IN ('all', 'kind') "
    "OR (r.scope_type = 'ward' AND EXISTS (SELECT 1 FROM ward w "
    "    WHERE w.code = r.scope_value AND w.id = ANY($1))) "
    "OR (r.scope_type = 'group' AND EXISTS (SELECT 1 FROM device_group g "
    "    WHERE g.id::text = r.scope_value AND g.ward_id = ANY($1))) "
    "OR (r.scope_type = 'device' AND EXISTS (SELECT 1 FROM device d "
    "    WHERE d.uid = r.scope_value AND d.ward_id = ANY($1)))"
)


def alert_out(row: asyncpg.Record) -> AlertOut:
    return AlertOut(
        row["id"],
        row["fingerprint"],
        row["rule_name"],
        row["device_uid"],
        row["device_kind"],
        row["ward"],
        row["severity"],
        row["state"],
        row["value"],
        row["threshold"],
        row["message"],
        row["started_at"],
        row["updated_at"],
        row["acknowledged_at"],
        row["acknowledged_by"],
        row["resolved_at"],
        row["resolved_by"],
        row["assignee"],
        resolved_reason=row["resolved_reason"],
    )


def rule_out(row: asyncpg.Record) -> RuleOut:
    return RuleOut(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        severity=row["severity"],
        scope=Scope(type=row["scope_type"], value=row["scope_value"]),
        metric=row["metric"],
        comparison=row["comparison"],
        threshold=row["threshold"],
        clear_threshold=row["clear_threshold"],
        escalations=msgspec.json.decode(row["escalations"] or "[]", type=list[Escalation]),
        for_seconds=row["for_seconds"],
        message=row["message_template"],
        enabled=row["enabled"],
        window=window_out(row),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def window_out(row: asyncpg.Record) -> ActiveWindow | None:
    if row["window_start"] is None:
        return None
    return ActiveWindow(
        f"{row['window_start']:%H:%M}", f"{row['window_end']:%H:%M}", list(row["window_days"])
    )


def comment_out(row: asyncpg.Record) -> CommentOut:
    return msgspec.convert(dict(row), CommentOut)


async def load_alert(pool: asyncpg.Pool, alert_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await lifecycle.load(conn, alert_id)


async def list_alerts(
    pool: asyncpg.Pool,
    wards: list[int] | None,
    states: list[str] | None,
    severity: str | None,
    ward: str | None,
    device: str | None,
    open_only: bool,
    before_id: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {lifecycle.ALERT_COLUMNS} FROM {lifecycle.ALERT_FROM} WHERE "
        "($1::int[] IS NULL OR a.ward_id = ANY($1)) AND ($2::text[] IS NULL OR a.state = ANY($2)) "
        "AND ($3::text IS NULL OR a.severity = $3) AND ($4::text IS NULL OR w.code = $4) "
        "AND ($5::text IS NULL OR d.uid = $5) AND (NOT $6 OR a.state <> 'resolved') "
        "AND ($7::bigint IS NULL OR a.id < $7) ORDER BY a.id DESC LIMIT $8",
        wards,
        states,
        severity,
        ward,
        device,
        open_only,
        before_id,
        limit,
    )


async def comments(pool: asyncpg.Pool, alert_id: int) -> list[CommentOut]:
    rows = await pool.fetch(
        "SELECT id, at, author, text FROM alert_comment WHERE alert_id = $1 ORDER BY id",
        alert_id,
    )
    return [comment_out(r) for r in rows]


async def visible_rules(pool: asyncpg.Pool, wards: list[int] | None) -> list[RuleOut]:
    rows = await pool.fetch(f"SELECT * FROM ({VISIBLE_RULES}) r ORDER BY id", wards)
    return [rule_out(r) for r in rows]


async def visible_rule(pool: asyncpg.Pool, wards: list[int] | None, rule_id: int) -> RuleOut:
    row = await pool.fetchrow(f"SELECT * FROM ({VISIBLE_RULES}) r WHERE id = $2", wards, rule_id)
    if row is None:
        raise NotFound(f"no rule {rule_id}")
    return rule_out(row)


async def rule(pool: asyncpg.Pool, rule_id: int) -> RuleOut | None:
    row = await pool.fetchrow("SELECT * FROM alert_rule WHERE id = $1", rule_id)
    return rule_out(row) if row is not None else None


async def save_rule(pool: asyncpg.Pool, rule: RuleIn, rule_id: int | None = None) -> RuleOut:
    args = (
        rule.name,
        rule.kind,
        rule.enabled,
        rule.scope.type,
        rule.scope.value,
        rule.metric,
        rule.comparison,
        rule.threshold,
        rule.clear_threshold if rule.clear_threshold is not None else rule.threshold,
        msgspec.json.encode(rule.escalations).decode(),
        rule.for_seconds,
        rule.severity,
        rule.message,
        parse_hh_mm(rule.window.start) if rule.window else None,
        parse_hh_mm(rule.window.end) if rule.window else None,
        rule.window.days if rule.window else [],
    )
    try:
        if rule_id is None:
            row = await pool.fetchrow(
                "INSERT INTO alert_rule (name, kind, enabled, scope_type, scope_value, metric, "
                "comparison, threshold, clear_threshold, escalations, for_seconds, severity, "
                "message_template, window_start, window_end, window_days) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10::jsonb,$11,$12,$13,$14,$15,$16) "
                "RETURNING *",
                *args,
            )
        else:
            row = await pool.fetchrow(
                "UPDATE alert_rule SET name=$1, kind=$2, enabled=$3, scope_type=$4, scope_value=$5, "
                "metric=$6, comparison=$7, threshold=$8, clear_threshold=$9, escalations=$10::jsonb, "
                "for_seconds=$11, severity=$12, message_template=$13, window_start=$14, "
                "window_end=$15, window_days=$16, updated_at=now() WHERE id=$17 RETURNING *",
                *args,
                rule_id,
            )
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(
            f"a rule named {rule.name!r} exists already",
            [FieldProblem("name", "choose another name")],
        ) from exc
    if row is None:
        raise NotFound(f"no rule {rule_id}")
    return rule_out(row)


async def delete_rule(pool: asyncpg.Pool, rule_id: int) -> None:
    status = await pool.execute("DELETE FROM alert_rule WHERE id = $1", rule_id)
    if status.endswith(" 0"):
        raise NotFound(f"no rule {rule_id}")
