"""Speaker groups: one publish reaches a whole ward, and only the speakers meant to hear it.

Every speaker follows the group of its ward (``ward-<code>``). The hub tells each speaker
its groups in a retained message on its own ``groups`` topic; the speaker subscribes to
those group command topics and says in its status which groups it follows. The roster
stores what speakers *say* they follow, and re-tells a speaker whose report differs from
the registry (a speaker moved to another ward, a new speaker, a reset).

Dispatch (``plan_sends``) publishes to a group only when every speaker that follows it
is a target of the occurrence, so a speaker in another ward, or one that still follows
its old ward, never plays what was not meant for it; everyone else gets the command on
its own topic. Firmware without groups reports none and is always addressed directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from hub.broadcasts.targets import Speaker
from hub.devices import WardDirectory

log = logging.getLogger("hub.broadcasts")

# A speaker told its groups is not told again sooner than this while its report catches up.
REASSIGN_AFTER_S = 60.0
BATCH_WAIT_S = 0.5
TELL_WINDOW = 100


def ward_group(ward_code: str) -> str:
    return f"ward-{ward_code}"


Assign = Callable[[str, Sequence[str]], Awaitable[None]]


class GroupRoster:
    """Takes each speaker's reported groups (``observe``), stores them, re-tells the wrong ones."""

    def __init__(self, pool: asyncpg.Pool, assign: Assign) -> None:
        self.pool = pool
        self._assign = assign
        self._reports: dict[str, tuple[str, ...] | None] = {}
        self._stored: dict[str, tuple[str, ...]] = {}
        self._told: dict[str, tuple[tuple[str, ...], float]] = {}
        self._ready = asyncio.Event()

    def observe(self, device_uid: str, groups: Iterable[str] | None) -> None:
        """A speaker's status said which groups it follows (None: its firmware has none)."""
        self._reports[device_uid] = None if groups is None else tuple(sorted(groups))
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(BATCH_WAIT_S)
            self._ready.clear()
            batch, self._reports = self._reports, {}
            try:
                await self._reconcile(batch)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("speaker groups not reconciled (%s); trying again", exc)
                # Newer reports win over the ones put back.
                self._reports = {**batch, **self._reports}
                self._ready.set()
                await asyncio.sleep(1.0)

    async def _reconcile(self, reports: Mapping[str, tuple[str, ...] | None]) -> None:
        rows = await self.pool.fetch(
            "SELECT d.id, d.uid, w.code FROM device d LEFT JOIN ward w ON w.id = d.ward_id "
            "WHERE d.uid = ANY($1::text[]) AND d.kind = 'speaker' AND d.lifecycle = 'active'",
            list(reports),
        )
        now = datetime.now(UTC)
        changed: list[tuple[int, list[str], datetime]] = []
        wrong: list[tuple[str, tuple[str, ...]]] = []
        for row in rows:
            uid: str = row["uid"]
            reported = reports[uid]
            follows = reported or ()
            if self._stored.get(uid) != follows:
                changed.append((row["id"], list(follows), now))
            expected = (ward_group(row["code"]),) if row["code"] else ()
            if reported is not None and reported != expected:
                wrong.append((uid, expected))
        if changed:
            await self.pool.executemany(
                "INSERT INTO speaker_group_follow (device_id, groups, reported_at) "
                "VALUES ($1, $2, $3) ON CONFLICT (device_id) DO UPDATE "
                "SET groups = excluded.groups, reported_at = excluded.reported_at",
                changed,
            )
            for row in rows:
                self._stored[row["uid"]] = reports[row["uid"]] or ()
        await self._tell(wrong)

    async def _tell(self, wrong: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        clock = time.monotonic()
        due = [
            (uid, expected)
            for uid, expected in wrong
            if not (
                (told := self._told.get(uid)) is not None
                and told[0] == expected
                and clock - told[1] < REASSIGN_AFTER_S
            )
        ]
        # Many at once (a whole fleet on first start), a window of them awaiting PUBACK.
        window = asyncio.Semaphore(TELL_WINDOW)

        async def tell(uid: str, expected: tuple[str, ...]) -> None:
            async with window:
                try:
                    await self._assign(uid, expected)
                except ConnectionError as exc:
                    log.info("groups of %s not sent (%s); its next status tries again", uid, exc)
                    return
                self._told[uid] = (expected, clock)

        await asyncio.gather(*(tell(uid, expected) for uid, expected in due))


@dataclass(slots=True)
class SendPlan:
    """How one occurrence reaches its speakers: group publishes, and the rest one by one."""

    groups: dict[str, list[Speaker]] = field(default_factory=dict)
    direct: list[Speaker] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return len(self.groups) + len(self.direct)


async def plan_sends(pool: asyncpg.Pool, playing: Mapping[int, Speaker]) -> SendPlan:
    """Which wards can be reached with one group publish, and who needs their own."""
    wards = await WardDirectory.load()
    by_group: dict[str, list[Speaker]] = {}
    for speaker in playing.values():
        if speaker.ward_id in wards.by_id:
            by_group.setdefault(ward_group(wards.by_id[speaker.ward_id].code), []).append(speaker)
    followers: dict[str, set[int]] = {}
    if by_group:
        rows = await pool.fetch(
            "SELECT device_id, groups FROM speaker_group_follow WHERE groups && $1::text[]",
            list(by_group),
        )
        for row in rows:
            for group in row["groups"]:
                followers.setdefault(group, set()).add(row["device_id"])
    plan = SendPlan()
    covered: set[int] = set()
    for group in sorted(by_group):
        members = followers.get(group, set())
        # Only when nobody else would hear it, and nobody hears it twice.
        if members and members <= playing.keys() and not members & covered:
            plan.groups[group] = [playing[device_id] for device_id in sorted(members)]
            covered |= members
    plan.direct = [s for device_id, s in sorted(playing.items()) if device_id not in covered]
    return plan
