"""Key rotation for secrets at rest: reseal every sealed value with the newest key.

After IOCHUB_SECRET_KEY is replaced (the old key moved to IOCHUB_PREVIOUS_SECRET_KEYS),
`iochub secrets reseal` rewrites each sealed value under the new key, in one transaction
per table; then the old key can be dropped.
"""

from __future__ import annotations

import asyncpg

from hub.storage.crypto import SecretBox
from hub.storage.database import asyncpg_dsn

# (what, rows to reseal with their sealing context, locked; how to store one back)
SEALED = (
    (
        "camera passwords",
        "SELECT c.device_id AS key, c.password_sealed AS sealed, 'camera:' || d.uid AS context "
        "FROM camera c JOIN device d ON d.id = c.device_id WHERE c.password_sealed IS NOT NULL "
        "FOR UPDATE OF c",
        "UPDATE camera SET password_sealed = $2 WHERE device_id = $1",
    ),
    (
        "webhook secrets",
        "SELECT id AS key, sealed, 'webhook_secret:' || subscription_id AS context "
        "FROM webhook_secret FOR UPDATE",
        "UPDATE webhook_secret SET sealed = $2 WHERE id = $1",
    ),
    (
        "CoAP keys",
        "SELECT k.device_id AS key, k.sealed_material AS sealed, 'oscore:' || d.uid AS context "
        "FROM coap_key k JOIN device d ON d.id = k.device_id FOR UPDATE OF k",
        "UPDATE coap_key SET sealed_material = $2 WHERE device_id = $1",
    ),
)


async def reseal_all(url: str, box: SecretBox) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    counts: dict[str, int] = {}
    try:
        for what, select, update in SEALED:
            async with conn.transaction():
                count = 0
                for row in await conn.fetch(select):
                    resealed = box.reseal(row["sealed"], row["context"])
                    if resealed is not None:
                        await conn.execute(update, row["key"], resealed)
                        count += 1
                counts[what] = count
    finally:
        await conn.close()
    return counts
