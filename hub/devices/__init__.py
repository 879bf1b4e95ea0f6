"""The device registry: wards, devices, groups, credentials, and device profiles.

Other slices use device profiles (how a model names its SenML records) from here.
"""

from hub.devices.profiles import (
    NATIVE,
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
    "NATIVE",
    "DeviceIdentity",
    "MetricMapping",
    "Profile",
    "ProfileBook",
    "keep_fresh",
    "parse_profile",
    "save_profile",
    "shipped_profiles",
]
