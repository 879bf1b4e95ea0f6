"""Broadcast routes: audio and text-to-speech, broadcasts, calendar, reports, quiet hours;
and the signed audio download speakers use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.response import File
from multipart import (  # type: ignore[import-untyped]
    MultipartError,
    MultipartSegment,
    PushMultipartParser,
    parse_options_header,
)

from hub.auth import CurrentUser
from hub.broadcasts import controls, service
from hub.broadcasts.controls import ControlIn, ControlOut
from hub.broadcasts.dispatch import SPEAKERS
from hub.broadcasts.schemas import (
    AssetOut,
    BroadcastIn,
    BroadcastOut,
    CalendarOut,
    CreatedOut,
    EmergencyIn,
    OccurrenceOut,
    OccurrenceReport,
    PlanOut,
    QuietHoursIn,
    QuietHoursOut,
    TtsPreviewIn,
)
from hub.broadcasts.service import BROADCASTS, Broadcasts
from hub.broadcasts.urls import SPEAKER_AUDIO_PATH
from hub.devices import WardCode
from hub.errors import BadRequest, FieldProblem, NotFound, PayloadTooLarge
from hub.runtime import runtime_of

# Multipart framing around the file: headers, boundaries, a name field.
MULTIPART_OVERHEAD = 64 * 1024
# A body over the limit is read to its end (up to this many times the limit) so the
# client hears the 413 instead of a reset connection.
DRAIN_FACTOR = 4


def runtime(request: Request[Any, Any, Any]) -> Broadcasts:
    return runtime_of(request).get(BROADCASTS)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the audio file is larger than {limit // (1024 * 1024)} MiB",
        [FieldProblem("file", f"at most {limit} bytes")],
    )


async def _drain(stream: Any, seen: int, limit: int) -> None:
    async for chunk in stream:
        seen += len(chunk)
        if seen > DRAIN_FACTOR * limit:
            break


async def read_upload(request: Request[Any, Any, Any], limit: int) -> tuple[bytes, str | None]:
    """The uploaded file, from a raw body or a multipart form's ``file`` field, and its name."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_FACTOR * limit:
        raise _too_large(limit)
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    stream = request.stream()
    if kind != "multipart/form-data":
        body = bytearray()
        async for chunk in stream:
            body += chunk
            if len(body) > limit:
                await _drain(stream, len(body), limit)
                raise _too_large(limit)
        return bytes(body), None
    boundary = options.get("boundary")
    if not boundary:
        raise BadRequest("the multipart body has no boundary")
    file_data: bytes | None = None
    filename: str | None = None
    segment: MultipartSegment | None = None
    part = bytearray()
    total = 0
    try:
        with PushMultipartParser(boundary, max_segment_count=8) as parser:
            async for chunk in stream:
                total += len(chunk)
                if total > limit + MULTIPART_OVERHEAD:
                    await _drain(stream, total, limit)
                    raise _too_large(limit)
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment, part = event, bytearray()
                    elif event:
                        part += event
                    elif segment is not None and segment.name == "file" and file_data is None:
                        file_data, filename = bytes(part), segment.filename
            for _ in parser.parse(b""):
                pass
    except MultipartError as exc:
        raise BadRequest(f"the multipart body is malformed: {exc}") from exc
    if file_data is None:
        raise BadRequest(
            "no file in the form", [FieldProblem("file", "send the audio in a field named file")]
        )
    if len(file_data) > limit:
        raise _too_large(limit)
    return file_data, filename


class AudioController(Controller):
    path = "/api/v1"
    tags = ["broadcasts"]

    @post("/audio", status_code=201, request_max_body_size=None)
    async def upload(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        name: Annotated[str | None, QueryParameter(min_length=1, max_length=200)] = None,
        ward: Annotated[
            WardCode | None, QueryParameter(description="Owning ward; none: the library.")
        ] = None,
    ) -> AssetOut:
        """Upload an announcement: MP3, OGG Vorbis or WAV, as the raw body or a multipart
        ``file`` field. It is decoded (never trusted by its name), loudness-normalised and
        kept as a 16-bit WAV."""
        service.require_scheduling(principal)
        rt = runtime(request)
        raw, filename = await read_upload(request, rt.settings.max_audio_bytes)
        return await service.upload_audio(
            rt, principal, raw, name or filename or "announcement", ward
        )

    @get("/audio")
    async def list_audio(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[AssetOut]:
        return await service.list_assets(runtime(request), principal, limit)

    @get("/audio/{asset_id:int}")
    async def get_audio(
        self, request: Request[Any, Any, Any], principal: CurrentUser, asset_id: FromPath[int]
    ) -> AssetOut:
        return await service.get_asset(runtime(request), principal, asset_id)

    @get("/audio/{asset_id:int}/content", media_type="audio/wav")
    async def audio_content(
        self, request: Request[Any, Any, Any], principal: CurrentUser, asset_id: FromPath[int]
    ) -> File:
        """The normalised WAV, to listen to before scheduling it."""
        rt = runtime(request)
        asset = await service.get_asset(rt, principal, asset_id)
        return _wav_file(rt, asset.sha256)

    @post("/tts/preview", status_code=200, media_type="audio/wav")
    async def tts_preview(
        self, request: Request[Any, Any, Any], principal: CurrentUser, data: JSONBody[TtsPreviewIn]
    ) -> Response[bytes]:
        """The text spoken (normalised WAV), nothing stored."""
        service.require_scheduling(principal)
        audio, _, _ = await service.synthesize(runtime(request), data.text, data.voice)
        return Response(audio.wav, media_type="audio/wav")


def _wav_file(rt: Broadcasts, sha256: str) -> File:
    path = rt.audio.path(sha256)
    if not path.exists():
        raise NotFound("the audio file is missing from the hub's storage")
    return File(path, media_type="audio/wav", filename=f"{sha256}.wav")


@get(
    SPEAKER_AUDIO_PATH + "/{asset_id:int}",
    exclude_from_auth=True,
    tags=["broadcasts"],
    media_type="audio/wav",
    security=[],
)
async def speaker_audio(
    request: Request[Any, Any, Any],
    asset_id: FromPath[int],
    expires: Annotated[int, QueryParameter(ge=0)],
    sig: Annotated[str, QueryParameter(max_length=128)],
) -> File:
    """The audio of a play command, for speakers: the signed link is the authorisation."""
    rt = runtime(request)
    rt.signer.verify(asset_id, expires, sig)
    sha256 = await rt.asset_sha256(asset_id)
    if sha256 is None:
        raise NotFound(f"no audio {asset_id}")
    return _wav_file(rt, sha256)


class BroadcastController(Controller):
    path = "/api/v1/broadcasts"
    tags = ["broadcasts"]

    @post("/", status_code=201)
    async def create(
        self, request: Request[Any, Any, Any], principal: CurrentUser, data: JSONBody[BroadcastIn]
    ) -> CreatedOut:
        """Schedule a broadcast (one-off, or recurring by RRULE in local time). The answer
        lists its first occurrences and the conflicts found and how they were settled."""
        return await service.create(runtime(request), principal, data)

    @post("/conflicts", status_code=200)
    async def conflicts(
        self, request: Request[Any, Any, Any], principal: CurrentUser, data: JSONBody[BroadcastIn]
    ) -> PlanOut:
        """Preview: the occurrences and conflicts the broadcast would have; nothing saved."""
        return await service.preview(runtime(request), principal, data)

    @post("/emergency", status_code=201)
    async def emergency(
        self, request: Request[Any, Any, Any], principal: CurrentUser, data: JSONBody[EmergencyIn]
    ) -> CreatedOut:
        """Play now, pre-empting whatever plays, on the chosen wards (default: all yours)."""
        return await service.emergency(runtime(request), principal, data)

    @get("/")
    async def list_broadcasts(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        lifecycle: Annotated[
            str | None, QueryParameter(name="state", pattern="^(active|cancelled)$")
        ] = None,
        before_id: Annotated[int | None, QueryParameter(ge=1)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[BroadcastOut]:
        """Broadcasts in your wards, newest first."""
        return await service.list_broadcasts(
            runtime(request), principal, lifecycle, before_id, limit
        )

    @get("/calendar")
    async def calendar(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        start: Annotated[
            datetime | None, QueryParameter(description="Default now; no offset: local time.")
        ] = None,
        end: Annotated[
            datetime | None, QueryParameter(description="Default start + 7 days.")
        ] = None,
        ward: FromQuery[WardCode | None] = None,
    ) -> CalendarOut:
        """Occurrences in a range, recurrences expanded, with their status once fired."""
        begin = start or datetime.now(UTC)
        return await service.calendar(
            runtime(request), principal, begin, end or begin + timedelta(days=7), ward
        )

    @get("/{broadcast_id:int}")
    async def get_broadcast(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        broadcast_id: FromPath[int],
    ) -> BroadcastOut:
        return await service.get(runtime(request), principal, broadcast_id)

    @delete("/{broadcast_id:int}", status_code=200)
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        broadcast_id: FromPath[int],
    ) -> BroadcastOut:
        """Cancel the occurrences still to come."""
        return await service.cancel(runtime(request), principal, broadcast_id)

    @get("/{broadcast_id:int}/occurrences")
    async def occurrences(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        broadcast_id: FromPath[int],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> list[OccurrenceOut]:
        """Fired occurrences, newest first, each with its delivery summary."""
        return await service.occurrences_of(runtime(request), principal, broadcast_id, limit)

    @get("/occurrences/{occurrence_id:int}")
    async def occurrence(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        occurrence_id: FromPath[int],
    ) -> OccurrenceReport:
        """Did it play? Delivered, played, failed and why, pending; and every speaker."""
        return await service.occurrence_report(runtime(request), principal, occurrence_id)

    @get("/quiet-hours")
    async def quiet_hours(
        self, request: Request[Any, Any, Any], principal: CurrentUser
    ) -> list[QuietHoursOut]:
        return await service.list_quiet_hours(runtime(request), principal)

    @put("/quiet-hours/{ward:str}")
    async def set_quiet_hours(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentUser,
        ward: Annotated[str, PathParameter(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")],
        data: JSONBody[QuietHoursIn],
    ) -> QuietHoursOut:
        """Set a ward's quiet hours (local HH:MM; equal start and end: none). Admins only;
        only emergencies play during them."""
        return await service.set_quiet_hours(runtime(request), principal, ward, data)


class SpeakerControlController(Controller):
    path = "/api/v1/speaker-controls"
    tags = ["broadcasts"]

    @post("/", status_code=201)
    async def control(
        self, request: Request[Any, Any, Any], principal: CurrentUser, data: JSONBody[ControlIn]
    ) -> ControlOut:
        """Set the volume of, or stop, one speaker, a device group or whole wards (targets
        as a broadcast's, within your wards). Answers with what each speaker acknowledged
        within a few seconds; read the rest later by request id. Audited."""
        rt = runtime(request)
        channel = runtime_of(request).find(SPEAKERS)
        return await controls.control(rt.pool, channel, principal, data)

    @get("/{request_id:str}")
    async def get_control(
        self, request: Request[Any, Any, Any], principal: CurrentUser, request_id: FromPath[str]
    ) -> ControlOut:
        """A control request and each speaker's acknowledgement."""
        return await controls.get_control(runtime(request).pool, principal, request_id)
