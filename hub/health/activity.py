"""Device activity from the transports: connectivity and last contact.

A heartbeat with connected=False (a Last Will, a failed probe) is news about the
device, never proof that it is alive: it must not refresh last_seen.
"""

from __future__ import annotations

import logging

from drivers.contract import DeviceEvent, Heartbeat, UnknownDevice
from hub.telemetry.directory import DeviceDirectory

log = logging.getLogger("hub.health")


class ActivityTracker:
    def __init__(self, directory: DeviceDirectory) -> None:
        self.directory = directory

    async def heartbeat(self, item: Heartbeat) -> None:
        ref = await self.directory.resolve(item.device_uid)
        if ref is None or ref.lifecycle == "pending":
            raise UnknownDevice(f"device {item.device_uid!r} is not registered")
        if item.connected:
            await self.directory.pool.execute(
                "UPDATE device SET last_seen = greatest(last_seen, $2), "
                "status = CASE WHEN status IN ('maintenance', 'degraded') THEN status "
                "ELSE 'online' END, status_reason = CASE WHEN status IN ('maintenance', "
                "'degraded') THEN status_reason ELSE '' END WHERE id = $1",
                ref.id,
                item.time,
            )
        else:
            await self.directory.pool.execute(
                "UPDATE device SET status = 'offline', status_reason = $2 "
                "WHERE id = $1 AND status <> 'maintenance'",
                ref.id,
                f"disconnected ({item.source})",
            )

    async def event(self, item: DeviceEvent) -> None:
        ref = await self.directory.resolve(item.device_uid)
        if ref is None:
            raise UnknownDevice(f"device {item.device_uid!r} is not registered")
        log.info("event %s from %s (active=%s)", item.kind, item.device_uid, item.active)
