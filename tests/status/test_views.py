"""The text table and the HTML views: layout, escaping, accessibility and colour contrast."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from incsync.humanize import time_text
from incsync.state import ErrorInfo, Phase
from incsync.status import REASONS, SourceStatus, StatusColor, StatusIcon, classify_status
from incsync.views import (
    ASCII_SYMBOLS,
    PALETTE,
    STYLESHEET,
    SYMBOLS,
    render_html_fragment,
    render_html_page,
    render_text_table,
)

UTC = timezone.utc
NOW = datetime(2026, 11, 13, 9, 41, 7, tzinfo=UTC)


def _rows() -> list[tuple[str, SourceStatus]]:
    def status(**kw: object) -> SourceStatus:
        arguments: dict[str, object] = {
            "last_change": NOW - timedelta(days=2),
            "last_sync": NOW - timedelta(minutes=12),
            "now": NOW,
        }
        arguments.update(kw)
        return classify_status(**arguments)  # type: ignore[arg-type]

    return [
        ("Acme QuickBooks", status()),
        ("Globex Salesforce", status(last_change=NOW - timedelta(days=12))),
        ("Initech Xero", status(last_change=None, last_sync=None)),
        ("Umbrella HubSpot", status(phase=Phase.STOPPED, error_count=5)),
    ]


# --- text ---------------------------------------------------------------------------------------


def test_text_table_has_a_row_per_source_with_colour_symbol_label_times_and_reason() -> None:
    """Each source is one aligned line: symbol, colour, label, both times, reason."""
    lines = render_text_table(_rows()).splitlines()
    assert lines[0].split() == ["SOURCE", "STATUS", "LAST", "CHANGE", "LAST", "SYNC", "REASON"]
    assert lines[1].split(None, 2)[:2] == ["Acme", "QuickBooks"]
    assert "✓ green  Active" in lines[1]
    assert "2 days ago" in lines[1]
    assert "12 minutes ago" in lines[1]
    assert lines[1].endswith("recent_changes")
    assert "\N{MINUS SIGN} orange No recent changes" in lines[2]
    assert "⧗ grey   Starting" in lines[3]
    assert "never" in lines[3]
    assert "✗ red    Stopped" in lines[4]
    # Columns line up: every row's status column starts where the header's does.
    start = lines[0].index("STATUS")
    assert all(line[start - 2 : start] == "  " for line in lines[1:])


def test_text_table_can_show_exact_times_and_notes() -> None:
    """exact=True shows exact times; notes follow the reason in parentheses."""
    status = classify_status(last_change=NOW, last_sync=NOW, error_count=1, now=NOW, rejected=2)
    text = render_text_table([("s", status)], exact=True)
    assert "2026-11-13 09:41:07 UTC" in text
    assert "recent_changes (last_attempt_failed, records_set_aside)" in text
    assert "Active, retrying" in text


def test_text_table_shows_a_source_being_retried() -> None:
    """A source failing past the recent-sync window: its own symbol, orange, "Retrying"."""
    failure = ErrorInfo("TransientSourceError", "503", NOW - timedelta(minutes=3))
    status = classify_status(
        last_change=NOW - timedelta(days=2),
        last_sync=NOW - timedelta(hours=5),
        last_attempt=failure.at,
        error_count=4,
        last_error=failure,
        now=NOW,
    )
    text = render_text_table([("s", status)])
    assert "↷ orange Retrying" in text
    assert "retrying (last_attempt_failed)" in text
    assert "> orange Retrying" in render_text_table([("s", status)], ascii_only=True)


def test_text_table_ascii_and_ansi() -> None:
    """ascii_only uses ASCII symbols; ansi colours just the symbol and colour name."""
    text = render_text_table(_rows(), ascii_only=True, ansi=True)
    assert text.isascii()
    assert "\x1b[32m+ green\x1b[0m  Active" in text
    assert "\x1b[31mx red\x1b[0m    Stopped" in text
    assert "\x1b" not in render_text_table(_rows())


def test_text_table_neutralises_control_characters_in_names() -> None:
    """A name cannot smuggle terminal escapes or line breaks into the table."""
    status = _rows()[0][1]
    text = render_text_table([("evil\x1b[2J\nname", status)])
    assert "\x1b" not in text
    assert "evil\\x1b[2J\\x0aname" in text
    assert len(text.splitlines()) == 2


def test_text_table_without_sources_says_so() -> None:
    """An empty table has the header and a line saying there are no sources."""
    assert render_text_table([]).splitlines()[1] == "(no sources)"


def test_every_icon_has_a_distinct_symbol_in_both_sets() -> None:
    """Symbols tell the states apart without colour, in Unicode and in ASCII."""
    for symbols in (SYMBOLS, ASCII_SYMBOLS):
        assert set(symbols) == set(StatusIcon)
        assert len(set(symbols.values())) == len(StatusIcon)
    assert all(symbol.isascii() for symbol in ASCII_SYMBOLS.values())


# --- HTML ---------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    """Collect the start tags with their attributes; fails on unbalanced elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag != "meta":
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.open.pop() == tag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **wanted: str) -> list[dict[str, str | None]]:
        return [
            attributes
            for name, attributes in self.tags
            if name == tag and all(attributes.get(k) == v for k, v in wanted.items())
        ]


def _parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    assert parser.open == []
    return parser


def test_fragment_circle_has_title_aria_label_and_focus() -> None:
    """The circle carries the hover text as title and aria-label, and can take focus."""
    rows = _rows()
    parsed = _parse(render_html_fragment(rows))
    dots = [a for tag, a in parsed.tags if tag == "span" and a.get("role") == "img"]
    assert len(dots) == len(rows)
    for (_, status), dot in zip(rows, dots, strict=True):
        assert dot["title"] == status.hover
        assert dot["aria-label"] == status.hover
        assert dot["tabindex"] == "0"
        assert dot["class"] == f"incsync-dot incsync-dot-{status.color.value}"


def test_fragment_times_are_time_elements_with_iso_and_exact_title() -> None:
    """Both times are <time datetime=ISO title=exact>relative</time>; missing ones say Never."""
    rows = _rows()
    html = render_html_fragment(rows)
    parsed = _parse(html)
    change = rows[0][1].last_change
    assert change is not None
    assert parsed.find("time", datetime=change.iso, title=change.exact)
    assert f">{change.relative}</time>" in html
    assert html.count('<span class="incsync-never">Never</span>') == 2


def test_fragment_escapes_everything_from_sources_and_hosts() -> None:
    """Names and error messages are text, never markup, wherever they appear."""
    error = ErrorInfo("BadResponseError", '"><script>alert(1)</script>&', NOW)
    status = classify_status(
        last_change=NOW, last_sync=NOW, error_count=1, last_error=error, now=NOW
    )
    html = render_html_fragment([("<img src=x onerror=alert(2)>", status)], caption="<b>x</b>")
    assert "<script>" not in html
    assert "<img" not in html
    assert "<b>" not in html
    parsed = _parse(html)
    (dot,) = [a for tag, a in parsed.tags if a.get("role") == "img"]
    assert dot["title"] is not None
    assert '"><script>alert(1)</script>&' in dot["title"]
    assert "<img src=x onerror=alert(2)>" in "".join(parsed.text)


def test_fragment_without_sources_says_so() -> None:
    """An empty list gives a table with one row saying no sources are connected."""
    assert "No sources are connected." in render_html_fragment([])


def test_page_is_standalone_and_fetches_nothing() -> None:
    """The page has inline CSS, a CSP forbidding fetches, and no external reference."""
    page = render_html_page(_rows(), generated=time_text(NOW, NOW))
    assert page.startswith("<!DOCTYPE html>")
    parsed = _parse(page)
    (csp,) = parsed.find("meta", **{"http-equiv": "Content-Security-Policy"})
    assert csp["content"] is not None
    assert csp["content"].startswith("default-src 'none'")
    assert parsed.find("html", lang="en")
    assert not re.search(r"(?i)\b(src|href)\s*=|@import|url\(|https?://", page)
    assert "Status as of <time" in page
    assert "What the colours mean" in page


def test_the_legend_explains_every_reason_once() -> None:
    """Each reason's label appears once in the legend, retrying and overdue told apart."""
    page = render_html_page([])
    legend = page[page.index("What the colours mean") :]
    for _, _, label in REASONS.values():
        assert legend.count(f"<strong>{label}</strong>") == 1
    assert "<strong>Retrying</strong> (orange): synchronization was attempted recently" in legend
    assert "<strong>Overdue</strong> (red): synchronization has not even been attempted" in legend


def test_page_title_is_escaped() -> None:
    """The title is text."""
    page = render_html_page([], title="A & B <Import>")
    assert "<title>A &amp; B &lt;Import&gt;</title>" in page


# --- contrast (WCAG 1.4.11) ---------------------------------------------------------------------


def _luminance(hex_color: str) -> float:
    """Relative luminance as WCAG 2.x defines it."""
    channels = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _css_rule(selector: str) -> str:
    match = re.search(re.escape(selector) + r"\{([^}]*)\}", STYLESHEET)
    assert match, selector
    return match.group(1)


def _css_color(selector: str, prop: str) -> str:
    match = re.search(rf"(?:^|;){prop}:(#[0-9a-f]{{6}})", _css_rule(selector))
    assert match, (selector, prop)
    return match.group(1)


def test_contrast_helper_matches_known_values() -> None:
    """The ratio computation gives WCAG's known answers."""
    assert _contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert _contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


@pytest.mark.parametrize("color", list(StatusColor), ids=lambda c: c.value)
def test_circle_colours_meet_wcag_1_4_11_against_the_page_and_the_icon(color: StatusColor) -> None:
    """Each circle has >= 3:1 against the page background, and so does its white icon."""
    background = _css_color(".incsync-page", "background-color")
    circle = _css_color(f".incsync-dot-{color.value}", "background-color")
    icon = _css_color(".incsync-dot", "color")
    assert circle == PALETTE[color]
    assert _contrast(circle, background) >= 3.0
    assert _contrast(icon, circle) >= 3.0


def test_text_colours_meet_wcag_1_4_3() -> None:
    """Body text and the muted "Never" have >= 4.5:1 against the page."""
    background = _css_color(".incsync-page", "background-color")
    assert _contrast(_css_color(".incsync-page", "color"), background) >= 4.5
    assert _contrast(_css_color(".incsync-never", "color"), background) >= 4.5


def test_the_four_colours_are_distinct() -> None:
    """No two states share a circle colour."""
    assert len(set(PALETTE.values())) == len(StatusColor)
