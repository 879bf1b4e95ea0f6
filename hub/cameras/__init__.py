"""ONVIF cameras in the hub: onboarding, sealed credentials, discovery, health, events,
snapshots, live views (HLS, MJPEG) and the cameras nearest a place.

Other slices use what is named here and nothing else of the package (the layering
contracts in pyproject.toml check it): the running `CameraService` (CAMERAS in the hub's
runtime), the cameras nearest a device (`near_device`, and `webhook_nearby` for alert
payloads), the slice's settings, and the request and answer shapes the console's camera
pages build and show (CameraIn, DiscoverIn, CameraDetail, CandidateOut, DiscoveryOut...).
`wiring` (hub.cameras.wiring) is the composition root's hook. The names load on first use: the settings are read before any camera is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.lazy import exports

if TYPE_CHECKING:
    from hub.cameras.nearby import near_device, webhook_nearby
    from hub.cameras.schemas import (
        CameraDetail,
        CameraIn,
        CameraMoveOut,
        CameraOut,
        CandidateOut,
        CredentialsIn,
        DiscoverIn,
        DiscoveryOut,
        HealthStateName,
        NearbyCameraOut,
    )
    from hub.cameras.service import CAMERAS, CameraService
    from hub.cameras.settings import CameraSettings

__all__ = [
    "CAMERAS",
    "CameraDetail",
    "CameraIn",
    "CameraMoveOut",
    "CameraOut",
    "CameraService",
    "CameraSettings",
    "CandidateOut",
    "CredentialsIn",
    "DiscoverIn",
    "DiscoveryOut",
    "HealthStateName",
    "NearbyCameraOut",
    "near_device",
    "webhook_nearby",
]

__getattr__ = exports(
    __name__,
    {
        "CAMERAS": ("hub.cameras.service", "CAMERAS"),
        "CameraDetail": ("hub.cameras.schemas", "CameraDetail"),
        "CameraIn": ("hub.cameras.schemas", "CameraIn"),
        "CameraMoveOut": ("hub.cameras.schemas", "CameraMoveOut"),
        "CameraOut": ("hub.cameras.schemas", "CameraOut"),
        "CameraService": ("hub.cameras.service", "CameraService"),
        "CameraSettings": ("hub.cameras.settings", "CameraSettings"),
        "CandidateOut": ("hub.cameras.schemas", "CandidateOut"),
        "CredentialsIn": ("hub.cameras.schemas", "CredentialsIn"),
        "DiscoverIn": ("hub.cameras.schemas", "DiscoverIn"),
        "DiscoveryOut": ("hub.cameras.schemas", "DiscoveryOut"),
        "HealthStateName": ("hub.cameras.schemas", "HealthStateName"),
        "NearbyCameraOut": ("hub.cameras.schemas", "NearbyCameraOut"),
        "near_device": ("hub.cameras.nearby", "near_device"),
        "webhook_nearby": ("hub.cameras.nearby", "webhook_nearby"),
    },
)
