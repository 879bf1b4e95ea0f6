"""ONVIF cameras in the hub: onboarding, sealed credentials, discovery, health, events, snapshots.

Entry points: `service.CameraService` (API operations), `health.CameraHealthService`
(sweeps), `wiring` (the composition root's hooks), `settings.CameraSettings`.
"""
