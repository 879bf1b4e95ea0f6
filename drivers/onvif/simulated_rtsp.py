"""A simulated camera's RTSP server on loopback: a real H.264 stream from ffmpeg's test pattern.

ffmpeg encodes the pattern and packetises it into RTP (RFC 6184) towards a local UDP port;
this server does the RTSP side (RFC 2326: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, with
HTTP digest authentication as cameras require) and relays the RTP packets to each client
interleaved on its RTSP connection (RFC 2326, 10.12), so clients use RTSP over TCP.
One encoder per profile runs while anyone watches that profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_DIGEST_PARAM = re.compile(r'(\w+)=("[^"]*"|[^,\s]+)')


@dataclass(frozen=True, slots=True)
class StreamSource:
    """What one profile streams: the test pattern's size and rate."""

    token: str
    width: int
    height: int
    frame_rate: int
    keyframe_s: float = 0.5  # short GOPs let a hub cut short HLS segments


@dataclass(slots=True)
class _Encoder:
    process: asyncio.subprocess.Process
    transport: asyncio.DatagramTransport
    sdp: str
    clients: set[asyncio.StreamWriter] = field(default_factory=set)
    keep: bool = False  # warmed: runs whether or not anyone watches


class _RtpRelay(asyncio.DatagramProtocol):
    def __init__(self, clients: Callable[[], set[asyncio.StreamWriter]]) -> None:
        self._clients = clients

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        frame = b"$\x00" + struct.pack(">H", len(data)) + data  # channel 0: RTP
        for writer in list(self._clients()):
            if writer.is_closing():
                continue
            # A client that does not keep up loses packets rather than growing our memory.
            if writer.transport.get_write_buffer_size() < 4 << 20:
                writer.write(frame)


class SimulatedRtspServer:
    def __init__(
        self,
        host: str,
        sources: dict[str, StreamSource],
        username: str,
        password: Callable[[], str],
    ) -> None:
        self.host = host
        self.port = 0
        self.sources = sources
        self.username = username
        self._password = password
        self._server: asyncio.Server | None = None
        self._encoders: dict[str, _Encoder] = {}
        self._starting = asyncio.Lock()
        self._nonces: set[str] = set()
        self._connections: set[asyncio.StreamWriter] = set()
        self._workdir = Path(tempfile.mkdtemp(prefix="iochub-sim-rtsp-"))
        self.sessions_played = 0

    def url(self, token: str) -> str:
        return f"rtsp://{self.host}:{self.port}/Streaming/{token}"

    @property
    def active_encoders(self) -> int:
        return sum(1 for e in self._encoders.values() if e.process.returncode is None)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()
        for token in list(self._encoders):
            await self._stop_encoder(token)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        shutil.rmtree(self._workdir, ignore_errors=True)

    # -- encoders ------------------------------------------------------------------

    async def warm(self, *tokens: str) -> None:
        """Start these profiles' encoders (all by default) now, as a real camera encodes
        before anyone asks."""
        for token in tokens or tuple(self.sources):
            encoder = await self._encoder(token)
            encoder.keep = True

    async def _encoder(self, token: str) -> _Encoder:
        async with self._starting:
            running = self._encoders.get(token)
            if running is not None and running.process.returncode is None:
                return running
            source = self.sources[token]
            loop = asyncio.get_running_loop()
            holder: dict[str, _Encoder] = {}
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _RtpRelay(lambda: holder["e"].clients if "e" in holder else set()),
                local_addr=(self.host, 0),
            )
            rtp_port = int(transport.get_extra_info("sockname")[1])
            sdp_file = self._workdir / f"{token}.sdp"
            sdp_file.unlink(missing_ok=True)
            gop = max(1, round(source.frame_rate * source.keyframe_s))
            process = await asyncio.create_subprocess_exec(
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={source.width}x{source.height}:rate={source.frame_rate}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-profile:v",
                "baseline",
                "-pix_fmt",
                "yuv420p",
                "-g",
                str(gop),
                "-keyint_min",
                str(gop),
                # SPS/PPS in the SDP (sprop-parameter-sets, RFC 6184) and before every keyframe,
                # as cameras send them: a client may join at any keyframe.
                "-flags",
                "+global_header",
                "-bsf:v",
                "dump_extra",
                "-an",
                "-f",
                "rtp",
                "-payload_type",
                "96",
                "-sdp_file",
                str(sdp_file),
                f"rtp://{self.host}:{rtp_port}?pkt_size=1200",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for _ in range(200):
                if sdp_file.exists() and sdp_file.stat().st_size > 0:
                    break
                await asyncio.sleep(0.025)
            sdp = sdp_file.read_text() if sdp_file.exists() else ""
            encoder = _Encoder(process, transport, _describe(sdp))
            holder["e"] = encoder
            self._encoders[token] = encoder
            return encoder

    async def _stop_encoder(self, token: str) -> None:
        encoder = self._encoders.pop(token, None)
        if encoder is None:
            return
        encoder.transport.close()
        if encoder.process.returncode is None:
            encoder.process.terminate()
            try:
                async with asyncio.timeout(3):
                    await encoder.process.wait()
            except TimeoutError:
                encoder.process.kill()
                await encoder.process.wait()

    # -- RTSP ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        playing: str | None = None
        session = secrets.token_hex(8)
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":  # interleaved RTCP from the client (RFC 2326, 10.12)
                    _, length = struct.unpack(">BH", await reader.readexactly(3))
                    await reader.readexactly(length)
                    continue
                head = first + await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, url, _ = [*lines[0].split(" "), "", "", ""][:3]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, sep, v in (line.partition(":") for line in lines[1:])
                    if sep
                }
                if int(headers.get("content-length", "0") or 0):
                    await reader.readexactly(int(headers["content-length"]))
                cseq = headers.get("cseq", "0")
                token = url.rstrip("/").split("/Streaming/", 1)[-1].split("/", 1)[0]
                if method == "OPTIONS":
                    self._reply(
                        writer,
                        cseq,
                        200,
                        {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"},
                    )
                    continue
                if not self._authorized(method, headers.get("authorization", "")):
                    nonce = secrets.token_hex(16)
                    self._nonces.add(nonce)
                    self._reply(
                        writer,
                        cseq,
                        401,
                        {"WWW-Authenticate": f'Digest realm="IP Camera", nonce="{nonce}"'},
                    )
                    continue
                if token not in self.sources:
                    self._reply(writer, cseq, 404)
                    continue
                if method == "DESCRIBE":
                    encoder = await self._encoder(token)
                    body = encoder.sdp.encode()
                    self._reply(
                        writer,
                        cseq,
                        200,
                        {
                            "Content-Type": "application/sdp",
                            "Content-Base": url.rstrip("/") + "/",
                        },
                        body,
                    )
                elif method == "SETUP":
                    transport = headers.get("transport", "")
                    if "TCP" not in transport.upper():
                        self._reply(writer, cseq, 461)  # Unsupported Transport: TCP only
                        continue
                    self._reply(
                        writer,
                        cseq,
                        200,
                        {
                            "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1",
                            "Session": f"{session};timeout=60",
                        },
                    )
                elif method == "PLAY":
                    encoder = await self._encoder(token)
                    self._reply(writer, cseq, 200, {"Session": session, "Range": "npt=0.000-"})
                    await writer.drain()
                    encoder.clients.add(writer)
                    playing = token
                    self.sessions_played += 1
                elif method in {"GET_PARAMETER", "SET_PARAMETER"}:
                    self._reply(writer, cseq, 200, {"Session": session})
                elif method == "TEARDOWN":
                    self._reply(writer, cseq, 200, {"Session": session})
                    await writer.drain()
                    return
                else:
                    self._reply(writer, cseq, 405)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            if playing is not None:
                watched = self._encoders.get(playing)
                if watched is not None:
                    watched.clients.discard(writer)
                    if not watched.clients and not watched.keep:
                        await self._stop_encoder(playing)
            writer.close()

    def _authorized(self, method: str, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "digest":
            return False
        params = {k: v.strip('"') for k, v in _DIGEST_PARAM.findall(value)}
        if params.get("nonce") not in self._nonces or params.get("username") != self.username:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - RFC 2617 digest

        ha1 = md5(f"{self.username}:{params.get('realm', '')}:{self._password()}")
        ha2 = md5(f"{method}:{params.get('uri', '')}")
        if params.get("qop"):
            expected = md5(
                f"{ha1}:{params['nonce']}:{params.get('nc', '')}:{params.get('cnonce', '')}:"
                f"{params['qop']}:{ha2}"
            )
        else:
            expected = md5(f"{ha1}:{params['nonce']}:{ha2}")
        return hmac.compare_digest(expected, params.get("response", ""))

    @staticmethod
    def _reply(
        writer: asyncio.StreamWriter,
        cseq: str,
        status: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        reason = {
            200: "OK",
            401: "Unauthorized",
            404: "Not Found",
            405: "Method Not Allowed",
            461: "Unsupported Transport",
        }.get(status, "Error")
        head = f"RTSP/1.0 {status} {reason}\r\nCSeq: {cseq}\r\nServer: Acme-RTSP\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        writer.write(head.encode("latin-1") + b"\r\n" + body)


def _describe(sdp: str) -> str:
    """ffmpeg's SDP for its RTP output, made a DESCRIBE answer: no port, one control URL."""
    lines = [line for line in sdp.splitlines() if line and not line.startswith("c=")]
    out = []
    for line in lines:
        if line.startswith("m=video"):
            out.append("m=video 0 RTP/AVP 96")
            out.append("c=IN IP4 0.0.0.0")
            out.append("a=control:trackID=0")
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


async def _main() -> None:  # pragma: no cover - manual check: ffplay rtsp://admin:pw@...
    server = SimulatedRtspServer(
        "127.0.0.1", {"sub": StreamSource("sub", 320, 180, 10)}, "admin", lambda: "pw"
    )
    await server.start()
    print(server.url("sub"), flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_main())
