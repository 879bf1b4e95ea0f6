"""Webhook subscriptions and delivery logs under /api/v1 (admins only); Grafana's log too."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

from litestar import Controller, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, FromPath, JSONBody, QueryParameter

from hub import merge_patch
from hub.auth import CurrentUser, Principal, audit
from hub.errors import Conflict, Forbidden
from hub.integrations import deliveries, subscriptions
from hub.integrations.runtime import INTEGRATIONS, Integrations
from hub.integrations.schemas import (
    DeliveryDetail,
    DeliveryOut,
    DeliveryStatus,
    RedeliveryReport,
    SecretRotated,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)
from hub.runtime import slice_object

MAX_PAGE = 500
IntegrationsDep: TypeAlias = NamedDependency[Integrations]
OBJECT_TYPE = "webhook_subscription"
StatusFilter = Annotated[
    DeliveryStatus | None, QueryParameter(description="Only deliveries in this state.")
]
Before = Annotated[
    int | None,
    QueryParameter(ge=1, description="Deliveries older than this id (the last id of a page)."),
]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)]


def admins_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    user = connection.scope.get("user")
    if not (isinstance(user, Principal) and user.role.value == "admin"):
        raise Forbidden("only an admin may manage alert delivery")


async def _detail(integrations: Integrations, lane: str, delivery_id: int) -> DeliveryDetail:
    return await deliveries.detail(integrations.pool, lane, delivery_id)


async def _list(
    integrations: Integrations,
    lane: str,
    status: DeliveryStatus | None,
    before: int | None,
    limit: int,
) -> list[DeliveryOut]:
    return await deliveries.page(integrations.pool, lane, status, before, limit)


async def _redeliver(integrations: Integrations, lane: str, delivery_id: int) -> DeliveryOut:
    return await deliveries.redeliver(
        integrations.pool,
        lane,
        delivery_id,
        give_up_after_s=integrations.settings.give_up_after_s,
    )


class WebhookController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]
    guards = [admins_only]
    dependencies = {"integrations": Provide(slice_object(INTEGRATIONS), sync_to_thread=False)}

    @post("/", status_code=201)
    async def create_subscription(
        self, principal: CurrentUser, integrations: IntegrationsDep, data: JSONBody[SubscriptionIn]
    ) -> SubscriptionCreated:
        """Subscribe a URL to alert events. The answer holds the signing secret, once."""
        subscription, secret = await subscriptions.create(integrations.pool, integrations.box, data)
        await audit.record(
            principal,
            "webhook.create",
            OBJECT_TYPE,
            subscription.id,
            after=subscriptions.public(subscription),
        )
        return SubscriptionCreated(subscription=subscription, secret=secret)

    @get("/")
    async def list_subscriptions(self, integrations: IntegrationsDep) -> list[SubscriptionOut]:
        return await subscriptions.list_all(integrations.pool)

    @get("/{subscription_id:int}")
    async def get_subscription(
        self, integrations: IntegrationsDep, subscription_id: FromPath[int]
    ) -> SubscriptionOut:
        return await subscriptions.get(integrations.pool, subscription_id)

    @patch("/{subscription_id:int}")
    async def update_subscription(
        self,
        principal: CurrentUser,
        integrations: IntegrationsDep,
        subscription_id: FromPath[int],
        data: Annotated[SubscriptionPatch, Body(media_type=merge_patch.MEDIA_TYPE)],
    ) -> SubscriptionOut:
        """Change the name, URL, filters or active flag; reactivating clears the reason."""
        before, after = await subscriptions.update(integrations.pool, subscription_id, data)
        await audit.record(
            principal,
            "webhook.update",
            OBJECT_TYPE,
            subscription_id,
            before=subscriptions.public(before),
            after=subscriptions.public(after),
        )
        return after

    @delete("/{subscription_id:int}", status_code=204)
    async def delete_subscription(
        self, principal: CurrentUser, integrations: IntegrationsDep, subscription_id: FromPath[int]
    ) -> None:
        """Remove a subscription with its secrets and delivery log."""
        before = await subscriptions.delete(integrations.pool, subscription_id)
        await audit.record(
            principal,
            "webhook.delete",
            OBJECT_TYPE,
            subscription_id,
            before=subscriptions.public(before),
        )

    @post("/{subscription_id:int}/rotate-secret", status_code=200)
    async def rotate_secret(
        self,
        principal: CurrentUser,
        integrations: IntegrationsDep,
        subscription_id: FromPath[int],
        overlap_hours: Annotated[
            float | None,
            QueryParameter(
                ge=0, le=720, description="How long the old secret keeps signing (default 24)."
            ),
        ] = None,
    ) -> SecretRotated:
        """A new signing secret, shown once; the old one signs beside it for the overlap."""
        overlap = (
            integrations.settings.rotation_overlap_hours if overlap_hours is None else overlap_hours
        )
        secret, previous_expires_at = await subscriptions.rotate_secret(
            integrations.pool, integrations.box, subscription_id, overlap
        )
        await audit.record(
            principal,
            "webhook.rotate_secret",
            OBJECT_TYPE,
            subscription_id,
            after={
                "previous_secret_expires_at": previous_expires_at
                and previous_expires_at.isoformat()
            },
        )
        return SecretRotated(secret=secret, previous_secret_expires_at=previous_expires_at)

    @post("/{subscription_id:int}/test", status_code=202)
    async def send_test_event(
        self, principal: CurrentUser, integrations: IntegrationsDep, subscription_id: FromPath[int]
    ) -> DeliveryOut:
        """Send a vn.iochub.webhook.test event to this subscription only; follow its delivery."""
        subscription = await subscriptions.get(integrations.pool, subscription_id)
        if not subscription.active:
            raise Conflict("the subscription is inactive; activate it to send it events")
        delivery_id = await deliveries.send_test_event(
            integrations.pool,
            subscription_id,
            {
                "message": "A test event from iochub: this endpoint receives alert events.",
                "subscription_id": subscription_id,
                "subscription": subscription.name,
                "requested_by": principal.username,
            },
            give_up_after_s=integrations.settings.give_up_after_s,
        )
        await audit.record(
            principal, "webhook.test", OBJECT_TYPE, subscription_id, after={"delivery": delivery_id}
        )
        lane = deliveries.webhook_lane(subscription_id)
        return (await _detail(integrations, lane, delivery_id)).delivery

    @get("/{subscription_id:int}/deliveries")
    async def list_deliveries(
        self,
        integrations: IntegrationsDep,
        subscription_id: FromPath[int],
        status: StatusFilter = None,
        before: Before = None,
        limit: Limit = 100,
    ) -> list[DeliveryOut]:
        """This subscription's deliveries, newest first, a page at a time."""
        await subscriptions.get(integrations.pool, subscription_id)
        lane = deliveries.webhook_lane(subscription_id)
        return await _list(integrations, lane, status, before, limit)

    @get("/{subscription_id:int}/deliveries/{delivery_id:int}")
    async def get_delivery(
        self,
        integrations: IntegrationsDep,
        subscription_id: FromPath[int],
        delivery_id: FromPath[int],
    ) -> DeliveryDetail:
        """One delivery with its event data and the log of every attempt."""
        return await _detail(integrations, deliveries.webhook_lane(subscription_id), delivery_id)

    @post("/{subscription_id:int}/deliveries/{delivery_id:int}/redeliver", status_code=202)
    async def redeliver(
        self,
        principal: CurrentUser,
        integrations: IntegrationsDep,
        subscription_id: FromPath[int],
        delivery_id: FromPath[int],
    ) -> DeliveryOut:
        """Send a delivery again now (same webhook-id), with a fresh retry window."""
        lane = deliveries.webhook_lane(subscription_id)
        delivery = await _redeliver(integrations, lane, delivery_id)
        await audit.record(
            principal,
            "webhook.redeliver",
            OBJECT_TYPE,
            subscription_id,
            after={"delivery": delivery_id},
        )
        return delivery

    @post("/{subscription_id:int}/deliveries/redeliver-dead", status_code=202)
    async def redeliver_dead(
        self, principal: CurrentUser, integrations: IntegrationsDep, subscription_id: FromPath[int]
    ) -> RedeliveryReport:
        """Queue every dead-lettered delivery of this subscription again."""
        await subscriptions.get(integrations.pool, subscription_id)
        queued = await deliveries.redeliver_dead(
            integrations.pool,
            lane=deliveries.webhook_lane(subscription_id),
            give_up_after_s=integrations.settings.give_up_after_s,
        )
        await audit.record(
            principal,
            "webhook.redeliver_dead",
            OBJECT_TYPE,
            subscription_id,
            after={"queued": queued},
        )
        return RedeliveryReport(queued=queued)


class GrafanaDeliveryController(Controller):
    path = "/api/v1/grafana/deliveries"
    tags = ["webhooks"]
    guards = [admins_only]
    dependencies = {"integrations": Provide(slice_object(INTEGRATIONS), sync_to_thread=False)}

    @get("/")
    async def list_annotation_deliveries(
        self,
        integrations: IntegrationsDep,
        status: StatusFilter = None,
        before: Before = None,
        limit: Limit = 100,
    ) -> list[DeliveryOut]:
        """Alert annotations sent (or being sent) to Grafana, newest first."""
        return await _list(integrations, deliveries.GRAFANA_LANE, status, before, limit)

    @get("/{delivery_id:int}")
    async def get_annotation_delivery(
        self, integrations: IntegrationsDep, delivery_id: FromPath[int]
    ) -> DeliveryDetail:
        return await _detail(integrations, deliveries.GRAFANA_LANE, delivery_id)

    @post("/{delivery_id:int}/redeliver", status_code=202)
    async def redeliver_annotation(
        self, principal: CurrentUser, integrations: IntegrationsDep, delivery_id: FromPath[int]
    ) -> DeliveryOut:
        delivery = await _redeliver(integrations, deliveries.GRAFANA_LANE, delivery_id)
        await audit.record(
            principal, "grafana.redeliver", "outbox_delivery", delivery_id, after={"queued": 1}
        )
        return delivery

    @post("/redeliver-dead", status_code=202)
    async def redeliver_dead_annotations(
        self, principal: CurrentUser, integrations: IntegrationsDep
    ) -> RedeliveryReport:
        queued = await deliveries.redeliver_dead(
            integrations.pool,
            lane=deliveries.GRAFANA_LANE,
            give_up_after_s=integrations.settings.give_up_after_s,
        )
        await audit.record(
            principal,
            "grafana.redeliver_dead",
            "outbox_delivery",
            "grafana",
            after={"queued": queued},
        )
        return RedeliveryReport(queued=queued)
