"""Firmware compliance for people and for Prometheus, and what devices say they run."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import asyncpg

from firmware_meta import Severity
from hub.auth import Principal
from hub.errors import NotFound
from hub.firmware import metrics, store
from hub.firmware.compliance import (
    Compliance,
    ComplianceState,
    FirmwareCatalog,
    SummaryRow,
    assess,
    summarise,
)
from hub.firmware.settings import FirmwareSettings
from hub.runtime.context import RuntimeKey

log = logging.getLogger("hub.firmware")
FAULT_PREFIX = "firmware vulnerable"


class HealthReassessment(Protocol):
    """The health monitor, as far as firmware needs it: look at these devices again."""

    async def reassess(self, device_ids: Sequence[int] | None = None) -> Any: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class FirmwareService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: FirmwareSettings,
        *,
        health: HealthReassessment | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.health = health
        self.clock = clock
        self.zone = ZoneInfo(settings.timezone)
        self._reported: dict[str, str] = {}
        self._pending_versions: dict[str, str] = {}
        self._versions_waiting = asyncio.Event()

    def today(self) -> date:
        return self.clock().astimezone(self.zone).date()

    async def catalog(self) -> FirmwareCatalog:
        async with self.pool.acquire() as conn:
            return FirmwareCatalog.build(
                await store.releases(conn), await store.vulnerabilities(conn)
            )

    # ------------------------------------------------------------------ compliance

    async def compliance(
        self,
        principal: Principal | None,
        *,
        ward_codes: Sequence[str] = (),
        kind: str | None = None,
        uids: Sequence[str] | None = None,
        states: Sequence[ComplianceState] = (),
    ) -> list[Compliance]:
        ward_ids = None if principal is None else principal.ward_ids
        catalog = await self.catalog()
        async with self.pool.acquire() as conn:
            if ward_codes:
                found = await store.ward_ids_by_code(conn, ward_codes)
                missing = sorted(set(ward_codes) - set(found))
                if missing:
                    raise NotFound(f"no ward {', '.join(missing)}")
                chosen = frozenset(found.values())
                if principal is not None:
                    principal.require_wards(chosen)
                ward_ids = chosen if ward_ids is None else ward_ids & chosen
            devices = await store.devices(conn, ward_ids, kind=kind, uids=uids)
        today = self.today()
        items = [assess(device, catalog, today) for device in devices]
        if states:
            items = [item for item in items if item.state in states]
        return items

    async def device(self, principal: Principal, uid: str) -> Compliance:
        items = await self.compliance(principal, uids=[uid])
        if not items:
            raise NotFound(f"no device {uid!r} in the wards you serve")
        return items[0]

    async def summary(self, principal: Principal) -> list[SummaryRow]:
        return summarise(await self.compliance(principal))

    # ------------------------------------------------------------------ refresh

    async def refresh(self) -> list[Compliance]:
        """Recompute every device: gauges, the table Grafana reads, degraded health."""
        items = await self.compliance(None)
        now = self.clock()
        metrics.DEVICES.clear()
        counts = Counter((i.device.ward or "", i.device.kind, i.state.value) for i in items)
        for (ward, kind, state), count in counts.items():
            metrics.DEVICES.labels(ward=ward, kind=kind, state=state).set(count)
        worst = Counter(i.worst_severity.value for i in items if i.worst_severity is not None)
        for severity in Severity:
            metrics.VULNERABLE.labels(severity=severity.value).set(worst.get(severity.value, 0))
        async with self.pool.acquire() as conn, conn.transaction():
            # The registry first, as TRUNCATE device ... CASCADE locks it: no deadlock.
            await conn.execute("LOCK TABLE device IN ROW EXCLUSIVE MODE")
            await store.write_compliance(conn, items, now)
            changed = await store.set_firmware_faults(conn, self._faults(items), FAULT_PREFIX)
        if changed and self.health is not None:
            await self.health.reassess(changed)
        return items

    def _faults(self, items: Sequence[Compliance]) -> dict[int, str | None]:
        """Per device: the fault that marks it degraded, or None (no firmware fault)."""
        threshold = self.settings.degrade_vulnerable
        faults: dict[int, str | None] = {}
        for item in items:
            worst = item.worst_severity
            fault = None
            if threshold is not None and worst is not None and worst.rank >= threshold.rank:
                top = max(item.cves, key=lambda c: c.cvss)
                more = f" and {len(item.cves) - 1} more" if len(item.cves) > 1 else ""
                fault = f"{FAULT_PREFIX}: {top.id} ({worst.value} {top.cvss:g}){more}"
            faults[item.device.id] = fault
        return faults

    async def run_refresh(self) -> None:
        while True:
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("firmware compliance refresh failed (%s); retrying", exc)
            await asyncio.sleep(self.settings.compliance_refresh_s)

    # ------------------------------------------------------------------ reported versions

    def version_reported(self, uid: str, version: str | None) -> None:
        """A device said which firmware it runs (status message); stored by `run_versions`."""
        if not version or self._reported.get(uid) == version:
            return
        self._pending_versions[uid] = version
        self._versions_waiting.set()

    async def run_versions(self) -> None:
        """Write reported versions in batches: a fleet's statuses are one statement."""
        while True:
            await self._versions_waiting.wait()
            self._versions_waiting.clear()
            batch, self._pending_versions = self._pending_versions, {}
            try:
                async with self.pool.acquire() as conn:
                    await store.set_reported_versions(conn, batch)
                self._reported.update(batch)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("firmware versions of %d devices not stored (%s)", len(batch), exc)
                self._pending_versions = batch | self._pending_versions
                await asyncio.sleep(1.0)
                self._versions_waiting.set()

    def forget_all(self) -> None:
        self._reported.clear()

    # ------------------------------------------------------------------ windows

    async def windows(self, principal: Principal) -> dict[str, tuple[time, time]]:
        async with self.pool.acquire() as conn:
            spans = await store.windows(conn)
            codes = await store.ward_codes(conn)
        return {
            codes[ward_id]: span
            for ward_id, span in spans.items()
            if ward_id in codes and principal.sees_ward(ward_id)
        }

    async def set_window(
        self, principal: Principal, ward: str, span: tuple[time, time] | None
    ) -> None:
        async with self.pool.acquire() as conn:
            found = await store.ward_ids_by_code(conn, [ward])
            if ward not in found:
                raise NotFound(f"no ward {ward!r}")
            principal.require_wards([found[ward]])
            await store.set_window(conn, found[ward], span, principal.username)


FIRMWARE: RuntimeKey[FirmwareService] = RuntimeKey("firmware compliance")
