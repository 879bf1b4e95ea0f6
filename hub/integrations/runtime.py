"""What the integrations API and workers share while the hub runs."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from hub.integrations.engine import DeliveryEngine
from hub.integrations.settings import DeliverySettings
from hub.runtime import RuntimeKey
from hub.storage.crypto import SecretBox


@dataclass
class Integrations:
    pool: asyncpg.Pool
    box: SecretBox
    settings: DeliverySettings
    # None when this process runs no delivery workers (another hub process does).
    engine: DeliveryEngine | None


INTEGRATIONS: RuntimeKey[Integrations] = RuntimeKey("alert delivery")
