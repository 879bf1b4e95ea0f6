"""What the hub writes in English into its records (why a device has its status, the default
alert messages, why an alert closed, why firmware is out of step), read back in the reader's
language and local time.

The hub stores these sentences as the health monitor, the alert engine and the firmware
catalog write them (hub.health.machine, hub.alerts.rules.DEFAULT_MESSAGES, hub.alerts.windows,
hub.firmware.compliance); the console
recognises each shape and says it again from the catalog. A sentence of another shape (an
alert message a person wrote in a rule) is shown as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Final

from babel.dates import format_timedelta

from hub.web import words
from hub.web.words import _

Gettext = Callable[[str], str]
LocalTime = Callable[[datetime | date], str]

# hub.health.machine.describe: "45 s", "5 min", "3 h", "2 d".
_UNITS: Final = {"s": 1, "min": 60, "h": 3600, "d": 86400}
_SPAN: Final = r"\d+ (?:s|min|h|d)"

_SHAPES: Final = (
    (rf"^silent for (?P<span>{_SPAN})$", _("silent for %(span)s")),
    (r"^disconnected$", _("disconnected")),
    (r"^never heard from$", _("never heard from")),
    (
        r"^maintenance until (?P<utc>\d{4}-\d\d-\d\d \d\d:\d\d) UTC$",
        _("maintenance until %(when)s"),
    ),
    (rf"^(?P<n>\d+) state changes in (?P<span>{_SPAN})$", _("%(n)s state changes in %(span)s")),
    (r"^(?P<device>\S+) is offline: (?P<reason>.+)$", _("%(device)s is offline: %(reason)s")),
    (r"^(?P<device>\S+) is degraded: (?P<reason>.+)$", _("%(device)s is degraded: %(reason)s")),
    (
        r"^(?P<metric>\S+) at (?P<device>\S+) is (?P<value>-?[\d.]+) ?(?P<unit>.*?) "
        r"\(limit (?P<threshold>[^)]+)\)$",
        _("%(metric)s at %(device)s is %(value)s %(unit)s (limit %(threshold)s)"),
    ),
    (
        r"^active window (?P<window>\d\d:\d\d-\d\d:\d\d(?: \([a-z, ]+\))?) closed$",
        _("active window %(window)s closed"),
    ),
    (
        r"^(?P<model>.+) is not in the firmware catalog$",
        _("%(model)s is not in the firmware catalog"),
    ),
    (
        r"^(?P<version>.+) is not a catalog version of (?P<model>.+)$",
        _("%(version)s is not a catalog version of %(model)s"),
    ),
    (r"^support ended (?P<day>\d{4}-\d\d-\d\d)$", _("support ended %(when)s")),
    (
        r"^(?P<n>\d+) versions and (?P<days>\d+) days behind (?P<version>\S+)$",
        _("%(n)s versions and %(days)s days behind %(version)s"),
    ),
)
_FAULTS: Final = re.compile(r"^[a-z_]+(?:, [a-z_]+)*$")


def said(message: str | None, gettext: Gettext, language: str, local_time: LocalTime) -> str:
    """``message`` in the reader's words where its shape is known, else as it is; instants
    and days are shown through ``local_time`` (the console's local formats)."""
    if not message:
        return ""
    for pattern, template in _SHAPES:
        found = re.match(pattern, message)
        if found is None:
            continue
        values = dict(found.groupdict())
        if "span" in values:
            count, unit = values["span"].split()
            span = timedelta(seconds=int(count) * _UNITS[unit])
            values["span"] = format_timedelta(span, threshold=1.1, locale=language)
        if "utc" in values:
            moment = datetime.fromisoformat(values.pop("utc")).replace(tzinfo=UTC)
            values["when"] = local_time(moment)
        if "day" in values:
            values["when"] = local_time(date.fromisoformat(values.pop("day")))
        if "reason" in values:
            values["reason"] = said(values["reason"], gettext, language, local_time)
        if "metric" in values:
            values["metric"] = gettext(words.word(words.METRIC_WORDS, values["metric"]))
        return (gettext(template) % values).replace("  ", " ")
    if _FAULTS.match(message):  # a degraded device's faults, as codes
        return ", ".join(
            gettext(words.word(words.EVENT_WORDS, code)) for code in message.split(", ")
        )
    return message
