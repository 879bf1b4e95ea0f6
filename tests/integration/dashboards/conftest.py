"""One fresh database per time-series backend (TimescaleDB where installed), migrated,
filled with the fleet and queried the way Grafana's datasource would: read-only, as the
iochub_grafana role migration 0016 keeps, in an unusual session time zone so no query can
lean on the server's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from tests.integration.dashboards import fleet
from tests.support.hub import migrated_database

# UTC-03:30 (-02:30 in summer): a query assuming UTC or UTC+7 sessions gets it wrong.
SESSION_TIME_ZONE = "America/St_Johns"


@dataclass
class PanelDatabase:
    backend: str
    conn: asyncpg.Connection
    reader: str
    _answers: dict[str, list[asyncpg.Record]] = field(default_factory=dict)

    async def query(self, sql: str) -> list[asyncpg.Record]:
        async with self.conn.transaction(readonly=True):
            await self.conn.execute(
                f'SET LOCAL ROLE "{self.reader}"; SET LOCAL statement_timeout = 10000'
            )
            return await self.conn.fetch(sql)

    async def cached_query(self, sql: str) -> list[asyncpg.Record]:
        """For variable queries: the data never changes under the tests."""
        if sql not in self._answers:
            self._answers[sql] = await self.query(sql)
        return self._answers[sql]


@pytest.fixture(scope="session")
def fleet_data() -> fleet.Fleet:
    return fleet.build()


READER = "iochub_grafana"


async def open_database(backend: str, data: fleet.Fleet | None) -> AsyncIterator[PanelDatabase]:
    async with migrated_database(backend) as url:
        conn = await asyncpg.connect(url, server_settings={"TimeZone": SESSION_TIME_ZONE})
        try:
            if data is not None:
                await fleet.load(conn, data)
            yield PanelDatabase(backend, conn, READER)
        finally:
            await conn.close()


@pytest.fixture(scope="session", params=["postgres", "timescaledb"])
async def database(
    request: pytest.FixtureRequest, fleet_data: fleet.Fleet
) -> AsyncIterator[PanelDatabase]:
    async for opened in open_database(request.param, fleet_data):
        yield opened


@pytest.fixture(scope="module", params=["postgres", "timescaledb"])
async def empty_database(
    request: pytest.FixtureRequest,
) -> AsyncIterator[PanelDatabase]:
    """A freshly migrated database without a single ward: the day Grafana is installed."""
    async for opened in open_database(request.param, None):
        yield opened
