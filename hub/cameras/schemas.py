"""The camera API's shapes; nothing here ever carries a camera password out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from hub.devices import Latitude, Longitude, ShortText, Tags, Uid, WardCode

HealthStateName = Literal["up_auth", "up_no_auth", "reachable", "unreachable"]
Host = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=45,
        description="The camera's IP address (names are not resolved).",
        examples=["10.20.1.31"],
    ),
]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535, description="The camera's ONVIF HTTP port.")]
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EndpointRef = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, examples=["urn:uuid:5f0c…"])
]
DiscoveryTarget = Annotated[
    str, msgspec.Meta(max_length=64, examples=["10.20.1.31", "10.20.1.0/24", "10.20.1.31:3702"])
]


class CameraIn(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password
    ward: WardCode
    host: Host | None = None
    """Required unless `candidate` names a discovered camera (its address is used)."""
    port: Port | None = None
    """Default: the candidate's advertised port, else 80."""
    name: ShortText = ""
    """Default: the camera's manufacturer and model."""
    uid: Uid | None = None
    """Default: derived from the camera's serial number (cam-<serial>)."""
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    tags: Tags = msgspec.field(default_factory=list)
    candidate: EndpointRef | None = None
    """The endpoint reference of a discovered candidate this camera is."""


class CredentialsIn(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password


class DiscoverIn(msgspec.Struct, forbid_unknown_fields=True):
    targets: Annotated[list[DiscoveryTarget], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    """Addresses or subnets to probe one by one, on top of the configured ones."""
    multicast: bool = True
    """Also send multicast Probes from the configured interfaces."""
    wait_s: Annotated[float, msgspec.Meta(gt=0, le=30)] | None = None
    """How long to listen for answers (default from settings)."""


class ProfileOut(msgspec.Struct):
    token: str
    name: str
    codec: str | None
    width: int | None
    height: int | None
    frame_rate: float | None
    stream_uri: str | None
    """RTSP URI without credentials: the video system adds its own."""
    ptz: bool


class CapabilitiesOut(msgspec.Struct):
    events: bool
    pullpoint: bool
    ptz: bool
    event_topics: list[str]
    services: dict[str, str]
    unavailable: dict[str, str] = msgspec.field(default_factory=dict)
    """Optional calls that failed at the last probe, with why (declined, unreadable reply)."""


class CameraHealthOut(msgspec.Struct):
    state: HealthStateName | None
    """up_auth, up_no_auth (credentials rejected), reachable (not answering ONVIF), unreachable."""
    latency_ms: float | None
    clock_drift_s: float | None
    """The camera's clock minus the hub's at `clock_checked_at`; null if never read."""
    clock_checked_at: datetime | None
    """When the clock was last read: a check that cannot read it leaves this one older."""
    checked_at: datetime | None
    error: str | None


class CameraEventOut(msgspec.Struct):
    at: datetime
    kind: str
    active: bool
    data: Any


class CameraOut(msgspec.Struct):
    uid: str
    name: str
    ward: str | None
    latitude: float | None
    longitude: float | None
    lifecycle: str
    status: str
    status_reason: str
    last_seen: datetime | None
    host: str
    port: int
    username: str
    endpoint_ref: str | None
    manufacturer: str
    model: str
    firmware: str
    serial: str | None
    hardware_id: str
    hostname: str | None
    mac_addresses: list[str]
    capabilities: CapabilitiesOut
    profiles: list[ProfileOut]
    snapshot: str | None
    """The hub's snapshot link for this camera, if the camera offers snapshots."""
    health: CameraHealthOut
    onboarded_at: datetime


class CameraDetail(CameraOut):
    recent_events: list[CameraEventOut] = msgspec.field(default_factory=list)
    """The latest motion, tamper and health events, newest first."""


class CameraPage(msgspec.Struct):
    items: list[CameraOut]
    next_cursor: str | None


class CandidateOut(msgspec.Struct):
    id: int
    endpoint_ref: str
    addresses: list[str]
    host: str | None
    port: int | None
    name: str | None
    hardware: str | None
    location: str | None
    scopes: list[str]
    first_seen: datetime
    last_seen: datetime
    dismissed: bool


class MoveOut(msgspec.Struct):
    uid: str
    from_address: str
    to_address: str
    moved: bool
    """False when the camera at the new address could not be confirmed as this one."""
    reason: str | None = None


class CameraMoveOut(msgspec.Struct):
    """A camera the hub followed to a new address (found there by discovery or onboarding)."""

    uid: str
    at: datetime
    from_address: str
    to_address: str
    actor: str


class IgnoredOut(msgspec.Struct):
    address: str
    reason: str


class DiscoveryOut(msgspec.Struct):
    found: int
    candidates: list[CandidateOut]
    """Cameras seen that are not onboarded (dismissed ones included, flagged)."""
    known: list[str]
    """Uids of onboarded cameras that answered at their stored address."""
    moved: list[MoveOut]
    filtered: list[IgnoredOut]
    """Advertised addresses the hub will not follow (outside the allowed subnets, names)."""
    skipped: list[IgnoredOut]
    """Answers that could not be read."""


class CameraLinks(msgspec.Struct):
    view: str
    """The console page with the camera's live view."""
    hls: str | None
    """The HLS playlist (sub-stream; add ?profile=main for the main stream)."""
    mjpeg: str | None
    """The MJPEG fallback, built from snapshots at 1-2 fps."""
    snapshot: str | None


class NearbyCameraOut(msgspec.Struct):
    uid: str
    name: str
    ward: str | None
    latitude: float
    longitude: float
    distance_m: float
    """Great-circle distance from the place asked about, in metres."""
    status: str
    health: HealthStateName | None
    links: CameraLinks


class NearbyCamerasOut(msgspec.Struct):
    latitude: float
    longitude: float
    radius_m: float
    items: list[NearbyCameraOut]
    """Nearest first."""
