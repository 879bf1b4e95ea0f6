"""Who a broadcast reaches: wards, device groups and speakers, checked against ward scope.

Checking (``check_targets``) happens with the caller's rights and names every target
that is unknown or outside the caller's wards. Dispatch re-resolves the stored targets
(``resolve_stored``) at each occurrence, so a speaker added to a ward or a group since
is reached too, but never a speaker outside the wards the broadcast was approved for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from tortoise.queryset import QuerySet

from hub.auth import Principal, Role
from hub.broadcasts.schemas import TargetsIn
from hub.devices import Device, DeviceGroup, Lifecycle, registry
from hub.errors import FieldProblem, Forbidden, ValidationFailed

SPEAKER = "speaker"
# Dispatch acts for the broadcast's author, whose scope was checked when it was saved.
SYSTEM = Principal(
    user_id=0, username="broadcast-scheduler", role=Role.ADMIN, ward_ids=None, via="token"
)


@dataclass(frozen=True, slots=True)
class Speaker:
    device_id: int
    uid: str
    ward_id: int | None


@dataclass(frozen=True, slots=True)
class ResolvedTargets:
    all: bool
    ward_ids: tuple[int, ...]
    group_ids: tuple[int, ...]
    speaker_uids: tuple[str, ...]
    scope_ward_ids: frozenset[int]
    """Every ward the targets reach: the broadcast's scope."""
    speakers: dict[int, Speaker]


def _active_speakers() -> QuerySet[Device]:
    return registry.scoped(SYSTEM).filter(kind=SPEAKER, lifecycle=Lifecycle.ACTIVE.value)


async def _speakers(query: QuerySet[Device]) -> dict[int, Speaker]:
    rows = await query.values("id", "uid", "ward_id")
    return {r["id"]: Speaker(r["id"], r["uid"], r["ward_id"]) for r in rows}


async def _group_speakers(group: DeviceGroup) -> dict[int, Speaker]:
    members = await registry.group_members(SYSTEM, group)
    return await _speakers(members.filter(kind=SPEAKER, lifecycle=Lifecycle.ACTIVE.value))


async def check_targets(principal: Principal, targets: TargetsIn) -> ResolvedTargets:
    """Resolve the targets the caller asked for; every problem is named by its field."""
    wards = await registry.WardDirectory.load()
    outside: list[FieldProblem] = []
    unknown: list[FieldProblem] = []
    if not (targets.all or targets.wards or targets.groups or targets.speakers):
        unknown.append(FieldProblem("targets", "name all, wards, groups or speakers"))
    if targets.all and principal.ward_ids is not None:
        outside.append(
            FieldProblem("targets.all", "ward staff reach their own wards: name them instead")
        )

    ward_ids: list[int] = []
    for index, code in enumerate(targets.wards):
        ward = wards.by_code.get(code)
        if ward is None:
            unknown.append(FieldProblem(f"targets.wards[{index}]", f"no ward with code {code!r}"))
        elif not principal.sees_ward(ward.id):
            outside.append(
                FieldProblem(f"targets.wards[{index}]", f"{code} is outside the wards you serve")
            )
        else:
            ward_ids.append(ward.id)

    groups: list[DeviceGroup] = []
    for index, group_id in enumerate(targets.groups):
        group = await registry.scoped_groups(principal).get_or_none(id=group_id)
        if group is None:
            unknown.append(
                FieldProblem(f"targets.groups[{index}]", f"no device group {group_id} you can use")
            )
        else:
            groups.append(group)

    named: dict[str, Speaker] = {}
    if targets.speakers:
        rows = (
            await registry.scoped(SYSTEM)
            .filter(uid__in=targets.speakers)
            .values("id", "uid", "kind", "lifecycle", "ward_id")
        )
        found = {r["uid"]: r for r in rows}
        for index, uid in enumerate(targets.speakers):
            field = f"targets.speakers[{index}]"
            row = found.get(uid)
            if row is None or row["kind"] != SPEAKER:
                unknown.append(FieldProblem(field, f"no speaker {uid!r}"))
            elif not principal.sees_ward(row["ward_id"]):
                outside.append(FieldProblem(field, f"{uid} is outside the wards you serve"))
            elif row["lifecycle"] != Lifecycle.ACTIVE.value:
                unknown.append(FieldProblem(field, f"{uid} is {row['lifecycle']}, not active"))
            else:
                named[uid] = Speaker(row["id"], uid, row["ward_id"])
    if outside:
        raise Forbidden("some targets are outside the wards you serve", outside + unknown)
    if unknown:
        raise ValidationFailed("some targets do not exist", unknown)

    speakers: dict[int, Speaker] = {s.device_id: s for s in named.values()}
    if targets.all:
        speakers.update(await _speakers(_active_speakers()))
    if ward_ids:
        speakers.update(await _speakers(_active_speakers().filter(ward_id__in=ward_ids)))
    scope = set(ward_ids)
    for group in groups:
        members = await _group_speakers(group)
        speakers.update(members)
        scope.update(s.ward_id for s in members.values() if s.ward_id is not None)
        if group.ward_id is not None:
            scope.add(group.ward_id)
    scope.update(s.ward_id for s in speakers.values() if s.ward_id is not None)
    if targets.all:
        scope.update(wards.by_id)
    if not speakers:
        raise ValidationFailed(
            "the targets reach no speaker",
            [FieldProblem("targets", "none of the targets has an active speaker")],
        )
    # Members of a saved filter are scoped to the caller already; this is the last word.
    principal.require_wards(scope)
    return ResolvedTargets(
        all=targets.all,
        ward_ids=tuple(ward_ids),
        group_ids=tuple(g.id for g in groups),
        speaker_uids=tuple(named),
        scope_ward_ids=frozenset(scope),
        speakers=speakers,
    )


async def resolve_stored(row: Mapping[str, Any] | asyncpg.Record) -> dict[int, Speaker]:
    """The speakers a saved broadcast (its ``broadcast`` row's target and scope columns)
    reaches now, within the wards it was approved for."""
    speakers: dict[int, Speaker] = {}
    if row["target_all"]:
        return await _speakers(_active_speakers())
    wards = list(row["target_wards"])
    if wards:
        speakers.update(await _speakers(_active_speakers().filter(ward_id__in=wards)))
    for group in await DeviceGroup.filter(id__in=list(row["target_groups"])):
        speakers.update(await _group_speakers(group))
    uids = list(row["target_speakers"])
    if uids:
        speakers.update(await _speakers(_active_speakers().filter(uid__in=uids)))
    scope = frozenset(row["ward_ids"])
    return {k: s for k, s in speakers.items() if s.ward_id in scope}


async def ward_codes(ward_ids: Iterable[int]) -> list[str]:
    wards = await registry.WardDirectory.load()
    return sorted(wards.by_id[w].code for w in ward_ids if w in wards.by_id)
