"""What the composition root hands each slice when it starts the slice's services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from litestar.datastructures import State

if TYPE_CHECKING:
    from hub.server.settings import Settings
    from hub.storage.database import Database


@dataclass
class HubContext:
    settings: Settings
    database: Database
    state: State
