"""The sentences the hub records in English are read back in Vietnamese, in local time and day
first; the health and alert ones are made by the code that writes them, so a change of wording
there fails here."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from jinja2 import DictLoader, Environment

from hub.alerts.rules import DEFAULT_MESSAGES, render
from hub.alerts.windows import LocalWindow
from hub.health.machine import Flapping, Observed, Timing, assess, flap_reason
from hub.web import i18n

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
MINUTE = Timing(expected_interval=timedelta(minutes=1))


class Reader:
    def __init__(self, language: str) -> None:
        self.cookies = {"iochub_lang": language}


def said(message: str | None, language: str = "vi") -> str:
    environment = Environment(loader=DictLoader({"page": "{{ m|said }}"}), autoescape=True)
    i18n.install(environment)
    return environment.get_template("page").render(request=Reader(language), m=message)


def reason(observed: Observed) -> str:
    return assess(observed, MINUTE, NOW).reason


def test_health_reasons_are_said_in_the_readers_language() -> None:
    silent = reason(Observed(NOW - timedelta(minutes=5), None, (), None))
    assert silent == "silent for 5 min"
    assert said(silent) == "không phản hồi đã 5 phút"
    assert said(silent, "en") == "silent for 5 minutes"
    gone = reason(Observed(NOW - timedelta(days=3), None, (), None))
    assert said(gone) == "không phản hồi đã 3 ngày"
    assert said(reason(Observed(NOW, False, (), None))) == "mất kết nối"
    assert said(reason(Observed(None, None, (), None))) == "chưa từng liên lạc"
    # Maintenance ends at 17:00 local, not at the UTC hour the monitor wrote.
    until = reason(Observed(NOW, True, (), datetime(2026, 12, 7, 10, 0, tzinfo=UTC)))
    assert said(until) == "bảo trì đến 07/12/2026 17:00"
    faults = reason(Observed(NOW, True, ("amplifier_fault", "low_battery"), None))
    assert said(faults) == "lỗi bộ khuếch đại, pin yếu"
    flapping = flap_reason(6, Flapping(timedelta(minutes=10), 5, 2))
    assert said(flapping) == "6 lần đổi trạng thái trong 10 phút"


def test_default_alert_messages_are_said_in_the_readers_language() -> None:
    threshold = render(
        DEFAULT_MESSAGES["threshold"],
        {"metric": "pm2_5", "device": "aq-01", "value": 82.46, "unit": "µg/m³", "threshold": 50},
    )
    assert said(threshold) == "Bụi mịn PM2.5 tại aq-01 là 82.5 µg/m³ (ngưỡng 50)"
    offline = render(
        DEFAULT_MESSAGES["offline"],
        {
            "device": "spk-01",
            "reason": reason(Observed(NOW - timedelta(minutes=4), None, (), None)),
        },
    )
    assert said(offline) == "spk-01 mất kết nối: không phản hồi đã 4 phút"
    assert said(offline, "en") == "spk-01 is offline: silent for 4 minutes"
    closed = LocalWindow(time(21, 0), time(6, 0), frozenset(), LOCAL).closed_reason()
    assert said(closed) == "hết khung giờ theo dõi 21:00-06:00"


def test_firmware_reasons_and_what_a_person_wrote() -> None:
    assert said("support ended 2026-06-30") == "hết hỗ trợ từ 30/06/2026"
    assert said("3 versions and 120 days behind 2.4.1") == "chậm 3 phiên bản, 120 ngày so với 2.4.1"
    # A message written in a rule, in any language, is shown as it was written.
    mine = "Mực nước sông Cái vượt mức báo động 2"
    assert said(mine) == said(mine, "en") == mine
    assert said(None) == ""
