"""The device registry, the one owner of wards, devices, groups, credentials and device
profiles.

Other slices use what is named here and nothing else of the package (the layering
contracts in pyproject.toml check it): `registry` (list, resolve, scope and change
devices, wards and groups), the directory that resolves uids on the ingest path, the
models the ORM maps and the field types of their schemas. `wiring`
(hub.devices.wiring) is the composition root's hook.
"""

from hub.devices import service as registry
from hub.devices.directory import DIRECTORY, DeviceDirectory, DeviceRef
from hub.devices.models import Device, DeviceGroup, Lifecycle, Ward
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
from hub.devices.schemas import Latitude, Longitude, ShortText, StatusName, Tags, Uid, WardCode
from hub.devices.service import WardDirectory

__all__ = [
    "DIRECTORY",
    "NATIVE",
    "PROFILES",
    "Device",
    "DeviceDirectory",
    "DeviceGroup",
    "DeviceIdentity",
    "DeviceRef",
    "Latitude",
    "Lifecycle",
    "Longitude",
    "MetricMapping",
    "Profile",
    "ProfileBook",
    "ShortText",
    "StatusName",
    "Tags",
    "Uid",
    "Ward",
    "WardCode",
    "WardDirectory",
    "keep_fresh",
    "parse_profile",
    "registry",
    "save_profile",
    "shipped_profiles",
]
