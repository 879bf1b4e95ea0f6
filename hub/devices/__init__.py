"""The device registry, the one owner of wards, devices, groups, credentials and device
profiles: other slices resolve, list and register devices through what is named here;
`wiring` (hub.devices.wiring) is the composition root's hook."""

from hub.devices.directory import DIRECTORY, DeviceDirectory, DeviceRef
from hub.devices.profiles import (
    NATIVE,
    PROFILES,
    DeviceIdentity,
    MetricMapping,
    Profile,
    ProfileBook,
    keep_fresh,
    parse_profile,
    save_profile,
    shipped_profiles,
)

__all__ = [
    "DIRECTORY",
    "NATIVE",
    "PROFILES",
    "DeviceDirectory",
    "DeviceIdentity",
    "DeviceRef",
    "MetricMapping",
    "Profile",
    "ProfileBook",
    "keep_fresh",
    "parse_profile",
    "save_profile",
    "shipped_profiles",
]
