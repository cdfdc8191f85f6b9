"""The console's one translation layer: every message translated, times worded by one rule."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_python
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st
from jinja2.ext import babel_extract

from incsync.humanize import relative_time
from incsync.integrations.web._i18n import LANGUAGES, Texts, catalog_path, negotiate_language
from incsync.status import REASONS, StatusColor, StatusReason

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)
PACKAGE = Path(str(files("incsync.integrations.web")))
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}


def _extracted() -> set[str | tuple[str, str]]:
    """Every message the console's code and templates pass through the translation layer."""
    messages: set[str | tuple[str, str]] = set()
    found: list[object] = []
    for path in sorted(PACKAGE.glob("*.py")):
        with path.open("rb") as source:
            found += [
                message
                for _line, _call, message, _notes in extract_python(source, KEYWORDS, [], {})
            ]
    for path in sorted((PACKAGE / "templates").glob("*.html")):
        with path.open("rb") as source:
            found += [
                message
                for _line, _call, message, _notes in babel_extract(source, tuple(KEYWORDS), [], {})
            ]
    for message in found:
        # Calls with a variable (``_(name)``) come out as None: their messages are constants
        # marked elsewhere, or the classifier's labels (checked below).
        if isinstance(message, str):
            messages.add(message)
        elif isinstance(message, tuple) and all(isinstance(part, str) for part in message[:2]):
            messages.add((str(message[0]), str(message[1])))
    return messages


def _labels() -> set[str]:
    """The labels the classifier decides, alone and with ", retrying" (never on red or retrying)."""
    labels = {label for _color, _icon, label in REASONS.values()}
    return labels | {
        f"{label}, retrying"
        for reason, (color, _icon, label) in REASONS.items()
        if color is not StatusColor.RED
        and reason not in (StatusReason.RETRYING, StatusReason.CANCELLED)
    }


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{\w+\}|%\(\w+\)s", text))


@pytest.mark.parametrize("language", [language for language in LANGUAGES if language != "en"])
def test_every_message_is_translated(language: str) -> None:
    """Each message and label has a translation with the same placeholders, none fuzzy."""
    with (PACKAGE / catalog_path(language)).open("rb") as po:
        catalog = read_po(po, locale=language)
    messages = _extracted() | _labels()
    assert len(messages) > 100
    for message in messages:
        entry = catalog.get(message[0] if isinstance(message, tuple) else message)
        assert entry is not None, f"{message!r} has no {language} translation"
        assert not entry.fuzzy, message
        translations = (
            tuple(entry.string) if isinstance(entry.string, (tuple, list)) else (entry.string,)
        )
        originals = message if isinstance(message, tuple) else (message,)
        for translated in translations:
            assert translated, message
            assert _placeholders(translated) == _placeholders(originals[0]), message
    ids = {message[0] if isinstance(message, tuple) else message for message in messages}
    unused = {
        entry.id[0] if isinstance(entry.id, tuple) else entry.id for entry in catalog if entry.id
    } - ids
    assert not unused, f"translations of messages the console no longer has: {unused}"


@pytest.mark.parametrize(
    ("ago", "english", "german"),
    [
        (timedelta(seconds=30), "just now", "gerade eben"),
        (timedelta(minutes=1), "1 minute ago", "vor 1 Minute"),
        (timedelta(hours=5, minutes=59), "5 hours ago", "vor 5 Stunden"),
        (timedelta(days=12, hours=23), "12 days ago", "vor 12 Tagen"),
        (timedelta(days=40), "1 month ago", "vor 1 Monat"),
        (timedelta(days=800), "2 years ago", "vor 2 Jahren"),
        (timedelta(hours=-3), "in 3 hours", "in 3 Stunden"),
    ],
)
def test_relative_times(ago: timedelta, english: str, german: str) -> None:
    zone = ZoneInfo("Europe/Berlin")
    assert Texts("en", zone, NOW).relative(NOW - ago) == english
    assert Texts("de", zone, NOW).relative(NOW - ago) == german


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4000)))
def test_times_round_as_the_status_screen_does(ago: timedelta) -> None:
    """The console's English says what incsync.humanize says: both ask the same rule."""
    assert Texts("en", UTC, NOW).relative(NOW - ago) == relative_time(NOW - ago, NOW)


def test_exact_times_in_the_viewers_zone() -> None:
    assert Texts("de", ZoneInfo("Europe/Berlin"), NOW).exact(NOW) == "2026-11-13 10:41:07 MEZ"
    assert Texts("en", UTC, NOW).exact(NOW) == "2026-11-13 09:41:07 UTC"
    assert Texts("de", UTC, NOW).number(12_345) == "12.345"


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("fr-FR, en;q=0.5, de;q=0.7", "de"),
        ("en-GB", "en"),
        ("fr", "en"),
        ("de;q=0, en;q=0.1", "en"),
        ("de;q=abc", "en"),
        (None, "en"),
    ],
)
def test_negotiation(header: str | None, language: str) -> None:
    assert negotiate_language(header) == language
