"""A camera's RTSP stream remuxed to HLS by ffmpeg, on demand, into a directory of its own.

H.264 is copied as it comes (no decoding, no encoding: a few percent of a core per
stream); other codecs are transcoded to H.264, which costs a core or more per stream.
RTSP runs over TCP (RFC 2326, 10.12 interleaving): it crosses NAT and firewalls and
loses nothing to UDP drops. Audio is left out: the live view is for seeing a place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from drivers.onvif.client import (
    CameraAuthError,
    CameraError,
    CameraProtocolError,
    CameraTimeout,
    CameraUnreachable,
    strip_credentials,
)

log = logging.getLogger(__name__)

PLAYLIST = "index.m3u8"
SEGMENT_NAME = re.compile(r"seg\d{5}\.ts")
_URL_WITH_CREDENTIALS = re.compile(r"rtsp://[^\s/@]+@")


def with_credentials(uri: str, username: str, password: str) -> str:
    """The RTSP URI with user:password in it, which is how ffmpeg authenticates (RFC 3986)."""
    parts = urlsplit(strip_credentials(uri))
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def ffmpeg_available(binary: str = "ffmpeg") -> bool:
    return shutil.which(binary) is not None


@dataclass(frozen=True, slots=True)
class HlsOptions:
    segment_s: float = 2.0
    playlist_size: int = 5
    transcode: bool = False  # the camera sends something other than H.264
    connect_timeout_s: float = 5.0
    analyze_s: float = 0.2  # how much stream ffmpeg reads before it starts writing
    binary: str = "ffmpeg"


def remux_command(source: str, directory: Path, options: HlsOptions) -> list[str]:
    video = (
        ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30"]
        if options.transcode
        else ["-c:v", "copy"]
    )
    return [
        options.binary,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-timeout",
        str(int(options.connect_timeout_s * 1_000_000)),  # socket I/O, microseconds
        # Start from the first keyframe instead of analysing five seconds of stream first.
        "-fflags",
        "nobuffer",
        "-analyzeduration",
        str(int(options.analyze_s * 1_000_000)),
        "-probesize",
        "100000",
        "-i",
        source,
        "-map",
        "0:v:0",
        *video,
        "-an",
        "-f",
        "hls",
        "-hls_time",
        f"{options.segment_s:g}",
        # The first segments are cut shorter (at the first keyframe past half a segment):
        # the viewer waits for one of those, not for a whole segment, before video starts.
        "-hls_init_time",
        f"{options.segment_s / 2:g}",
        "-hls_list_size",
        str(options.playlist_size),
        "-hls_flags",
        "delete_segments+omit_endlist+temp_file",
        "-hls_segment_filename",
        str(directory / "seg%05d.ts"),
        str(directory / PLAYLIST),
    ]


@dataclass
class HlsRemux:
    """One ffmpeg process writing one camera stream's playlist and segments."""

    directory: Path
    options: HlsOptions
    process: asyncio.subprocess.Process | None = None
    _stderr: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self, source: str) -> None:
        """Start ffmpeg on ``source`` (an RTSP URI with credentials, never logged)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.iterdir():
            stale.unlink(missing_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            *remux_command(source, self.directory, self.options),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            text = _URL_WITH_CREDENTIALS.sub("rtsp://", line.decode("utf-8", "replace")).strip()
            if text:
                self._stderr = [*self._stderr[-19:], text]

    def segments(self) -> list[str]:
        """The segment names the current playlist lists, oldest first."""
        try:
            playlist = (self.directory / PLAYLIST).read_text()
        except OSError:
            return []
        return [line for line in playlist.splitlines() if SEGMENT_NAME.fullmatch(line)]

    async def wait_ready(self, timeout: float, where: str) -> None:  # noqa: ASYNC109 - a hard limit the caller sets
        """Return once the playlist lists a segment; raise a CameraError if it never does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.segments():
            if not self.running:
                if self._reader is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1):
                            await self._reader
                raise self._failure(where)
            if loop.time() > deadline:
                await self.stop()
                raise CameraTimeout(f"camera {where} sent no video within {timeout:g} s")
            await asyncio.sleep(0.05)

    def _failure(self, where: str) -> CameraError:
        said = " ".join(self._stderr[-3:]) or "ffmpeg stopped"
        lowered = said.lower()
        if "401" in said or "unauthorized" in lowered:
            return CameraAuthError(f"camera {where} refused the stored credentials for its stream")
        if "refused" in lowered or "no route" in lowered or "unreachable" in lowered:
            return CameraUnreachable(f"camera {where} does not answer on its RTSP port")
        if "timed out" in lowered or "timeout" in lowered:
            return CameraTimeout(f"camera {where} did not answer its RTSP requests in time")
        return CameraProtocolError(f"camera {where} stream could not be read: {said[:200]}")

    async def stop(self, grace_s: float = 3.0) -> None:
        """Stop ffmpeg (SIGTERM, then SIGKILL after ``grace_s``) and delete its files."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(grace_s):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        shutil.rmtree(self.directory, ignore_errors=True)
