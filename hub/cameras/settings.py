"""Settings of the camera slice: onboarding, discovery, health sweeps, events, snapshots."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, Field, field_validator

# Private ranges plus loopback, where the simulator runs; production lists its camera subnets.
DEFAULT_SUBNETS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8"]


class CameraSettings(BaseModel):
    allowed_subnets: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SUBNETS),
        description="IPv4 subnets cameras may live in: the hub sends camera credentials and "
        "follows discovered addresses only inside them.",
    )
    probe_timeout_s: float = Field(
        15.0, gt=0, le=120, description="Longest an onboarding or re-probe may take."
    )
    health_enabled: bool = Field(
        True,
        description="Sweep every active camera's health, every IOCHUB_HEALTH__CAMERA_INTERVAL_S.",
    )
    health_concurrency: int = Field(
        16, ge=1, le=256, description="Cameras checked at once during a sweep."
    )
    health_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Longest one camera's health check may take."
    )
    drift_threshold_s: float = Field(
        5.0, gt=0, description="Clock drift beyond this many seconds is a clock_drift fault."
    )
    events_enabled: bool = Field(
        True, description="Subscribe to motion and tamper on cameras that offer PullPoint."
    )
    events_refresh_s: float = Field(
        60.0, ge=1, description="How often the list of subscribed cameras is re-read."
    )
    snapshot_max_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest snapshot the hub passes on."
    )
    snapshot_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Longest fetching one snapshot may take."
    )
    live_max_streams: int = Field(
        4,
        ge=0,
        le=256,
        description="Camera streams the hub remuxes to HLS at once; beyond, viewers are refused "
        "(and pointed at the MJPEG fallback).",
    )
    live_idle_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="A live stream nobody fetched for this long is stopped."
    )
    live_segment_s: float = Field(
        2.0, ge=0.5, le=10, description="HLS segment length (cut at the camera's keyframes)."
    )
    live_playlist_size: int = Field(5, ge=2, le=30, description="Segments an HLS playlist lists.")
    live_start_timeout_s: float = Field(
        15.0, gt=0, le=120, description="Longest a live view waits for the camera's first video."
    )
    live_dir: str = Field(
        "",
        description="Where HLS segments are written (a tmpfs suits); empty: the system's "
        "temporary directory.",
    )
    ffmpeg: str = Field("ffmpeg", description="The ffmpeg binary that remuxes camera streams.")
    mjpeg_fps: float = Field(
        1.0, ge=1, le=2, description="Default frame rate of the MJPEG fallback (1 to 2 fps)."
    )
    mjpeg_max_s: float = Field(
        600.0, gt=0, description="Longest one MJPEG fallback view runs before it ends."
    )
    near_radius_m: float = Field(
        300.0, gt=0, le=50_000, description="Radius of the nearest cameras to a place or alert."
    )
    discovery_targets: list[str] = Field(
        default_factory=list,
        description="Addresses or subnets (10.1.2.0/24) probed one by one by every discovery; "
        "multicast does not reach other wards' subnets.",
    )
    discovery_interfaces: list[str] = Field(
        default_factory=list,
        description="Local IPv4 interface addresses to send multicast WS-Discovery Probes from.",
    )
    discovery_port: int = Field(3702, ge=1, le=65535, description="WS-Discovery UDP port.")
    discovery_wait_s: float = Field(
        3.0, gt=0, le=30, description="How long a discovery listens for answers."
    )

    @field_validator("allowed_subnets", "discovery_targets")
    @classmethod
    def check_networks(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.IPv4Network(value.partition(":")[0], strict=False)
        return values

    @field_validator("discovery_interfaces")
    @classmethod
    def check_interfaces(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.IPv4Address(value)
        return values

    def subnets(self) -> list[ipaddress.IPv4Network]:
        return [ipaddress.IPv4Network(subnet, strict=False) for subnet in self.allowed_subnets]
