"""Alert and rule routes: list, acknowledge, assign, resolve, comment; rules with dry runs."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import Body, FromPath, FromQuery, JSONBody, QueryParameter

from hub import merge_patch
from hub.alerts.rules import RuleIn, RulePatch, Severity
from hub.alerts.schemas import (
    AlertOut,
    AlertPage,
    AssignIn,
    CommentIn,
    CommentOut,
    DryRunIn,
    DryRunOut,
    RuleOut,
)
from hub.alerts.service import ALERTS, AlertQuery, Alerts
from hub.auth import CurrentUser
from hub.runtime import slice_object

AlertsDep: TypeAlias = NamedDependency[Alerts]
DEPENDENCIES = {"alerts": Provide(slice_object(ALERTS), sync_to_thread=False)}


class AlertController(Controller):
    path = "/api/v1/alerts"
    tags = ["alerts"]
    dependencies = DEPENDENCIES

    @get("/")
    async def list_alerts(
        self,
        alerts: AlertsDep,
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
        query = AlertQuery(states, severity, ward, device, open, before_id, limit)
        return await alerts.page(principal, query)

    @get("/{alert_id:int}")
    async def get_alert(
        self, alerts: AlertsDep, principal: CurrentUser, alert_id: FromPath[int]
    ) -> AlertOut:
        return await alerts.get(principal, alert_id)

    @post("/{alert_id:int}/acknowledge", status_code=200)
    async def acknowledge(
        self, alerts: AlertsDep, principal: CurrentUser, alert_id: FromPath[int]
    ) -> AlertOut:
        return await alerts.acknowledge(principal, alert_id)

    @post("/{alert_id:int}/resolve", status_code=200)
    async def resolve(
        self, alerts: AlertsDep, principal: CurrentUser, alert_id: FromPath[int]
    ) -> AlertOut:
        return await alerts.resolve(principal, alert_id)

    @post("/{alert_id:int}/assign", status_code=200)
    async def assign(
        self,
        alerts: AlertsDep,
        principal: CurrentUser,
        alert_id: FromPath[int],
        data: JSONBody[AssignIn],
    ) -> AlertOut:
        return await alerts.assign(principal, alert_id, data.assignee)

    @get("/{alert_id:int}/comments")
    async def comments(
        self, alerts: AlertsDep, principal: CurrentUser, alert_id: FromPath[int]
    ) -> list[CommentOut]:
        return await alerts.comments(principal, alert_id)

    @post("/{alert_id:int}/comments", status_code=201)
    async def add_comment(
        self,
        alerts: AlertsDep,
        principal: CurrentUser,
        alert_id: FromPath[int],
        data: JSONBody[CommentIn],
    ) -> CommentOut:
        return await alerts.comment(principal, alert_id, data.text)


class RuleController(Controller):
    path = "/api/v1/alert-rules"
    tags = ["alerts"]
    dependencies = DEPENDENCIES

    @get("/")
    async def list_rules(self, alerts: AlertsDep, principal: CurrentUser) -> list[RuleOut]:
        """Rules that apply in your wards."""
        return await alerts.rules(principal)

    @post("/", status_code=201)
    async def create_rule(
        self, alerts: AlertsDep, principal: CurrentUser, data: JSONBody[RuleIn]
    ) -> RuleOut:
        """A threshold rule (metric, comparison, threshold, clear threshold, for) or a health
        rule (offline longer than for_seconds; degraded)."""
        return await alerts.create_rule(principal, data)

    @get("/{rule_id:int}")
    async def get_rule(
        self, alerts: AlertsDep, principal: CurrentUser, rule_id: FromPath[int]
    ) -> RuleOut:
        return await alerts.rule(principal, rule_id)

    @patch("/{rule_id:int}")
    async def update_rule(
        self,
        alerts: AlertsDep,
        principal: CurrentUser,
        rule_id: FromPath[int],
        data: Annotated[RulePatch, Body(media_type=merge_patch.MEDIA_TYPE)],
    ) -> RuleOut:
        """Change a rule with a JSON Merge Patch (RFC 7396): send only what changes (null
        resets a field to its default); the result is checked as a whole rule."""
        return await alerts.update_rule(principal, rule_id, data)

    @delete("/{rule_id:int}", status_code=204)
    async def delete_rule(
        self, alerts: AlertsDep, principal: CurrentUser, rule_id: FromPath[int]
    ) -> None:
        await alerts.delete_rule(principal, rule_id)

    @post("/dry-run", status_code=200)
    async def dry_run(
        self, alerts: AlertsDep, principal: CurrentUser, data: JSONBody[DryRunIn]
    ) -> DryRunOut:
        """What a threshold rule would have raised over recent data; nothing is stored."""
        return await alerts.dry_run(principal, data.rule, data.hours)
