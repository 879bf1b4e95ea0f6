"""Operators turn speakers down or stop them: one speaker, a device group or whole wards.

The speaker protocol's ``set_volume`` and ``stop`` (``target: "all"``: whatever plays)
go to each targeted speaker on its own topic, with a command id of their own
(``ctl-<request>-d<device>``). Each speaker's answer is written to ``speaker_control`` by
whichever hub process hears it, so the request's answer (it waits ``CONTROL_WAIT_S`` for
every speaker) and the page read later tell what each speaker said. Targets are checked
with the caller's rights as a broadcast's are: ward staff reach their own wards only.
Every request is audited with the answers known when it returned.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import asyncpg
import msgspec

from drivers.contract import Ack, AckStage, Command
from hub.auth import Permission, Principal, audit
from hub.broadcasts.schemas import TargetsIn, Volume
from hub.broadcasts.service import require_scheduling
from hub.broadcasts.targets import check_targets
from hub.devices import registry
from hub.errors import FieldProblem, HubError, NotFound, ValidationFailed

log = logging.getLogger("hub.broadcasts")

COMMAND_ID = re.compile(r"^ctl-[0-9a-f]{12}-d\d+$")
CONTROL_WAIT_S = 3.0
POLL_S = 0.05


class SpeakerLinkDown(HubError):
    status = 503
    slug = "speaker-link-down"
    title = "Speakers cannot be reached"
    retryable = True


class ControlIn(msgspec.Struct, forbid_unknown_fields=True):
    action: Annotated[
        Literal["set_volume", "stop"],
        msgspec.Meta(description="set_volume (give volume), or stop whatever plays."),
    ]
    targets: TargetsIn
    volume: Volume | None = None


class SpeakerAnswer(msgspec.Struct):
    speaker: str
    ward: str | None
    command_id: str
    state: str
    """not_sent, sent (no answer yet), received, done, or failed."""
    received_at: datetime | None
    finished_at: datetime | None
    failed_at: datetime | None
    reason: str | None


class ControlOut(msgspec.Struct):
    request_id: str
    action: str
    volume: int | None
    requested_by: str
    requested_at: datetime
    speakers: list[SpeakerAnswer]
    done: int
    failed: int
    waiting: int


class Channel(Protocol):
    async def send_many(self, commands: Any) -> Any: ...


def _state(row: Any) -> str:
    if row["finished_at"] is not None:
        return "done"
    if row["failed_at"] is not None:
        return "failed"
    if row["received_at"] is not None:
        return "received"
    return "not_sent" if row["send_error"] is not None else "sent"


async def _answer(pool: asyncpg.Pool, request_id: uuid.UUID) -> ControlOut | None:
    rows = await pool.fetch(
        "SELECT * FROM speaker_control WHERE request_id = $1 ORDER BY device_uid", request_id
    )
    if not rows:
        return None
    wards = await registry.WardDirectory.load()
    speakers = [
        SpeakerAnswer(
            speaker=r["device_uid"],
            ward=wards.code(r["ward_id"]) if r["ward_id"] is not None else None,
            command_id=r["command_id"],
            state=_state(r),
            received_at=r["received_at"],
            finished_at=r["finished_at"],
            failed_at=r["failed_at"],
            reason=r["failure_reason"] or r["send_error"],
        )
        for r in rows
    ]
    states = [s.state for s in speakers]
    first = rows[0]
    return ControlOut(
        request_id=str(request_id),
        action=first["action"],
        volume=first["volume"],
        requested_by=first["requested_by"],
        requested_at=first["requested_at"],
        speakers=speakers,
        done=states.count("done"),
        failed=states.count("failed") + states.count("not_sent"),
        waiting=states.count("sent") + states.count("received"),
    )


async def control(
    pool: asyncpg.Pool,
    channel: Channel | None,
    principal: Principal,
    data: ControlIn,
    *,
    wait_s: float = CONTROL_WAIT_S,
) -> ControlOut:
    """Send the command to every target speaker, wait for their answers, audit it."""
    require_scheduling(principal)
    if data.action == "set_volume" and data.volume is None:
        raise ValidationFailed(
            "give the volume", [FieldProblem("volume", "set_volume needs a volume (0-100)")]
        )
    if data.action == "stop" and data.volume is not None:
        raise ValidationFailed(
            "stop takes no volume", [FieldProblem("volume", "leave volume out to stop")]
        )
    targets = await check_targets(principal, data.targets)
    if channel is None:
        raise SpeakerLinkDown("this hub process does not run the speaker driver")
    request_id = uuid.uuid4()
    tag = request_id.hex[:12]
    speakers = sorted(targets.speakers.values(), key=lambda s: s.uid)
    ids = {s.uid: f"ctl-{tag}-d{s.device_id}" for s in speakers}
    await pool.execute(
        "INSERT INTO speaker_control (request_id, device_id, device_uid, ward_id, command_id, "
        "action, volume, requested_by) SELECT $1, * , $6, $7, $8 FROM unnest($2::bigint[], "
        "$3::text[], $4::int[], $5::text[])",
        request_id,
        [s.device_id for s in speakers],
        [s.uid for s in speakers],
        [s.ward_id for s in speakers],
        [ids[s.uid] for s in speakers],
        data.action,
        data.volume,
        principal.username,
    )
    params: dict[str, Any] = (
        {"volume": data.volume} if data.action == "set_volume" else {"target": "all"}
    )
    # The protocol's default lifetime applies: a speaker offline for longer never acts
    # on a stale volume or stop when it comes back.
    commands = [Command(ids[s.uid], s.uid, data.action, params) for s in speakers]
    try:
        failures = list(await channel.send_many(commands))
    except ConnectionError as exc:
        failures = [_NotSent(c, str(exc)) for c in commands]
    if failures:
        await pool.execute(
            "UPDATE speaker_control c SET send_error = f.reason FROM unnest($1::text[], "
            "$2::text[]) AS f(command_id, reason) WHERE c.command_id = f.command_id",
            [f.command.command_id for f in failures],
            [str(f.reason)[:500] for f in failures],
        )
    deadline = time.monotonic() + wait_s
    while True:
        answer = await _answer(pool, request_id)
        assert answer is not None
        if answer.waiting == 0 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_S)
    single_ward = next(iter(targets.scope_ward_ids)) if len(targets.scope_ward_ids) == 1 else None
    await audit.record(
        principal,
        f"speaker.{data.action}",
        "speaker_control",
        str(request_id),
        ward_id=single_ward,
        after={
            "targets": msgspec.to_builtins(data.targets),
            "volume": data.volume,
            "speakers": len(speakers),
            "done": answer.done,
            "failed": answer.failed,
            "waiting": answer.waiting,
        },
    )
    return answer


async def get_control(pool: asyncpg.Pool, principal: Principal, request_id: str) -> ControlOut:
    """A request and what each speaker answered; only if all its wards are the caller's."""
    principal.require(Permission.DEVICES_READ)
    try:
        key = uuid.UUID(request_id)
    except ValueError:
        raise NotFound(f"no speaker control {request_id}") from None
    wards = await pool.fetch(
        "SELECT DISTINCT ward_id FROM speaker_control WHERE request_id = $1", key
    )
    answer = await _answer(pool, key)
    if answer is None or not all(principal.sees_ward(w["ward_id"]) for w in wards):
        raise NotFound(f"no speaker control {request_id}")
    return answer


RECORD = """
UPDATE speaker_control SET
    received_at = CASE WHEN $3 = 'received' THEN COALESCE(received_at, $4) ELSE received_at END,
    finished_at = CASE WHEN $3 = 'finished' THEN COALESCE(finished_at, $4) ELSE finished_at END,
    failed_at = CASE WHEN $3 = 'failed' THEN COALESCE(failed_at, $4) ELSE failed_at END,
    failure_reason = CASE WHEN $3 = 'failed' THEN COALESCE(failure_reason, $5)
                          ELSE failure_reason END
WHERE command_id = $1 AND device_uid = $2
"""


async def record_ack(pool: asyncpg.Pool, ack: Ack) -> bool:
    """Write a speaker's answer to a control; False when the ack is not for one."""
    if not COMMAND_ID.match(ack.command_id):
        return False
    stage = ack.stage.value if ack.stage in _KEPT else None
    if stage is None:
        return True
    try:
        await pool.execute(RECORD, ack.command_id, ack.device_uid, stage, ack.time, ack.reason)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning(
            "the answer of %s to %s was not recorded (%s)", ack.device_uid, ack.command_id, exc
        )
    return True


_KEPT = frozenset({AckStage.RECEIVED, AckStage.FINISHED, AckStage.FAILED})


class _NotSent(msgspec.Struct):
    command: Command
    reason: str
