"""SenML names to catalog metrics, per device, through its model's profile (from memory).

The driver hands over each record's resolved name (RFC 8428 section 4.6); here it
becomes (metric, unit): the device's identity prefix is taken off (a name that
claims another device is refused), then the profile maps the record name.
"""

from __future__ import annotations

import functools

from hub.devices import NATIVE, DeviceIdentity, Profile, ProfileBook
from hub.telemetry.catalog import CATALOG, RAW_PREFIX, CatalogError, accepted_units

__all__ = ["DeviceNames", "NameRefused", "SenmlNames", "mapping_problem"]

_MAX_RAW_NAME = 100


class NameRefused(ValueError):
    """A SenML name the device's profile cannot store; the message says why."""


def mapping_problem(metric: str, unit: str | None) -> str | None:
    """What is wrong with a profile mapping to ``metric`` in ``unit``, or None."""
    if metric not in CATALOG:
        return f"{metric!r} is not a catalog metric"
    try:
        units = accepted_units(metric)
    except CatalogError as exc:
        return str(exc)
    if unit is not None and unit not in units:
        return f"unit {unit!r} is not accepted for {metric}"
    return None


class DeviceNames:
    """One device's SenML names, resolved to (metric, unit)."""

    def __init__(self, profile: Profile, device: DeviceIdentity) -> None:
        self.profile = profile
        self.device = device
        prefixes = set()
        for template in profile.identities:
            if "{serial}" in template and not device.serial:
                continue
            serial = device.serial or ""
            prefixes.add(template.replace("{uid}", device.uid).replace("{serial}", serial))
        # Longest first: "urn:dev:ow:abc:" wins over a shorter prefix of it.
        self.prefixes = tuple(sorted(prefixes, key=len, reverse=True))
        self.resolve = functools.lru_cache(maxsize=256)(self._resolve)

    def _resolve(self, name: str, unit: str | None, location: str) -> tuple[str, str | None]:
        """The catalog (or raw) metric of a resolved SenML name, and its unit; NameRefused."""
        profile = self.profile
        rest = self._record_name(name, location)
        if not rest:
            return self._by_unit(name, unit)
        mapping = profile.names.get(rest)
        if mapping is not None:
            return mapping.metric, unit if unit is not None else mapping.unit
        if profile.catalog_names and rest in CATALOG:
            return rest, unit
        if profile.unmapped == "raw":
            if len(rest) > _MAX_RAW_NAME:
                raise NameRefused(f"SenML name {rest!r} is longer than {_MAX_RAW_NAME} characters")
            return RAW_PREFIX + rest, unit
        where = "the catalog" if profile is NATIVE else f"the catalog nor profile {profile.model!r}"
        raise NameRefused(f"SenML name {rest!r} (unit {unit!r}) is not in {where}")

    def _by_unit(self, name: str, unit: str | None) -> tuple[str, str | None]:
        """A record named by the device alone is told by its unit (RFC 8428 section 5.1)."""
        metric = self.profile.units.get(unit) if unit is not None else None
        if metric is not None:
            return metric, unit
        if self.profile.unmapped == "raw" and unit is not None and len(unit) <= _MAX_RAW_NAME:
            return RAW_PREFIX + unit, unit
        raise NameRefused(
            f"SenML name {name!r} names the device but no measurement, and its unit {unit!r} "
            "names no metric"
        )

    def _record_name(self, name: str, location: str) -> str:
        for prefix in self.prefixes:
            if name.startswith(prefix):
                return name[len(prefix) :]
            if name == prefix[:-1] and prefix[-1] in ":/":
                return ""  # the identity itself
        if name in self.profile.names:
            return name
        cut = max(name.rfind(":"), name.rfind("/"))
        if cut < 0:
            return name  # no device part: the device of the topic or resource
        claimed = name[:cut]
        uid = self.device.uid
        parts = claimed.split(":", 3)
        if claimed == uid or (
            len(parts) == 4 and parts[:2] == ["urn", "dev"] and parts[2] and parts[3] == uid
        ):
            return name[cut + 1 :]
        raise NameRefused(f"payload claims device {claimed!r} on device {uid!r}'s {location}")


class SenmlNames:
    """DeviceNames per device, rebuilt when the profiles or the device's entry change."""

    def __init__(self, book: ProfileBook) -> None:
        self.book = book
        self._version = book.version
        self._names: dict[DeviceIdentity, DeviceNames] = {}

    def for_device(self, device: DeviceIdentity) -> DeviceNames:
        if self._version != self.book.version:
            self._names.clear()
            self._version = self.book.version
        names = self._names.get(device)
        if names is None:
            if len(self._names) >= 100_000:
                self._names.clear()
            names = DeviceNames(self.book.profile_for(device.model), device)
            self._names[device] = names
        return names
