"""Rotating the secret key: sealed values move to the new key, the old one can go."""

from __future__ import annotations

import asyncpg
import pytest

from hub.storage.crypto import SecretBox, SecretBoxError
from hub.storage.reseal import reseal_all


async def test_reseal_moves_every_secret_to_the_new_key(
    clients: object, db: asyncpg.Connection, database_url: str
) -> None:
    old, new = SecretBox("the old key"), SecretBox("the new key", ["the old key"])
    subscription = await db.fetchval(
        "INSERT INTO webhook_subscription (name, url) VALUES ('IOC', 'http://127.0.0.1:9/h') "
        "RETURNING id"
    )
    sealed = old.seal("whsec_c2VjcmV0", f"webhook_secret:{subscription}")
    await db.execute(
        "INSERT INTO webhook_secret (subscription_id, sealed) VALUES ($1, $2)", subscription, sealed
    )

    assert (await reseal_all(database_url, new))["webhook secrets"] == 1
    assert (await reseal_all(database_url, new))["webhook secrets"] == 0  # already current
    stored = await db.fetchval("SELECT sealed FROM webhook_secret")
    assert (
        SecretBox("the new key").open(stored, f"webhook_secret:{subscription}") == "whsec_c2VjcmV0"
    )
    with pytest.raises(SecretBoxError):
        old.open(stored, f"webhook_secret:{subscription}")
    with pytest.raises(SecretBoxError):  # bound to its row: useless anywhere else
        SecretBox("the new key").open(stored, "webhook_secret:999")
