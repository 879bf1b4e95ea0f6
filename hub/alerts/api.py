"""Alert and rule routes: list, acknowledge, assign, resolve, comment; rules with dry runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import Body, FromPath, FromQuery, JSONBody, QueryParameter

from hub import merge_patch
from hub.alerts import lifecycle
from hub.alerts.engine import ALERT_ENGINE, AlertEngine
from hub.alerts.rules import Escalation, RuleIn, RulePatch, Scope, Severity, validate
from hub.alerts.simulation import dry_run
from hub.auth import CurrentUser, Permission, Principal, active_user_exists, audit
from hub.cameras import NearbyCameraOut, near_device
from hub.devices import registry
from hub.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from hub.runtime import runtime_of


class AlertOut(msgspec.Struct):
    id: int
    fingerprint: str
    rule: str
    device: str
    device_kind: str
    ward: str | None
    severity: str
    state: str
    value: float | None
    threshold: float | None
    message: str
    started_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    assignee: str | None
    nearby_cameras: list[NearbyCameraOut] = msgspec.field(default_factory=list)
    """Cameras near the alert's device, nearest first (in one alert's answer, not in lists)."""


class AlertPage(msgspec.Struct):
    items: list[AlertOut]
    next_before_id: int | None


class CommentIn(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class CommentOut(msgspec.Struct):
    id: int
    at: datetime
    author: str
    text: str


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    assignee: Annotated[str, msgspec.Meta(max_length=64)] | None


class RuleOut(RuleIn):
    id: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class DryRunIn(msgspec.Struct, forbid_unknown_fields=True):
    rule: RuleIn
    hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 31)] = 24


class DryRunEvent(msgspec.Struct):
    device: str
    severity: str
    fired_at: datetime
    resolved_at: datetime | None
    peak: float


class DryRunOut(msgspec.Struct):
    readings: int
    devices: int
    events: list[DryRunEvent]


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
    )


def pool_of(request: Request[Any, Any, Any]) -> asyncpg.Pool:
    return runtime_of(request).database.pool


async def visible_alert(
    request: Request[Any, Any, Any], principal: Principal, alert_id: int
) -> asyncpg.Record:
    async with pool_of(request).acquire() as conn:
        row = await lifecycle.load(conn, alert_id)
    if not principal.sees_ward(row["ward_id"]):
        raise NotFound(f"no alert {alert_id}")
    return row


async def check_scope_target(rule: RuleIn) -> None:
    """The scope's value must name something that exists."""
    value, kind = rule.scope.value, rule.scope.type
    if kind == "ward":
        (await registry.WardDirectory.load()).ids([value], "scope.value")
    elif kind == "device":
        from hub.devices import Device

        if not await Device.filter(uid=value).exists():
            raise ValidationFailed(
                "unknown device", [FieldProblem("scope.value", f"no device {value!r}")]
            )
    elif kind == "group":
        from hub.devices import DeviceGroup

        if not value.isdigit() or not await DeviceGroup.filter(id=int(value)).exists():
            raise ValidationFailed(
                "unknown group", [FieldProblem("scope.value", f"no group {value!r}")]
            )


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


def ward_list(principal: Principal) -> list[int] | None:
    return sorted(principal.ward_ids) if principal.ward_ids is not None else None


def rule_in(row: asyncpg.Record) -> RuleIn:
    """A stored rule as the definition it was saved from."""
    stored = msgspec.to_builtins(rule_out(row))
    return msgspec.convert({name: stored[name] for name in RuleIn.__struct_fields__}, RuleIn)


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
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def save_rule(pool: asyncpg.Pool, rule: RuleIn, rule_id: int | None = None) -> asyncpg.Record:
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
    )
    try:
        if rule_id is None:
            row = await pool.fetchrow(
                "INSERT INTO alert_rule (name, kind, enabled, scope_type, scope_value, metric, "
                "comparison, threshold, clear_threshold, escalations, for_seconds, severity, "
                "message_template) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10::jsonb,$11,$12,$13) "
                "RETURNING *",
                *args,
            )
        else:
            row = await pool.fetchrow(
                "UPDATE alert_rule SET name=$1, kind=$2, enabled=$3, scope_type=$4, scope_value=$5, "
                "metric=$6, comparison=$7, threshold=$8, clear_threshold=$9, escalations=$10::jsonb, "
                "for_seconds=$11, severity=$12, message_template=$13, updated_at=now() "
                "WHERE id=$14 RETURNING *",
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
    return row


async def checked(rule: RuleIn) -> RuleIn:
    if problems := validate(rule):
        raise ValidationFailed("the rule is not valid", problems)
    await check_scope_target(rule)
    return rule


class AlertController(Controller):
    path = "/api/v1/alerts"
    tags = ["alerts"]

    @get("/")
    async def list_alerts(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        states: Annotated[
            list[str] | None,
            QueryParameter(name="state", description="firing, acknowledged, resolved"),
        ] = None,
        severity: FromQuery[Severity | None] = None,
        ward: Annotated[str | None, QueryParameter(max_length=32)] = None,
        device: Annotated[str | None, QueryParameter(max_length=128)] = None,
        open: Annotated[bool, QueryParameter(description="Only alerts not resolved.")] = False,
        before_id: Annotated[int | None, QueryParameter(ge=1)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> AlertPage:
        """Alerts in your wards, newest first."""
        principal.require(Permission.DEVICES_READ)
        wards = sorted(principal.ward_ids) if principal.ward_ids is not None else None
        rows = await pool_of(request).fetch(
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
            open,
            before_id,
            limit + 1,
        )
        items = [alert_out(r) for r in rows[:limit]]
        return AlertPage(items, items[-1].id if len(rows) > limit else None)

    @get("/{alert_id:int}")
    async def get_alert(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> AlertOut:
        principal.require(Permission.DEVICES_READ)
        row = await visible_alert(request, principal, alert_id)
        alert = alert_out(row)
        scope = sorted(principal.ward_ids) if principal.ward_ids is not None else None
        async with pool_of(request).acquire() as conn:
            alert.nearby_cameras = await near_device(conn, row["device_uid"], ward_ids=scope)
        return alert

    @post("/{alert_id:int}/acknowledge", status_code=200)
    async def acknowledge(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> AlertOut:
        principal.require(Permission.ALERTS_HANDLE)
        await visible_alert(request, principal, alert_id)
        row = await lifecycle.acknowledge(pool_of(request), alert_id, principal.username)
        await audit.record(
            principal, "alert.acknowledge", "alert", alert_id, ward_id=row["ward_id"]
        )
        return alert_out(row)

    @post("/{alert_id:int}/resolve", status_code=200)
    async def resolve(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> AlertOut:
        principal.require(Permission.ALERTS_HANDLE)
        await visible_alert(request, principal, alert_id)
        row = await lifecycle.resolve_manually(pool_of(request), alert_id, principal.username)
        if row["rule_id"] is not None:
            engine_of(request).resolved_by_hand(
                row["rule_id"], row["device_id"], row["resolved_at"]
            )
        await audit.record(principal, "alert.resolve", "alert", alert_id, ward_id=row["ward_id"])
        return alert_out(row)

    @post("/{alert_id:int}/assign", status_code=200)
    async def assign(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        alert_id: FromPath[int],
        data: JSONBody[AssignIn],
    ) -> AlertOut:
        principal.require(Permission.ALERTS_HANDLE)
        await visible_alert(request, principal, alert_id)
        if data.assignee is not None and not await active_user_exists(data.assignee):
            raise ValidationFailed(
                "unknown user", [FieldProblem("assignee", f"no user {data.assignee!r}")]
            )
        row = await lifecycle.assign(pool_of(request), alert_id, data.assignee, principal.username)
        await audit.record(
            principal,
            "alert.assign",
            "alert",
            alert_id,
            ward_id=row["ward_id"],
            after={"assignee": data.assignee},
        )
        return alert_out(row)

    @get("/{alert_id:int}/comments")
    async def comments(
        self, request: Request[Any, Any, Any], principal: CurrentUser, alert_id: FromPath[int]
    ) -> list[CommentOut]:
        await visible_alert(request, principal, alert_id)
        rows = await pool_of(request).fetch(
            "SELECT * FROM alert_comment WHERE alert_id = $1 ORDER BY id", alert_id
        )
        return [CommentOut(r["id"], r["at"], r["author"], r["text"]) for r in rows]

    @post("/{alert_id:int}/comments", status_code=201)
    async def add_comment(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        alert_id: FromPath[int],
        data: JSONBody[CommentIn],
    ) -> CommentOut:
        principal.require(Permission.ALERTS_HANDLE)
        alert = await visible_alert(request, principal, alert_id)
        note = await lifecycle.comment(pool_of(request), alert_id, principal.username, data.text)
        # A comment is a lifecycle action like the others: who said what, and when.
        await audit.record(
            principal,
            "alert.comment",
            "alert",
            alert_id,
            ward_id=alert["ward_id"],
            after={"comment_id": note["id"], "text": note["text"], "at": note["at"].isoformat()},
        )
        return CommentOut(note["id"], note["at"], note["author"], note["text"])


class RuleController(Controller):
    path = "/api/v1/alert-rules"
    tags = ["alerts"]

    @get("/")
    async def list_rules(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> list[RuleOut]:
        """Rules that apply in your wards."""
        principal.require(Permission.DEVICES_READ)
        rows = await pool_of(request).fetch(
            f"SELECT * FROM ({VISIBLE_RULES}) r ORDER BY id", ward_list(principal)
        )
        return [rule_out(r) for r in rows]

    @post("/", status_code=201)
    async def create_rule(
        self, request: Request[Any, Any, Any], principal: CurrentUser, data: JSONBody[RuleIn]
    ) -> RuleOut:
        """A threshold rule (metric, comparison, threshold, clear threshold, for) or a health
        rule (offline longer than for_seconds; degraded)."""
        principal.require(Permission.RULES_WRITE)
        row = await save_rule(pool_of(request), await checked(data))
        await audit.record(
            principal, "rule.create", "alert_rule", row["id"], after=msgspec.to_builtins(data)
        )
        await engine_of(request).refresh()
        return rule_out(row)

    @get("/{rule_id:int}")
    async def get_rule(
        self, request: Request[Any, Any, Any], principal: CurrentUser, rule_id: FromPath[int]
    ) -> RuleOut:
        principal.require(Permission.DEVICES_READ)
        row = await pool_of(request).fetchrow(
            f"SELECT * FROM ({VISIBLE_RULES}) r WHERE id = $2", ward_list(principal), rule_id
        )
        if row is None:
            raise NotFound(f"no rule {rule_id}")
        return rule_out(row)

    @patch("/{rule_id:int}")
    async def update_rule(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        rule_id: FromPath[int],
        data: Annotated[RulePatch, Body(media_type=merge_patch.MEDIA_TYPE)],
    ) -> RuleOut:
        """Change a rule with a JSON Merge Patch (RFC 7396): send only what changes (null
        resets a field to its default); the result is checked as a whole rule."""
        principal.require(Permission.RULES_WRITE)
        before = await pool_of(request).fetchrow("SELECT * FROM alert_rule WHERE id = $1", rule_id)
        if before is None:
            raise NotFound(f"no rule {rule_id}")
        rule = merge_patch.apply(rule_in(before), data, RuleIn)
        row = await save_rule(pool_of(request), await checked(rule), rule_id)
        await audit.record(
            principal,
            "rule.update",
            "alert_rule",
            rule_id,
            before=msgspec.to_builtins(rule_out(before)),
            after=msgspec.to_builtins(rule),
        )
        await engine_of(request).refresh()
        return rule_out(row)

    @delete("/{rule_id:int}", status_code=204)
    async def delete_rule(
        self, request: Request[Any, Any, Any], principal: CurrentUser, rule_id: FromPath[int]
    ) -> None:
        principal.require(Permission.RULES_WRITE)
        status = await pool_of(request).execute("DELETE FROM alert_rule WHERE id = $1", rule_id)
        if status.endswith(" 0"):
            raise NotFound(f"no rule {rule_id}")
        await audit.record(principal, "rule.delete", "alert_rule", rule_id)
        await engine_of(request).refresh()

    @post("/dry-run", status_code=200)
    async def dry_run(
        self, request: Request[Any, Any, Any], principal: CurrentUser, data: JSONBody[DryRunIn]
    ) -> DryRunOut:
        """What a threshold rule would have raised over recent data; nothing is stored."""
        principal.require(Permission.DEVICES_READ)
        rule = await checked(data.rule)
        if rule.kind != "threshold":
            raise ValidationFailed(
                "dry runs replay readings", [FieldProblem("rule.kind", "use a threshold rule")]
            )
        end = datetime.now(UTC)
        result = await dry_run(
            pool_of(request), rule, end - timedelta(hours=data.hours), end, principal.ward_ids
        )
        return DryRunOut(
            result.readings,
            result.devices,
            [
                DryRunEvent(e.device, e.severity, e.fired_at, e.resolved_at, e.peak)
                for e in result.events
            ],
        )


def engine_of(request: Request[Any, Any, Any]) -> AlertEngine:
    return runtime_of(request).get(ALERT_ENGINE)
