"""The console's one translation layer: gettext catalogs read with Babel, and times in words.

Every word the console shows goes through a :class:`Texts`: its ``gettext`` and ``ngettext`` for
sentences (the catalogs are ``locale/<language>/LC_MESSAGES/incsync.po`` beside this module,
English being the messages themselves), :meth:`Texts.relative` for "12 days ago" / "vor 12
Tagen" and :meth:`Texts.exact` for the exact time in the viewer's zone. Relative times round as
:func:`incsync.humanize.relative_span` decides, in every language; Babel only words them.
"""

from __future__ import annotations

import gettext
import math
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from importlib.resources import files
from io import BytesIO
from typing import Literal

import attrs
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

from incsync.humanize import RelativeSpan, iso_time, relative_span

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "Texts", "catalog_path", "negotiate_language"]

LANGUAGES = ("en", "de")
"""The languages the console ships; English is the messages themselves."""

DEFAULT_LANGUAGE = "en"

# Babel words a span from its length in seconds; a whole number of its own units words exactly
# that number (a month is 30 days and a year 365 to Babel).
_Unit = Literal["minute", "hour", "day", "month", "year"]
_UNITS: dict[str, tuple[_Unit, int]] = {
    "minute": ("minute", 60),
    "hour": ("hour", 3_600),
    "day": ("day", 86_400),
    "month": ("month", 30 * 86_400),
    "year": ("year", 365 * 86_400),
}
_EXACT_PATTERN = "yyyy-MM-dd HH:mm:ss zzz"


def catalog_path(language: str) -> str:
    """Return the path of a language's catalog inside the package (for tools and tests)."""
    return f"locale/{language}/LC_MESSAGES/incsync.po"


@lru_cache(maxsize=len(LANGUAGES))
def _translations(language: str) -> gettext.NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    source = files(__package__).joinpath(catalog_path(language))
    with source.open("rb") as po:
        catalog = read_po(po, locale=language)
    # Compiled in memory on first use: the package ships the readable catalog only.
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def negotiate_language(accept_language: str | None, offered: Sequence[str] = LANGUAGES) -> str:
    """Return the best offered language for an ``Accept-Language`` header (English by default).

    Args:
        accept_language: The header's value, e.g. ``"de-DE,de;q=0.9,en;q=0.8"``.
        offered: The languages to choose from.
    """
    choices: list[tuple[float, int, str]] = []
    for place, part in enumerate((accept_language or "").split(",")):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        primary = tag.strip().split("-")[0].lower()
        if primary in offered and quality > 0:
            choices.append((-quality, place, primary))
    return min(choices)[2] if choices else DEFAULT_LANGUAGE


@attrs.frozen
class Texts:
    """Words for one viewer: their language, their zone and the present.

    Args:
        language: One of :data:`LANGUAGES`.
        zone: The viewer's zone, in which exact times are written.
        now: The present, from which relative times are counted.
    """

    language: str
    zone: tzinfo
    now: datetime

    @property
    def _catalog(self) -> gettext.NullTranslations:
        return _translations(self.language)

    def gettext(self, message: str) -> str:
        """Return ``message`` in the viewer's language."""
        return self._catalog.gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        """Return the form for ``count`` in the viewer's language (``%(num)s`` is the count)."""
        return self._catalog.ngettext(singular, plural, count) % {"num": self.number(count)}

    def number(self, count: int) -> str:
        """Return a count with the language's grouping: ``12,345`` or ``12.345``."""
        return format_decimal(count, locale=self.language)

    def relative(self, when: datetime) -> str:
        """Return "12 days ago", "vor 12 Tagen", "just now" and so on."""
        span = relative_span(when, self.now, zone=self.zone)
        if span is None:
            return self.gettext("just now")
        return self._worded(span)

    def _worded(self, span: RelativeSpan) -> str:
        unit, unit_seconds = _UNITS[span.unit]
        seconds = span.count * unit_seconds
        # An infinite threshold makes Babel word the span in the unit given, never a larger one.
        return format_timedelta(
            timedelta(seconds=seconds if span.future else -seconds),
            granularity=unit,
            threshold=math.inf,
            add_direction=True,
            locale=self.language,
        )

    def exact(self, when: datetime) -> str:
        """Return the exact time in the viewer's zone: ``2026-11-13 10:41:07 MEZ``."""
        return format_datetime(when, _EXACT_PATTERN, tzinfo=self.zone, locale=self.language)

    def iso(self, when: datetime) -> str:
        """Return the instant for ``<time datetime>``."""
        return iso_time(when)
