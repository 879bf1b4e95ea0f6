"""Signatures checked by independent verifiers; secret rotation; secrets sealed at rest."""

from __future__ import annotations

import base64

import pytest

from hub.integrations import subscriptions
from hub.integrations.schemas import SubscriptionIn
from hub.storage.crypto import SecretBox, SecretBoxError
from tests.integration.integrations.conftest import (
    HUB_KEY,
    DeliveryStore,
    enqueue_alert,
    verify_standard_webhook,
)
from tests.support.webhook_receiver import ReceivedRequest, WebhookReceiver


async def one_event(
    store: DeliveryStore, receiver: WebhookReceiver, seq: int = 0
) -> ReceivedRequest:
    before = len(receiver.accepted)
    async with store.engine():
        await enqueue_alert(store.pool, "sen-1", seq, ward_id=store.wards["ward-a"])
        await receiver.wait_accepted(before + 1)
    return receiver.requests[-1]


async def test_signature_verifies_per_the_specification(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    _, secret = await subscriptions.create(
        store.pool, store.box, SubscriptionIn(name="ioc", url=receiver.url)
    )
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    request = await one_event(store, receiver)

    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert verify_standard_webhook(secret, request.headers, request.body)
    assert not verify_standard_webhook(
        secret, request.headers, request.body.replace(b"sen-1", b"sen-2")
    )
    other = "whsec_" + base64.b64encode(b"\x01" * 32).decode()
    assert not verify_standard_webhook(other, request.headers, request.body)


async def test_signature_verifies_with_the_standardwebhooks_package(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    webhooks = pytest.importorskip("standardwebhooks.webhooks")
    _, secret = await subscriptions.create(
        store.pool, store.box, SubscriptionIn(name="ioc", url=receiver.url)
    )
    request = await one_event(store, receiver)
    payload = webhooks.Webhook(secret).verify(request.body, request.headers)
    assert payload["data"]["device_uid"] == "sen-1"


async def test_rotation_signs_with_both_secrets_during_the_overlap(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    created, old_secret = await subscriptions.create(
        store.pool, store.box, SubscriptionIn(name="ioc", url=receiver.url)
    )
    new_secret, old_expires_at = await subscriptions.rotate_secret(
        store.pool, store.box, created.id, overlap_hours=24
    )
    assert new_secret != old_secret and old_expires_at is not None
    request = await one_event(store, receiver, seq=0)

    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert verify_standard_webhook(old_secret, request.headers, request.body)
    assert verify_standard_webhook(new_secret, request.headers, request.body)
    for signature in signatures:
        alone = {**request.headers, "webhook-signature": signature}
        matches = [
            verify_standard_webhook(s, alone, request.body) for s in (old_secret, new_secret)
        ]
        assert matches.count(True) == 1, "each signature is made with one of the secrets"

    # Rotating with no overlap retires both earlier secrets at once.
    newest, no_overlap = await subscriptions.rotate_secret(
        store.pool, store.box, created.id, overlap_hours=0
    )
    assert no_overlap is None
    request = await one_event(store, receiver, seq=1)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert verify_standard_webhook(newest, request.headers, request.body)
    assert not verify_standard_webhook(new_secret, request.headers, request.body)
    assert not verify_standard_webhook(old_secret, request.headers, request.body)


async def test_secrets_are_sealed_at_rest_and_bound_to_their_subscription(
    store: DeliveryStore, receiver: WebhookReceiver
) -> None:
    first, secret = await subscriptions.create(
        store.pool, store.box, SubscriptionIn(name="ioc", url=receiver.url)
    )
    second, _ = await subscriptions.create(
        store.pool, store.box, SubscriptionIn(name="other", url=receiver.url, active=False)
    )
    sealed: str = await store.pool.fetchval(
        "SELECT sealed FROM webhook_secret WHERE subscription_id = $1", first.id
    )
    ciphertext = base64.b64decode(sealed.rsplit(":", 1)[1])
    assert secret not in sealed and base64.b64decode(secret[6:]) not in ciphertext
    assert store.box.open(sealed, f"webhook_secret:{first.id}") == secret
    with pytest.raises(SecretBoxError):
        store.box.open(sealed, f"webhook_secret:{second.id}")
    with pytest.raises(SecretBoxError):
        SecretBox("another hub key").open(sealed, f"webhook_secret:{first.id}")
    # After a change of hub key, the previous key still opens what it sealed.
    assert SecretBox("a new key", [HUB_KEY]).open(sealed, f"webhook_secret:{first.id}") == secret

    # A hub with the wrong key cannot sign, says so in the log, and sends nothing unsigned.
    store.box = SecretBox("another hub key")
    async with store.engine():
        await enqueue_alert(store.pool, "sen-1", 0, ward_id=store.wards["ward-a"])
        await store.wait_until("SELECT count(*) >= 2 FROM outbox_delivery_attempt")
    assert receiver.requests == []
    error = await store.pool.fetchval("SELECT error FROM outbox_delivery_attempt LIMIT 1")
    assert error.startswith("cannot sign") and secret not in error
