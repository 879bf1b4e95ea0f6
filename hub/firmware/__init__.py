"""Firmware: compliance of every device against the signed catalog, and staged rollouts.

The catalog itself (manifests, keys, advisories) is ``firmware_meta``; this slice imports it
into the database (``catalog``), judges each device's reported version (``compliance``,
``service``), plans campaigns (``campaigns``) and drives them from the leader
(``rollout``), with its SQL in ``store``. Routes and services are added by
``hub.firmware.wiring``; the CLI by ``hub.firmware.cli.make_app``. Other slices use the
names below (a device's compliance from the running `FirmwareService`, FIRMWARE in the
hub's runtime); they load on first use, so this package imports nothing itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.lazy import exports

if TYPE_CHECKING:
    from hub.firmware.compliance import Compliance, ComplianceState
    from hub.firmware.service import FIRMWARE, FirmwareService

__all__ = ["FIRMWARE", "Compliance", "ComplianceState", "FirmwareService"]

__getattr__ = exports(
    __name__,
    {
        "FIRMWARE": ("hub.firmware.service", "FIRMWARE"),
        "FirmwareService": ("hub.firmware.service", "FirmwareService"),
        "Compliance": ("hub.firmware.compliance", "Compliance"),
        "ComplianceState": ("hub.firmware.compliance", "ComplianceState"),
    },
)
