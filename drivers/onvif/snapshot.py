"""Camera snapshots over HTTP, bounded in size and time, with the auth the camera asks for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from drivers.onvif.client import (
    CameraAuthError,
    CameraError,
    CameraProtocolError,
    CameraTimeout,
    CameraUnreachable,
    strip_credentials,
)

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
_JPEG_MAGIC = b"\xff\xd8\xff"


class SnapshotTooLarge(CameraProtocolError):
    """The camera sent more than the caller allowed."""

    default_retryable = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    content: bytes = field(repr=False)
    content_type: str

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    challenge: str
    content_type: str
    content: bytes


async def fetch_snapshot(
    uri: str,
    username: str,
    password: str,
    *,
    camera_host: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 5.0,  # noqa: ASYNC109 - a hard limit the driver enforces itself
    verify_tls: bool = False,
) -> Snapshot:
    """Fetch one image from a camera's snapshot URI within ``timeout`` seconds overall.

    Credentials go only in an Authorization header, never in the URL, and only to
    ``camera_host`` when given (a camera cannot redirect them to another host).
    Cameras mostly use self-signed certificates, hence ``verify_tls`` off by default.
    """
    url = strip_credentials(uri)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise CameraProtocolError(f"snapshot URI {url} is not an HTTP URL", retryable=False)
    if camera_host is not None and parts.hostname != camera_host:
        raise CameraProtocolError(
            f"snapshot URI points at {parts.hostname}, not at the camera {camera_host}",
            retryable=False,
        )
    where = parts.netloc
    try:
        async with asyncio.timeout(timeout):
            async with httpx.AsyncClient(
                timeout=timeout, follow_redirects=False, trust_env=False, verify=verify_tls
            ) as client:
                reply = await _get(client, url, httpx.DigestAuth(username, password), max_bytes)
                if reply.status == 401 and reply.challenge.lower().startswith("basic"):
                    reply = await _get(client, url, httpx.BasicAuth(username, password), max_bytes)
    except CameraError:
        raise
    except TimeoutError as error:
        raise CameraTimeout(f"snapshot from {where} took longer than {timeout}s") from error
    except httpx.TimeoutException as error:
        raise CameraTimeout(f"snapshot from {where} timed out") from error
    except httpx.ConnectError as error:
        raise CameraUnreachable(f"snapshot from {where}: could not connect") from error
    except httpx.HTTPError as error:
        raise CameraProtocolError(
            f"snapshot from {where} failed: {type(error).__name__}", retryable=True
        ) from error

    if reply.status == 401:
        raise CameraAuthError(f"camera {where} rejected the credentials for its snapshot")
    if reply.status != 200:
        raise CameraProtocolError(
            f"snapshot from {where} answered HTTP {reply.status}", retryable=reply.status >= 500
        )
    content_type = reply.content_type.split(";", 1)[0].strip().lower()
    if not content_type.startswith("image/"):
        if not reply.content.startswith(_JPEG_MAGIC):
            raise CameraProtocolError(
                f"snapshot from {where} is {content_type or 'untyped'}, not an image",
                retryable=False,
            )
        content_type = "image/jpeg"  # some firmwares label JPEGs application/octet-stream
    return Snapshot(reply.content, content_type)


async def _get(client: httpx.AsyncClient, url: str, auth: httpx.Auth, max_bytes: int) -> _Reply:
    async with client.stream("GET", url, auth=auth) as response:
        challenge = response.headers.get("www-authenticate", "")
        content_type = response.headers.get("content-type", "")
        if response.status_code != 200:
            return _Reply(response.status_code, challenge, content_type, b"")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise SnapshotTooLarge(f"snapshot of {declared} bytes exceeds {max_bytes}")
        content = bytearray()
        async for chunk in response.aiter_bytes():
            content += chunk
            if len(content) > max_bytes:
                raise SnapshotTooLarge(f"snapshot exceeds {max_bytes} bytes")
        return _Reply(200, challenge, content_type, bytes(content))
