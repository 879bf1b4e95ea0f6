"""Liveness (/healthz) and readiness (/readyz): open to probes, no authentication."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiomqtt
from litestar import Request, Response, get

from hub.runtime import MqttSettings, runtime_of
from hub.storage import migrations
from hub.telemetry import TelemetrySettings, jobs


@get("/healthz", exclude_from_auth=True, include_in_schema=True, tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


async def broker_reachable(mqtt: MqttSettings, limit_s: float = 3.0) -> str | None:
    """None when the broker accepts the hub's own credentials; otherwise why not."""
    password = mqtt.password.get_secret_value() if mqtt.password else None
    try:
        async with asyncio.timeout(limit_s):
            async with aiomqtt.Client(
                mqtt.host,
                mqtt.port,
                username=mqtt.username,
                password=password,
                identifier=f"{mqtt.client_id}-ready",
                timeout=limit_s,
            ):
                return None
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"


@get("/readyz", exclude_from_auth=True, tags=["health"])
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Database and broker reachable, schema current, no background service stopped by a
    terminal error; 503 with the reasons otherwise. Failing maintenance jobs (compression,
    retention, rollup refresh) make it "degraded": still 200, since the hub serves and
    ingests, with each job's error shown."""
    hub = runtime_of(request)
    body = hub.cached_readiness(2.0)
    if body is None:
        checks: dict[str, Any] = {"backend": hub.database.backend}
        maintenance = None
        try:
            async with hub.database.pool.acquire(timeout=3) as conn:
                schema = await migrations.status(conn)
                checks["database"] = "ok"
                checks["migrations"] = schema.problem() or "current"
                if checks["migrations"] == "current":
                    every_s = hub.settings.group(TelemetrySettings).jobs_check_interval_s
                    maintenance = await jobs.readiness(conn, jobs.utc_now(), 3 * every_s)
                    checks["maintenance_jobs"] = maintenance.as_check()
        except Exception as exc:  # any failure here means not ready, with the reason shown
            checks["database"] = f"unreachable: {type(exc).__name__}"
            checks["migrations"] = "unknown"
            maintenance = None
        broker_problem = await broker_reachable(hub.settings.mqtt)
        checks["broker"] = broker_problem or "ok"
        failed = dict(hub.services.failed)
        if failed:
            checks["services"] = {name: f"stopped: {why}" for name, why in failed.items()}
        ready = (
            checks["database"] == "ok"
            and checks["migrations"] == "current"
            and not broker_problem
            and not failed
        )
        degraded = maintenance is not None and maintenance.status != "ok"
        status = ("degraded" if degraded else "ready") if ready else "not ready"
        body = {"status": status, "checks": checks}
        hub.readiness = (time.monotonic(), body)
    return Response(body, status_code=503 if body["status"] == "not ready" else 200)
