"""IOC webhooks: a CloudEvents 1.0 structured-mode request, signed per Standard Webhooks."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import msgspec

from hub.integrations import signing
from hub.integrations.store import Job, Outcome
from hub.storage.crypto import SecretBox, SecretBoxError

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
USER_AGENT = "iochub-webhooks/1"
_ERROR_BODY_CHARS = 200
_GONE = 410


def secret_context(subscription_id: int) -> str:
    return f"webhook_secret:{subscription_id}"


def cloud_event(job: Job, source: str) -> bytes:
    """The request body; its `id` is the delivery's webhook-id, stable across retries."""
    return msgspec.json.encode(
        {
            "specversion": "1.0",
            "id": job.webhook_id,
            "source": source,
            "type": job.event_type,
            "subject": job.subject,
            "time": job.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": msgspec.Raw(job.data_json.encode()),
        }
    )


class WebhookSender:
    def __init__(self, *, source: str, box: SecretBox, timeout_s: float, concurrency: int) -> None:
        self.source = source
        self.timeout_s = timeout_s
        self._box = box
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"user-agent": USER_AGENT},
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _secrets(self, job: Job) -> list[str]:
        assert job.subscription_id is not None
        context = secret_context(job.subscription_id)
        return [self._box.open(sealed, context) for sealed in job.sealed_secrets]

    async def send(self, job: Job) -> Outcome:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        status, error = await self._attempt(job)
        return Outcome(
            delivered=status is not None and 200 <= status < 300,
            started_at=started_at,
            latency_ms=round((time.monotonic() - started) * 1000),
            status_code=status,
            error=error,
            gone=status == _GONE,
        )

    async def _attempt(self, job: Job) -> tuple[int | None, str | None]:
        """The receiver's status code, and what went wrong if it did not accept."""
        try:
            secrets = self._secrets(job)
        except SecretBoxError as exc:
            return None, f"cannot sign: {exc.detail}"
        if not secrets or job.url is None:
            return None, "cannot sign: the subscription has no secret"
        body = cloud_event(job, self.source)
        headers = signing.headers(secrets, job.webhook_id, int(time.time()), body)
        headers["content-type"] = CONTENT_TYPE
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                self._client.stream("POST", job.url, content=body, headers=headers) as response,
            ):
                excerpt = await _excerpt(response)
        except (TimeoutError, httpx.TimeoutException):
            return None, f"no answer within {self.timeout_s:g} s"
        except httpx.ConnectError as exc:
            return None, f"cannot connect: {exc or type(exc).__name__}"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc or 'connection broken'}"
        status = response.status_code
        if 200 <= status < 300:
            return status, None
        reason = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
        if status == _GONE:
            reason += " (the receiver is gone: subscription deactivated)"
        return status, reason


async def _excerpt(response: httpx.Response) -> str:
    """The start of an answer's body, for the delivery log; never the whole of a large one."""
    received = b""
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= _ERROR_BODY_CHARS:
            break
    return received[:_ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
