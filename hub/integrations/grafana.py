"""Alert firings and resolutions as Grafana annotations, through grafana-client."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import niquests
from grafana_client.api import AsyncGrafanaApi
from grafana_client.client import GrafanaException

from hub.integrations.events import ALERT_RESOLVED
from hub.integrations.settings import GrafanaSettings
from hub.integrations.store import Job, Outcome

log = logging.getLogger("hub.integrations.grafana")


def _epoch_ms(value: Any, fallback: datetime) -> int:
    moment = fallback
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = fallback
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def annotation(job: Job) -> dict[str, Any]:
    """time/timeEnd (epoch ms), tags and text of an alert event's annotation.

    A firing marks the moment the alert started; a resolution spans the alert's whole life
    as a region, so a dashboard shows how long the condition lasted.
    """
    alert = json.loads(job.data_json)
    if not isinstance(alert, dict):
        alert = {}
    resolved = job.event_type == ALERT_RESOLVED
    state = "resolved" if resolved else "firing"
    ward = job.ward_code or alert.get("ward")
    labels = {
        "ward": ward if isinstance(ward, str) else None,
        "device": alert.get("device_uid"),
        "kind": alert.get("device_kind"),
        "severity": alert.get("severity"),
        "alert": state,
    }
    tags = [f"{name}:{value}" for name, value in labels.items() if value not in (None, "")]
    rule = alert.get("rule") or "alert"
    device = alert.get("device_uid") or job.subject
    message = alert.get("message") or ""
    text = f"{'Resolved' if resolved else 'Firing'}: {rule} on {device}" + (
        f" — {message}" if message else ""
    )
    start = _epoch_ms(alert.get("started_at"), job.occurred_at)
    body: dict[str, Any] = {"time": start, "tags": tags, "text": text}
    if resolved:
        body["timeEnd"] = max(start, _epoch_ms(alert.get("resolved_at"), job.occurred_at))
    return body


def grafana_client(settings: GrafanaSettings) -> AsyncGrafanaApi:
    """grafana-client for the settings' Grafana (its URL set), with the token if any."""
    url = urlsplit(str(settings.url))
    prefix = url.path.strip("/")
    return AsyncGrafanaApi(
        auth=settings.token.get_secret_value() if settings.token else None,
        host=url.hostname,
        port=url.port,
        url_path_prefix=f"{prefix}/" if prefix else "",
        protocol=url.scheme,
        timeout=settings.timeout_s,
        organization_id=settings.org_id,
    )


async def close_client(api: AsyncGrafanaApi) -> None:
    # The async client swaps in an AsyncSession where the base class typed a Session.
    await cast(niquests.AsyncSession, api.client.s).close()


class GrafanaSender:
    def __init__(self, settings: GrafanaSettings) -> None:
        if settings.url is None:
            raise ValueError("Grafana annotations need a Grafana URL")
        self.settings = settings
        self._api = grafana_client(settings)
        if settings.token is None:
            log.warning("Grafana annotations are on without a token; Grafana will refuse them")

    async def aclose(self) -> None:
        await close_client(self._api)

    async def send(self, job: Job) -> Outcome:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        status, error, annotation_id = await self._attempt(job)
        return Outcome(
            delivered=error is None,
            started_at=started_at,
            latency_ms=round((time.monotonic() - started) * 1000),
            status_code=status,
            error=error,
            external_id=annotation_id,
        )

    async def _attempt(self, job: Job) -> tuple[int | None, str | None, str | None]:
        """Grafana's status code, what went wrong (None if added), and the annotation id."""
        body = annotation(job)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                answer = await self._api.annotations.add_annotation(  # type: ignore[no-untyped-call]
                    dashboard_uid=self.settings.dashboard_uid,
                    panel_id=self.settings.panel_id,
                    time_from=body["time"],
                    time_to=body.get("timeEnd"),
                    tags=body["tags"],
                    text=body["text"],
                )
        except TimeoutError:
            return None, f"no answer within {self.settings.timeout_s:g} s", None
        except GrafanaException as exc:
            return exc.status_code or None, f"Grafana refused: {exc.message}", None
        except niquests.exceptions.RequestException as exc:
            return None, f"cannot reach Grafana: {exc}", None
        if not isinstance(answer, dict) or "id" not in answer:
            return 200, f"Grafana answered without an annotation id: {answer!r:.200}", None
        return 200, None, str(answer["id"])
