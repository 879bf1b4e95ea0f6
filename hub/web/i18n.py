"""The console's languages: Vietnamese first, English on request.

Source strings in templates and handlers are English (`_("Devices")`); the Vietnamese
translations live in gettext catalogs, one `.po` file per page family under
`hub/web/locale/vi/LC_MESSAGES/`, merged at start. A person picks the language with the
switch in the header (a cookie); without one the console speaks Vietnamese.

Dates and times are shown in the IOC's local time (Asia/Ho_Chi_Minh) with the language's own
formats: dd/MM/yyyy and 24 h for Vietnamese.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from functools import cache
from gettext import NullTranslations
from importlib import resources
from typing import Any, Final
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_timedelta
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from hub.web import reasons

LANGUAGES: Final = ("vi", "en")
DEFAULT_LANGUAGE: Final = "vi"
LANGUAGE_COOKIE: Final = "iochub_lang"
LOCAL_TIME: Final = ZoneInfo("Asia/Ho_Chi_Minh")

# Formats a person in the IOC reads: day first, 24-hour clock, in both languages.
DATETIME_FORMAT: Final = "dd/MM/yyyy HH:mm"
DATETIME_SECONDS_FORMAT: Final = "dd/MM/yyyy HH:mm:ss"
DATE_FORMAT: Final = "dd/MM/yyyy"
TIME_FORMAT: Final = "HH:mm"


def catalog_files(language: str) -> list[Any]:
    folder = resources.files("hub.web").joinpath("locale", language, "LC_MESSAGES")
    if not folder.is_dir():
        return []
    return sorted(
        (f for f in folder.iterdir() if f.name.endswith(".po")), key=lambda f: str(f.name)
    )


def read_catalog(language: str) -> Catalog:
    """Every `.po` file of a language as one catalog (a message translated twice is an error)."""
    merged = Catalog(locale=language, domain="messages")
    for po in catalog_files(language):
        with po.open("rb") as handle:
            part = read_po(handle, locale=language)
        for message in part:
            if not message.id:
                continue
            earlier = merged.get(message.id)
            if earlier is not None and earlier.string != message.string:
                raise ValueError(f"{po.name}: {message.id!r} is translated differently elsewhere")
            merged.add(message.id, message.string)
    return merged


@cache
def translations(language: str) -> NullTranslations:
    if language not in LANGUAGES or language == "en":
        return NullTranslations()
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(language))
    buffer.seek(0)
    return Translations(buffer, domain="messages")


def language_of(request: Any) -> str:
    """The language a request asks for: the header switch's cookie, else Vietnamese."""
    chosen = request.cookies.get(LANGUAGE_COOKIE) if request is not None else None
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def gettext_for(request: Any, message: str) -> str:
    """Translate outside a template (flash messages, redirect reasons)."""
    return translations(language_of(request)).gettext(message)


def _language(context: Context) -> str:
    return language_of(context.get("request"))


@pass_context
def _gettext(context: Context, message: str) -> str:
    return translations(_language(context)).gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return translations(_language(context)).ngettext(singular, plural, n)


def local(moment: datetime) -> datetime:
    return moment.astimezone(LOCAL_TIME)


@pass_context
def _datetime(context: Context, moment: datetime | None, seconds: bool = False) -> str:
    if moment is None:
        return "—"
    pattern = DATETIME_SECONDS_FORMAT if seconds else DATETIME_FORMAT
    return format_datetime(moment, pattern, tzinfo=LOCAL_TIME, locale=_language(context))


@pass_context
def _date(context: Context, day: date | datetime | None) -> str:
    if day is None:
        return "—"
    if isinstance(day, datetime):
        day = local(day).date()
    return format_date(day, DATE_FORMAT, locale=_language(context))


@pass_context
def _time(context: Context, moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return format_datetime(moment, TIME_FORMAT, tzinfo=LOCAL_TIME, locale=_language(context))


@pass_context
def _duration(context: Context, span: timedelta | float | None) -> str:
    """ "3 giờ" / "3 hours": how long, in words, rounded as a person would say it."""
    if span is None:
        return "—"
    if not isinstance(span, timedelta):
        span = timedelta(seconds=span)
    return format_timedelta(span, threshold=1.1, locale=_language(context))


@pass_context
def _since(context: Context, moment: datetime | None) -> str:
    """How long ago, from the page's clock (`now` in the context) or the wall clock."""
    if moment is None:
        return "—"
    now = context.get("now") or datetime.now(tz=LOCAL_TIME)
    return _duration(context, now - moment)


@pass_context
def _said(context: Context, message: str | None) -> str:
    """A sentence the hub stored in English (a health reason, an alert message), in the
    page's language (hub.web.reasons)."""
    language = _language(context)

    def local_time(moment: datetime | date) -> str:
        if isinstance(moment, datetime):
            return format_datetime(moment, DATETIME_FORMAT, tzinfo=LOCAL_TIME, locale=language)
        return format_date(moment, DATE_FORMAT, locale=language)

    return reasons.said(message, translations(language).gettext, language, local_time)


def install(environment: Environment) -> None:
    """Give the console's Jinja environment `_()`, `ngettext()` and the local-time filters."""
    environment.add_extension("jinja2.ext.i18n")
    environment.install_gettext_callables(  # type: ignore[attr-defined]  # added by jinja2.ext.i18n
        gettext=_gettext, ngettext=_ngettext, newstyle=True
    )
    environment.globals["languages"] = LANGUAGES
    environment.globals["language_of"] = language_of
    environment.filters["datetime"] = _datetime
    environment.filters["date"] = _date
    environment.filters["time"] = _time
    environment.filters["duration"] = _duration
    environment.filters["since"] = _since
    environment.filters["said"] = _said
