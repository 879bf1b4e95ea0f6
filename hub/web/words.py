"""Words for the codes the hub stores (statuses, kinds, health states), as the console shows
them: English source strings, translated in the templates with `_()`."""

from __future__ import annotations

from typing import Final


def _(message: str) -> str:
    """Marks a string for the catalogs; the page translates it when it shows it."""
    return message


STATUS_WORDS: Final = {
    "online": _("online"),
    "late": _("late"),
    "offline": _("offline"),
    "degraded": _("degraded"),
    "maintenance": _("in maintenance"),
    "unknown": _("unknown"),
    "flapping": _("flapping"),
}

KIND_WORDS: Final = {
    "camera": _("camera"),
    "speaker": _("loudspeaker"),
    "sensor": _("sensor"),
}

LIFECYCLE_WORDS: Final = {
    "pending": _("pending approval"),
    "active": _("in service"),
    "decommissioned": _("decommissioned"),
}

# Camera health as the ONVIF sweep finds it (hub.cameras.health).
CAMERA_HEALTH_WORDS: Final = {
    "up_auth": _("answering, signed in"),
    "up_no_auth": _("answering, but the camera refuses the stored password"),
    "reachable": _("reachable, but not answering ONVIF"),
    "unreachable": _("unreachable"),
}

COMPLIANCE_WORDS: Final = {
    "current": _("current"),
    "outdated": _("outdated"),
    "vulnerable": _("vulnerable"),
    "end_of_support": _("end of support"),
    "unknown_model": _("model not in the catalog"),
    "unknown_version": _("version not in the catalog"),
}

DELIVERY_WORDS: Final = {
    "finished": _("played to the end"),
    "preempted": _("interrupted by a more urgent broadcast"),
    "failed": _("failed"),
    "playing": _("playing"),
    "downloading": _("downloading"),
    "received": _("received"),
    "sent": _("sent, no answer yet"),
    "not_sent": _("not sent"),
}

# Device events (drivers.contract.DeviceEvent kinds the hub keeps).
EVENT_WORDS: Final = {
    "amplifier_fault": _("amplifier fault"),
    "speaker_fault": _("speaker fault"),
    "clock_drift": _("clock drift"),
    "auth_failed": _("sign-in refused"),
    "low_battery": _("low battery"),
    "tamper": _("tampering"),
    "motion": _("motion"),
}

METRIC_WORDS: Final = {
    "pm2_5": _("Fine particles PM2.5"),
    "pm10": _("Particles PM10"),
    "o3": _("Ozone"),
    "co": _("Carbon monoxide"),
    "no2": _("Nitrogen dioxide"),
    "so2": _("Sulphur dioxide"),
    "temperature": _("Temperature"),
    "humidity": _("Humidity"),
    "noise": _("Noise"),
    "water_level": _("Water level"),
    "rainfall": _("Rainfall"),
    "battery": _("Battery"),
    "rssi": _("Radio signal"),
    "pressure": _("Air pressure"),
    "illuminance": _("Illuminance"),
    "voltage": _("Voltage"),
    "current": _("Current"),
    "power": _("Power"),
}


def word(words: dict[str, str], code: str | None) -> str:
    """The word for a code; a code the console has no word for is shown as it is."""
    if not code:
        return ""
    return words.get(code, code.replace("_", " "))
