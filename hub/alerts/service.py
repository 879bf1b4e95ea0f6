"""What people do with alerts and rules, scoped to their wards and audited; handlers call
these, these call the store (SQL) and the lifecycle (state changes with outbox rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import msgspec

from hub import merge_patch
from hub.alerts import lifecycle, store
from hub.alerts.engine import AlertEngine
from hub.alerts.rules import RuleIn, RulePatch, validate
from hub.alerts.schemas import AlertOut, AlertPage, CommentOut, DryRunEvent, DryRunOut, RuleOut
from hub.alerts.simulation import dry_run
from hub.auth import Permission, Principal, active_user_exists, audit
from hub.cameras import near_device
from hub.devices import Device, DeviceGroup, registry
from hub.errors import FieldProblem, NotFound, ValidationFailed
from hub.runtime import RuntimeKey


def ward_list(principal: Principal) -> list[int] | None:
    return sorted(principal.ward_ids) if principal.ward_ids is not None else None


@dataclass(frozen=True, slots=True)
class AlertQuery:
    states: list[str] | None = None
    severity: str | None = None
    ward: str | None = None
    device: str | None = None
    open_only: bool = False
    before_id: int | None = None
    limit: int = 100


@dataclass
class Alerts:
    """The alerts slice's operations over one pool and the running rule engine."""

    pool: asyncpg.Pool
    engine: AlertEngine

    async def visible(self, principal: Principal, alert_id: int) -> asyncpg.Record:
        row = await store.load_alert(self.pool, alert_id)
        if not principal.sees_ward(row["ward_id"]):
            raise NotFound(f"no alert {alert_id}")
        return row

    async def page(self, principal: Principal, query: AlertQuery) -> AlertPage:
        principal.require(Permission.DEVICES_READ)
        rows = await store.list_alerts(
            self.pool,
            ward_list(principal),
            query.states,
            query.severity,
            query.ward,
            query.device,
            query.open_only,
            query.before_id,
            query.limit + 1,
        )
        items = [store.alert_out(r) for r in rows[: query.limit]]
        return AlertPage(items, items[-1].id if len(rows) > query.limit else None)

    async def get(self, principal: Principal, alert_id: int) -> AlertOut:
        principal.require(Permission.DEVICES_READ)
        row = await self.visible(principal, alert_id)
        alert = store.alert_out(row)
        async with self.pool.acquire() as conn:
            alert.nearby_cameras = await near_device(
                conn, row["device_uid"], ward_ids=ward_list(principal)
            )
        return alert

    async def acknowledge(self, principal: Principal, alert_id: int) -> AlertOut:
        principal.require(Permission.ALERTS_HANDLE)
        await self.visible(principal, alert_id)
        row = await lifecycle.acknowledge(self.pool, alert_id, principal.username)
        await audit.record(
            principal, "alert.acknowledge", "alert", alert_id, ward_id=row["ward_id"]
        )
        return store.alert_out(row)

    async def resolve(self, principal: Principal, alert_id: int) -> AlertOut:
        principal.require(Permission.ALERTS_HANDLE)
        await self.visible(principal, alert_id)
        row = await lifecycle.resolve_manually(self.pool, alert_id, principal.username)
        if row["rule_id"] is not None:
            self.engine.resolved_by_hand(row["rule_id"], row["device_id"], row["resolved_at"])
        await audit.record(principal, "alert.resolve", "alert", alert_id, ward_id=row["ward_id"])
        return store.alert_out(row)

    async def assign(self, principal: Principal, alert_id: int, assignee: str | None) -> AlertOut:
        principal.require(Permission.ALERTS_HANDLE)
        await self.visible(principal, alert_id)
        if assignee is not None and not await active_user_exists(assignee):
            raise ValidationFailed(
                "unknown user", [FieldProblem("assignee", f"no user {assignee!r}")]
            )
        row = await lifecycle.assign(self.pool, alert_id, assignee, principal.username)
        await audit.record(
            principal,
            "alert.assign",
            "alert",
            alert_id,
            ward_id=row["ward_id"],
            after={"assignee": assignee},
        )
        return store.alert_out(row)

    async def comments(self, principal: Principal, alert_id: int) -> list[CommentOut]:
        await self.visible(principal, alert_id)
        return await store.comments(self.pool, alert_id)

    async def comment(self, principal: Principal, alert_id: int, text: str) -> CommentOut:
        principal.require(Permission.ALERTS_HANDLE)
        alert = await self.visible(principal, alert_id)
        note = await lifecycle.comment(self.pool, alert_id, principal.username, text)
        # A comment is a lifecycle action like the others: who said what, and when.
        await audit.record(
            principal,
            "alert.comment",
            "alert",
            alert_id,
            ward_id=alert["ward_id"],
            after={"comment_id": note["id"], "text": note["text"], "at": note["at"].isoformat()},
        )
        return store.comment_out(note)

    async def rules(self, principal: Principal) -> list[RuleOut]:
        principal.require(Permission.DEVICES_READ)
        return await store.visible_rules(self.pool, ward_list(principal))

    async def rule(self, principal: Principal, rule_id: int) -> RuleOut:
        principal.require(Permission.DEVICES_READ)
        return await store.visible_rule(self.pool, ward_list(principal), rule_id)

    async def create_rule(self, principal: Principal, rule: RuleIn) -> RuleOut:
        principal.require(Permission.RULES_WRITE)
        saved = await store.save_rule(self.pool, await checked(rule))
        await audit.record(
            principal, "rule.create", "alert_rule", saved.id, after=msgspec.to_builtins(rule)
        )
        await self.engine.refresh()
        return saved

    async def update_rule(self, principal: Principal, rule_id: int, patch: RulePatch) -> RuleOut:
        """A JSON Merge Patch (RFC 7396) applied to the stored rule, checked as a whole."""
        principal.require(Permission.RULES_WRITE)
        before = await store.rule(self.pool, rule_id)
        if before is None:
            raise NotFound(f"no rule {rule_id}")
        rule = merge_patch.apply(rule_in(before), patch, RuleIn)
        saved = await store.save_rule(self.pool, await checked(rule), rule_id)
        await audit.record(
            principal,
            "rule.update",
            "alert_rule",
            rule_id,
            before=msgspec.to_builtins(before),
            after=msgspec.to_builtins(rule),
        )
        await self.engine.refresh()
        return saved

    async def delete_rule(self, principal: Principal, rule_id: int) -> None:
        principal.require(Permission.RULES_WRITE)
        await store.delete_rule(self.pool, rule_id)
        await audit.record(principal, "rule.delete", "alert_rule", rule_id)
        await self.engine.refresh()

    async def dry_run(self, principal: Principal, rule: RuleIn, hours: int) -> DryRunOut:
        """What a threshold rule would have raised over recent data; nothing is stored."""
        principal.require(Permission.DEVICES_READ)
        rule = await checked(rule)
        if rule.kind != "threshold":
            raise ValidationFailed(
                "dry runs replay readings", [FieldProblem("rule.kind", "use a threshold rule")]
            )
        end = self.engine.clock()
        result = await dry_run(
            self.pool, rule, end - timedelta(hours=hours), end, principal.ward_ids, self.engine.zone
        )
        return DryRunOut(
            result.readings,
            result.devices,
            [
                DryRunEvent(e.device, e.severity, e.fired_at, e.resolved_at, e.peak)
                for e in result.events
            ],
        )


def rule_in(rule: RuleOut) -> RuleIn:
    """A stored rule as the definition it was saved from."""
    stored = msgspec.to_builtins(rule)
    return msgspec.convert({name: stored[name] for name in RuleIn.__struct_fields__}, RuleIn)


async def check_scope_target(rule: RuleIn) -> None:
    """The scope's value must name something that exists."""
    value, kind = rule.scope.value, rule.scope.type
    if kind == "ward":
        (await registry.WardDirectory.load()).ids([value], "scope.value")
    elif kind == "device":
        if not await Device.filter(uid=value).exists():
            raise ValidationFailed(
                "unknown device", [FieldProblem("scope.value", f"no device {value!r}")]
            )
    elif kind == "group" and (
        not value.isdigit() or not await DeviceGroup.filter(id=int(value)).exists()
    ):
        raise ValidationFailed(
            "unknown group", [FieldProblem("scope.value", f"no group {value!r}")]
        )


async def checked(rule: RuleIn) -> RuleIn:
    if problems := validate(rule):
        raise ValidationFailed("the rule is not valid", problems)
    await check_scope_target(rule)
    return rule


ALERTS: RuntimeKey[Alerts] = RuntimeKey("alerts")
