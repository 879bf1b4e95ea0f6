"""ONVIF cameras in the hub: onboarding, sealed credentials, discovery, health, events,
snapshots, live views (HLS, MJPEG) and the cameras nearest a place.

Entry points: `service.CameraService` (API operations), `health.CameraHealthService`
(sweeps), `live.LiveViews` (streams), `nearby` (nearest cameras, used by alerts),
`wiring` (the composition root's hooks), `settings.CameraSettings`.
"""

from hub.cameras.settings import CameraSettings

__all__ = ["CameraSettings"]
