"""Live camera views: one HLS remux per camera stream, shared by its viewers, stopped when idle.

A stream starts when someone first asks for its playlist and stops once nobody has
fetched its playlist or a segment for `live_idle_timeout_s`. At most `live_max_streams`
run at once: joining a running stream is always possible, starting one more is refused.
Each person's viewing is audited when it starts and when it ends (idle), because
watching cameras is sensitive.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from drivers.onvif.hls import HlsOptions, HlsRemux
from hub.auth import Principal
from hub.cameras.settings import CameraSettings
from hub.errors import HubError

log = logging.getLogger("hub.cameras")

StreamKey = tuple[str, str]  # (camera uid, "main" | "sub")
ViewEnded = Callable[[Principal, StreamKey, float, float], Awaitable[None]]


class StreamLimitReached(HubError):
    status = 503
    slug = "camera-stream-limit"
    title = "The hub streams as many cameras as it may"
    retryable = True


@dataclass
class Viewer:
    principal: Principal
    since: float  # wall clock, for the audit
    last_seen: float  # monotonic


@dataclass
class LiveStream:
    key: StreamKey
    remux: HlsRemux
    codec: str | None
    started_at: float
    last_access: float
    viewers: dict[str, Viewer] = field(default_factory=dict)
    ready: bool = False  # its first segment is there; until then its start timeout rules

    @property
    def directory(self) -> Path:
        return self.remux.directory


class LiveViews:
    def __init__(
        self,
        settings: CameraSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.root = Path(settings.live_dir or tempfile.gettempdir()) / "iochub-live"
        self.streams: dict[StreamKey, LiveStream] = {}
        self._clock = clock
        self._wall_clock = wall_clock
        self._starting = asyncio.Lock()
        self.on_view_ended: ViewEnded | None = None

    def running(self, key: StreamKey) -> LiveStream | None:
        stream = self.streams.get(key)
        return stream if stream is not None and stream.remux.running else None

    async def open(
        self,
        key: StreamKey,
        source: Callable[[], str],
        codec: str | None,
        where: str,
    ) -> tuple[LiveStream, bool]:
        """The running stream for ``key``, started if needed; True when this call started it.

        ``source`` gives the RTSP URI with credentials, opened only when a process starts.
        """
        async with self._starting:
            stream = self.running(key)
            started = stream is None
            if stream is None:
                await self._forget(key)
                limit = self.settings.live_max_streams
                if len(self.streams) >= limit:
                    uid = key[0]
                    raise StreamLimitReached(
                        f"the hub streams {len(self.streams)} cameras already, the most it may "
                        f"(IOCHUB_CAMERAS__LIVE_MAX_STREAMS={limit}): close a live view, or watch "
                        f"the MJPEG fallback at /api/v1/cameras/{uid}/live.mjpeg"
                    )
                options = HlsOptions(
                    segment_s=self.settings.live_segment_s,
                    playlist_size=self.settings.live_playlist_size,
                    transcode=(codec or "").upper() not in {"H264", "H.264", "AVC"},
                    binary=self.settings.ffmpeg,
                )
                remux = HlsRemux(self.root / f"{key[0]}-{key[1]}", options)
                now = self._clock()
                stream = LiveStream(key, remux, codec, now, now)
                self.streams[key] = stream
                await remux.start(source())
                log.info("live stream of %s (%s) started", *key)
        try:
            # Whoever joins a starting stream waits for its first segment too; if the start
            # fails, the process is gone and every waiter gets the camera's error.
            await stream.remux.wait_ready(self.settings.live_start_timeout_s, where)
        except BaseException:
            if started:
                await self._forget(key)
            raise
        if started:
            stream.ready, stream.last_access = True, self._clock()
        return stream, started

    def touch(self, stream: LiveStream, principal: Principal) -> bool:
        """Note that ``principal`` fetched from the stream; True if their viewing starts now."""
        now = self._clock()
        stream.last_access = now
        viewer = stream.viewers.get(principal.username)
        if viewer is None:
            stream.viewers[principal.username] = Viewer(principal, self._wall_clock(), now)
            return True
        viewer.last_seen = now
        return False

    async def reap(self) -> None:
        """Stop streams and end viewings nobody has fetched for the idle timeout."""
        idle = self.settings.live_idle_timeout_s
        now = self._clock()
        for key, stream in list(self.streams.items()):
            if not stream.ready and stream.remux.running:
                continue
            for name, viewer in list(stream.viewers.items()):
                if now - viewer.last_seen >= idle or not stream.remux.running:
                    del stream.viewers[name]
                    await self._ended(viewer, key)
            if now - stream.last_access >= idle or not stream.remux.running:
                log.info("live stream of %s (%s) stopped: nobody watches", *key)
                await self._forget(key)

    async def _ended(self, viewer: Viewer, key: StreamKey) -> None:
        if self.on_view_ended is None:
            return
        try:
            await self.on_view_ended(viewer.principal, key, viewer.since, self._wall_clock())
        except Exception:
            log.warning("could not record the end of a live view of %s", key[0], exc_info=True)

    async def _forget(self, key: StreamKey) -> None:
        stream = self.streams.pop(key, None)
        if stream is not None:
            await stream.remux.stop()

    async def stop_all(self) -> None:
        """End every viewing and stop every stream."""
        for key, stream in list(self.streams.items()):
            for viewer in list(stream.viewers.values()):
                await self._ended(viewer, key)
            stream.viewers.clear()
            await self._forget(key)

    async def run(self) -> None:
        """Reap idle streams until cancelled; stop every stream on the way out."""
        try:
            while True:
                await asyncio.sleep(max(0.1, self.settings.live_idle_timeout_s / 4))
                await self.reap()
        finally:
            await self.stop_all()
