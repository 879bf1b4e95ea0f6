"""Camera failures as hub errors: what went wrong at the camera, and what to fix."""

from __future__ import annotations

from drivers.onvif.client import (
    CameraAuthError,
    CameraError,
    CameraNotOnvif,
    CameraTimeout,
    CameraUnreachable,
)
from drivers.onvif.snapshot import SnapshotTooLarge
from hub.errors import Conflict, FieldProblem, HubError, ValidationFailed


class CameraCredentialsRejected(ValidationFailed):
    slug = "camera-credentials-rejected"
    title = "The camera rejected the credentials"


class CameraUnavailable(HubError):
    """The camera answered badly or not at all; the hub is the gateway that failed."""

    status = 502
    slug = "camera-unavailable"
    title = "The camera could not be used"


class CameraTimedOut(CameraUnavailable):
    status = 504
    slug = "camera-timeout"
    title = "The camera did not answer in time"
    retryable = True


class CameraAlreadyOnboarded(Conflict):
    slug = "camera-already-onboarded"
    title = "The camera is onboarded already"

    def __init__(self, detail: str, uid: str) -> None:
        super().__init__(detail, [FieldProblem("uid", f"the camera is {uid}")])
        self.uid = uid


# The calls a probe starts with: a failure there says little beyond "not ONVIF on this port".
FIRST_CONTACT = frozenset({None, "GetSystemDateAndTime"})


def onboarding_error(error: CameraError, host: str, port: int) -> HubError:
    """The problem to show a technician who asked the hub to talk to host:port."""
    where = f"{host}:{port}"
    failed = f" ({error.operation} failed)" if error.operation else ""
    if isinstance(error, CameraAuthError):
        if error.clock_suspect:
            advice = (
                f"the camera at {where} rejected the credentials, and its clock may be the "
                f"cause: {error.clock_suspect}. Set the camera's time (or NTP server), then "
                "try again; if it still fails, check the username and password"
            )
        else:
            advice = (
                f"the camera at {where} rejected the credentials: check the username and "
                "password, and that this user may use ONVIF (some cameras keep a separate "
                "ONVIF user list)"
            )
        return CameraCredentialsRejected(
            advice,
            [
                FieldProblem("username", "rejected by the camera"),
                FieldProblem("password", "rejected by the camera"),
            ],
        )
    if isinstance(error, CameraTimeout):
        return CameraTimedOut(
            f"the camera at {where} accepted the connection but did not answer in time"
            f"{failed}: check that this port is its ONVIF port and that the camera is not "
            "overloaded or stuck (a reboot often helps)"
        )
    if isinstance(error, CameraUnreachable):
        return CameraUnavailable(
            f"nothing answered at {where}: check the address and port, that the camera is "
            "powered and on the network, and that no firewall blocks the hub"
        )
    if isinstance(error, CameraNotOnvif) and error.operation in FIRST_CONTACT:
        return CameraUnavailable(
            f"something answers at {where}, but not ONVIF{failed}: check the port (ONVIF is "
            "often on 80, 8000, 8080 or 2020) and that ONVIF is enabled in the camera's settings"
        )
    if error.operation is not None:
        return CameraUnavailable(
            f"the camera at {where} speaks ONVIF, but its answer to {error.operation}, which "
            f"onboarding needs, could not be used: {error}. A firmware update often fixes this"
        )
    return CameraUnavailable(f"the camera at {where} could not be read: {error}")


def snapshot_error(error: CameraError, uid: str, limit: int) -> HubError:
    if isinstance(error, SnapshotTooLarge):
        return CameraUnavailable(
            f"camera {uid} sent a snapshot larger than the {limit} bytes allowed "
            "(IOCHUB_CAMERAS__SNAPSHOT_MAX_BYTES); choose a smaller snapshot resolution"
        )
    if isinstance(error, CameraAuthError):
        return CameraUnavailable(
            f"camera {uid} rejected the stored credentials for its snapshot: update them "
            f"with PUT /api/v1/cameras/{uid}/credentials"
        )
    if isinstance(error, CameraTimeout):
        return CameraTimedOut(f"camera {uid} did not send its snapshot in time")
    if isinstance(error, CameraUnreachable):
        return CameraUnavailable(f"camera {uid} cannot be reached for a snapshot")
    return CameraUnavailable(f"camera {uid} did not send a usable snapshot: {error}")


def stream_error(error: CameraError, uid: str) -> CameraUnavailable:
    """Why a live view of camera ``uid`` cannot start."""
    if isinstance(error, CameraAuthError):
        return CameraUnavailable(
            f"camera {uid} refused the stored credentials for its stream: update them with "
            f"PUT /api/v1/cameras/{uid}/credentials"
        )
    if isinstance(error, CameraTimeout):
        return CameraTimedOut(f"camera {uid} sent no video in time: {error}")
    if isinstance(error, CameraUnreachable):
        return CameraUnavailable(f"camera {uid} cannot be reached for its stream: {error}")
    return CameraUnavailable(f"camera {uid} cannot stream: {error}")
