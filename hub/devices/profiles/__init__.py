"""Device profiles: how a model names its SenML records, and which base names a device may use.

Real RFC 8428 devices name their records their own way: base names such as
``urn:dev:ow:10e2073a01080063:`` (RFC 9039 device URNs), record names such as ``temp``
or ``batteryLevel``, units from the SenML units registry. A profile, one per model,
says which base names a device of that model uses as its identity (templates filled
from the device's own registry entry, so a device can only ever claim itself: the
topic or CoAP resource it speaks on is bound to its credentials), how record names
and units map to catalog metrics, and what happens to names it does not map.

Profiles ship with the hub (the JSON files beside this module) and can be imported
(``iochub devices profiles import FILE``); an imported profile replaces a shipped one
of the same model. The ingest path resolves names from memory: ``ProfileBook``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Annotated, Final, Literal

import asyncpg
import msgspec

from hub.errors import FieldProblem, ValidationFailed
from hub.runtime.context import RuntimeKey
from hub.storage.migrations import Connection

__all__ = [
    "NATIVE",
    "DeviceIdentity",
    "MappingCheck",
    "MetricMapping",
    "Profile",
    "ProfileBook",
    "keep_fresh",
    "load_imported",
    "parse_profile",
    "save_profile",
    "shipped_profiles",
]

# Says what is wrong with mapping a record to (metric, unit), or None: the telemetry
# catalog's judgement, handed in so that the registry does not depend on telemetry.
MappingCheck = Callable[[str, str | None], str | None]

log = logging.getLogger("hub.devices.profiles")

_PLACEHOLDERS: Final = ("{uid}", "{serial}")


class MetricMapping(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    metric: str
    """The catalog metric the record's value is stored as."""
    unit: str | None = None
    """The unit a record without one is in (SenML units registry symbol, e.g. "Cel")."""


class Profile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One model's SenML naming (docs/protocol/sensors.md, section 4.6)."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    description: str = ""
    identities: tuple[str, ...] = ("{uid}:", "{uid}/")
    """Base names a device of this model uses as its identity; {uid} and {serial} are the
    device's registry fields. Each must name one device, so each holds a placeholder."""
    names: dict[str, MetricMapping] = msgspec.field(default_factory=dict)
    """Record name (after the identity) -> catalog metric and default unit."""
    units: dict[str, str] = msgspec.field(default_factory=dict)
    """SenML unit -> catalog metric, for records named by the identity alone (RFC 8428
    section 5.1: ``{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}``)."""
    catalog_names: bool = True
    """Record names that are catalog metrics (pm2_5, temperature) map to themselves."""
    unmapped: Literal["quarantine", "raw"] = "quarantine"
    """Names neither mapped nor in the catalog: kept aside with the reason, or stored
    as they are under raw/<name> (numbers without unit conversion)."""


# Devices whose model has no profile speak the hub's own names (docs/protocol/sensors.md §4.2).
NATIVE: Final = Profile(model="*", description="the hub's own SenML naming")


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What the registry knows about the device a message arrived for."""

    uid: str
    model: str
    serial: str | None


def parse_profile(
    document: bytes | str | Mapping[str, object], check: MappingCheck | None = None
) -> Profile:
    """A profile from JSON; ValidationFailed naming the field.

    With ``check``, every mapping is checked (against the metric catalog).
    """
    try:
        if isinstance(document, bytes | str):
            profile = msgspec.json.decode(document, type=Profile)
        else:
            profile = msgspec.convert(document, type=Profile)
    except msgspec.ValidationError as exc:
        raise ValidationFailed("not a device profile", [FieldProblem("profile", str(exc))]) from exc
    except msgspec.DecodeError as exc:
        raise ValidationFailed("not JSON", [FieldProblem("profile", str(exc))]) from exc
    problems = []
    for template in profile.identities:
        if not any(placeholder in template for placeholder in _PLACEHOLDERS):
            problems.append(
                FieldProblem(
                    "identities",
                    f"{template!r} names no one device: use {{uid}} or {{serial}} in it",
                )
            )
    if check is not None:
        for name, mapping in profile.names.items():
            if (problem := check(mapping.metric, mapping.unit)) is not None:
                problems.append(FieldProblem(f"names.{name}", problem))
        for unit, metric in profile.units.items():
            if (problem := check(metric, unit)) is not None:
                problems.append(FieldProblem(f"units.{unit}", problem))
    if problems:
        raise ValidationFailed(f"profile {profile.model!r} cannot be used", problems)
    return profile


def shipped_profiles() -> list[Profile]:
    """The profiles that come with the hub: the demo models and a generic RFC 8428 sensor."""
    found = []
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            found.append(parse_profile(entry.read_bytes()))
    return found


class ProfileBook:
    """Every profile in memory, by model: shipped ones overlaid with imported ones.

    ``version`` changes whenever the set changes, so caches built on it can tell.
    """

    def __init__(self, imported: Iterable[Profile] = ()) -> None:
        self._shipped = {profile.model: profile for profile in shipped_profiles()}
        self._by_model: Mapping[str, Profile] = MappingProxyType(dict(self._shipped))
        self.version = 0
        self.replace(imported)

    @property
    def profiles(self) -> Mapping[str, Profile]:
        return self._by_model

    def profile_for(self, model: str) -> Profile:
        return self._by_model.get(model, NATIVE)

    def replace(self, imported: Iterable[Profile]) -> None:
        """Take the imported profiles (all of them) over the shipped ones."""
        merged = dict(self._shipped)
        merged.update((profile.model, profile) for profile in imported)
        if merged != self._by_model:
            self._by_model = MappingProxyType(merged)
            self.version += 1

    async def refresh(self, conn: Connection | asyncpg.Pool) -> None:
        self.replace(await load_imported(conn))


async def keep_fresh(book: ProfileBook, pool: asyncpg.Pool, every_s: float = 30.0) -> None:
    """Reload imported profiles now and then, so an import reaches every hub process."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await book.refresh(pool)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("device profiles not reloaded (%s); next try in %.0f s", exc, every_s)


async def load_imported(conn: Connection | asyncpg.Pool) -> list[Profile]:
    rows = await conn.fetch("SELECT document FROM device_profile ORDER BY model")
    found = []
    for row in rows:
        try:
            found.append(parse_profile(row["document"]))
        except ValidationFailed as exc:
            log.warning("imported device profile ignored: %s", exc)
    return found


async def save_profile(conn: Connection, profile: Profile) -> bool:
    """Store an imported profile (replacing one of its model); True if it is new."""
    status = await conn.fetchval(
        "INSERT INTO device_profile (model, document) VALUES ($1, $2::jsonb) "
        "ON CONFLICT (model) DO UPDATE SET document = excluded.document, updated_at = now() "
        "RETURNING xmax = 0",
        profile.model,
        msgspec.json.encode(profile).decode(),
    )
    return bool(status)


PROFILES: RuntimeKey[ProfileBook] = RuntimeKey("device profiles")
