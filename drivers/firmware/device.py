"""The device side of firmware updates, as the speaker and sensor simulators run it.

An update is refused before anything is downloaded when it is for another model, when
the device runs a version below the release's minimum, when it has expired, or when the
device is busy (a speaker playing). Otherwise: download (size checked), verify (SHA-256),
install, reboot, and report ``updated`` with the version it came back on. A ``cancel``
is honoured until installing begins, never after: a half-written image bricks a device.

Faults make it misbehave on purpose: the download fails, the image is corrupted, the
device reboots into the old version (the hub must not count it), or it never comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from drivers.contract import DecodeError, Topics
from drivers.firmware.protocol import (
    CancelCommand,
    StateReport,
    UpdateCommand,
    UpdateFailure,
    UpdateState,
    decode_command,
    encode_report,
)
from firmware_meta.versions import InvalidFirmwareVersion, parse_version

logger = logging.getLogger(__name__)
MAX_IMAGE_BYTES = 256 * 1024 * 1024


class FirmwareFault(enum.StrEnum):
    DOWNLOAD_FAILS = "fw_download_fails"
    CHECKSUM_MISMATCH = "fw_checksum_mismatch"
    BOOTS_OLD_VERSION = "fw_boots_old_version"
    """Installs, reboots, and comes back on the version it had (a failed A/B switch)."""
    NEVER_RETURNS = "fw_never_returns"
    """Goes down for the reboot and never comes back."""


@dataclass(frozen=True, slots=True)
class UpdateTiming:
    """Seconds each step takes, before the simulator's speed factor."""

    verify_s: float = 0.5
    install_s: float = 20.0
    reboot_s: float = 5.0


class FirmwareAgent:
    def __init__(
        self,
        uid: str,
        model: str,
        version: str,
        *,
        publish: Callable[[str, bytes], Awaitable[None]],
        reboot: Callable[[float, bool], Awaitable[None]],
        http: Callable[[], httpx.AsyncClient],
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
        faults: set[FirmwareFault] | None = None,
        timing: UpdateTiming = UpdateTiming(),
        speed: float = 1.0,
        busy: Callable[[], bool] = lambda: False,
        fetch: Callable[[str, str], Awaitable[bytes]] | None = None,
    ) -> None:
        self.uid = uid
        self.model = model
        self.version = version
        self.faults = faults if faults is not None else set()
        self.timing = timing
        self.speed = speed
        self._publish = publish
        self._reboot = reboot
        self._http = http
        self._spawn = spawn
        self._busy = busy
        self._fetch = fetch
        """Set when a simulated fleet shares one download per image (see the simulator)."""
        self._job: UpdateCommand | None = None
        self._installing = False
        self._cancelled: asyncio.Event = asyncio.Event()
        self._seen: set[str] = set()
        self.topic = Topics.for_device(uid, Topics.FIRMWARE)
        self._state_topic = Topics.for_device(uid, Topics.FIRMWARE_STATE)
        self.reports: list[StateReport] = []

    def receive(self, payload: bytes) -> None:
        self._spawn(self._handle(payload), f"{self.uid} firmware")

    async def _report(
        self,
        command_id: str,
        state: UpdateState,
        reason: UpdateFailure | None = None,
        detail: str | None = None,
        version: str | None = None,
    ) -> None:
        report = StateReport(command_id, state, datetime.now(UTC), version, reason, detail)
        self.reports.append(report)
        await self._publish(self._state_topic, encode_report(report))

    async def _handle(self, payload: bytes) -> None:
        try:
            command = decode_command(payload)
        except DecodeError as exc:
            logger.warning("%s ignored a firmware command: %s", self.uid, exc)
            return
        if command.command_id in self._seen:
            return  # a QoS 1 redelivery
        self._seen.add(command.command_id)
        if isinstance(command, CancelCommand):
            await self._cancel(command)
        else:
            await self._update(command)

    async def _cancel(self, command: CancelCommand) -> None:
        job = self._job
        if job is None or job.command_id != command.target or self._installing:
            return  # nothing to cancel, or too late: installing is never interrupted
        self._cancelled.set()

    def _refusal(self, command: UpdateCommand) -> tuple[UpdateFailure, str] | None:
        if datetime.now(UTC) >= command.expires_at:
            return UpdateFailure.EXPIRED, "the command expired before it arrived"
        if command.model != self.model:
            return UpdateFailure.WRONG_MODEL, f"this is a {self.model}, not a {command.model}"
        try:
            running = parse_version(self.version)
            if command.min_version is not None and running < parse_version(command.min_version):
                return (
                    UpdateFailure.BELOW_MINIMUM,
                    f"runs {self.version}, the image installs from {command.min_version}",
                )
        except InvalidFirmwareVersion as exc:
            return UpdateFailure.REJECTED, str(exc)
        if self._job is not None:
            return UpdateFailure.BUSY, f"already updating ({self._job.command_id})"
        if self._busy():
            return UpdateFailure.BUSY, "playing an announcement"
        return None

    async def _update(self, command: UpdateCommand) -> None:
        refusal = self._refusal(command)
        if refusal is not None:
            await self._report(command.command_id, UpdateState.FAILED, *refusal)
            return
        self._job, self._installing = command, False
        self._cancelled = asyncio.Event()
        try:
            await self._run(command)
        finally:
            self._job = None

    async def _run(self, command: UpdateCommand) -> None:
        cid = command.command_id
        await self._report(cid, UpdateState.DOWNLOADING)
        image = await self._download(command)
        if image is None or await self._stop_if_cancelled(cid):
            return
        await self._report(cid, UpdateState.VERIFYING)
        with contextlib.suppress(TimeoutError):
            # Verifying is where a cancel finds the device waiting, not at the next step.
            async with asyncio.timeout(self.timing.verify_s / self.speed):
                await self._cancelled.wait()
        if FirmwareFault.CHECKSUM_MISMATCH in self.faults:
            image = image[:-1] + bytes([image[-1] ^ 0xFF])
        if hashlib.sha256(image).hexdigest() != command.sha256:
            await self._report(cid, UpdateState.FAILED, UpdateFailure.CHECKSUM_MISMATCH)
            return
        if await self._stop_if_cancelled(cid):
            return
        self._installing = True
        await self._report(cid, UpdateState.INSTALLING)
        await asyncio.sleep(self.timing.install_s / self.speed)
        await self._report(cid, UpdateState.REBOOTING)
        comes_back = FirmwareFault.NEVER_RETURNS not in self.faults
        if FirmwareFault.BOOTS_OLD_VERSION not in self.faults:
            self.version = command.version
        await self._reboot(self.timing.reboot_s / self.speed, comes_back)
        if comes_back:
            await self._report(cid, UpdateState.UPDATED, version=self.version)

    async def _stop_if_cancelled(self, command_id: str) -> bool:
        if not self._cancelled.is_set():
            return False
        await self._report(command_id, UpdateState.CANCELLED)
        return True

    async def _size_mismatch(self, command_id: str, body: bytes, size: int) -> None:
        await self._report(
            command_id,
            UpdateState.FAILED,
            UpdateFailure.SIZE_MISMATCH,
            f"got {len(body)} bytes, expected {size}",
        )

    async def _download(self, command: UpdateCommand) -> bytes | None:
        cid = command.command_id
        if FirmwareFault.DOWNLOAD_FAILS in self.faults:
            await self._report(cid, UpdateState.FAILED, UpdateFailure.DOWNLOAD_FAILED, "injected")
            return None
        where = command.url.partition("?")[0]  # the query string is the signature
        if self._fetch is not None:
            try:
                shared = await self._fetch(command.url, command.sha256)
            except Exception as exc:  # the fetcher's own error, whatever its type
                await self._report(cid, UpdateState.FAILED, UpdateFailure.DOWNLOAD_FAILED, str(exc))
                return None
            if len(shared) != command.size:
                await self._size_mismatch(cid, shared, command.size)
                return None
            return shared
        try:
            async with self._http().stream("GET", command.url) as response:
                if response.status_code != 200:
                    await self._report(
                        cid,
                        UpdateState.FAILED,
                        UpdateFailure.DOWNLOAD_FAILED,
                        f"GET {where} answered HTTP {response.status_code}",
                    )
                    return None
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > min(command.size, MAX_IMAGE_BYTES):
                        break
        except httpx.HTTPError as exc:
            await self._report(
                cid, UpdateState.FAILED, UpdateFailure.DOWNLOAD_FAILED, type(exc).__name__
            )
            return None
        if len(body) != command.size:
            await self._size_mismatch(cid, bytes(body), command.size)
            return None
        return bytes(body)
