"""Every string the console shows has its Vietnamese translation, and no catalog entry is stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from babel.messages.extract import extract_from_dir
from jinja2 import DictLoader, Environment

from hub.web import i18n

WEB = Path(i18n.__file__).parent

# Babel's method map: Jinja templates through Jinja's own extractor, handlers as Python.
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def source_messages() -> set[str]:
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(WEB), METHODS, options_map=OPTIONS, keywords={"_": None, "gettext": None}
    ):
        if isinstance(message, tuple):
            found.update(m for m in message if m)
        elif message:
            found.add(message)
    return found


def test_every_shown_string_has_a_vietnamese_translation() -> None:
    catalog = i18n.read_catalog("vi")
    missing = sorted(m for m in source_messages() if not (m in catalog and catalog[m].string))
    assert not missing, f"add these to a .po file in hub/web/locale/vi/LC_MESSAGES: {missing}"


def test_no_catalog_entry_is_left_over() -> None:
    used = source_messages()
    stale = sorted(str(m.id) for m in i18n.read_catalog("vi") if m.id and m.id not in used)
    assert not stale, f"these translations are not used by any page: {stale}"


class FakeRequest:
    def __init__(self, cookies: dict[str, str]) -> None:
        self.cookies = cookies


def render(source: str, request: FakeRequest, **context: object) -> str:
    environment = Environment(loader=DictLoader({"page": source}), autoescape=True)
    i18n.install(environment)
    return environment.get_template("page").render(request=request, **context)


def test_vietnamese_is_the_default_and_english_is_chosen_by_cookie() -> None:
    assert render("{{ _('Devices') }}", FakeRequest({})) == "Thiết bị"
    assert render("{{ _('Devices') }}", FakeRequest({"iochub_lang": "en"})) == "Devices"
    assert render("{{ _('Devices') }}", FakeRequest({"iochub_lang": "fr"})) == "Thiết bị"


def test_times_are_local_day_first_and_24_hour() -> None:
    moment = datetime(2026, 12, 7, 14, 5, 9, tzinfo=UTC)  # 21:05 in Hà Nội
    vi, en = FakeRequest({}), FakeRequest({"iochub_lang": "en"})
    assert render("{{ m|datetime }}", vi, m=moment) == "07/12/2026 21:05"
    assert render("{{ m|datetime(seconds=True) }}", en, m=moment) == "07/12/2026 21:05:09"
    assert render("{{ m|date }}", vi, m=moment) == "07/12/2026"
    assert render("{{ m|time }}", vi, m=moment) == "21:05"
    assert render("{{ None|datetime }}", vi) == "—"


def test_durations_read_as_words() -> None:
    now = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    assert (
        render("{{ m|since }}", FakeRequest({}), m=now - timedelta(hours=3), now=now) == "3 tiếng"
    )
    en = FakeRequest({"iochub_lang": "en"})
    assert render("{{ s|duration }}", en, s=timedelta(minutes=5)) == "5 minutes"
