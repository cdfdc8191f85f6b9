"""Views of many sources' statuses: a terminal table and accessible HTML.

Every view takes ``(name, status)`` pairs, the name being whatever the host shows for a source
(:func:`incsync.status.statuses_of` gives the store's keys). The views only lay out what
:func:`incsync.status.classify_status` decided; they make no decisions of their own.

The HTML meets the needs the status screen was specified with:

- The circle carries its hover text as both ``title`` (mouse) and ``aria-label`` (screen
  readers), takes keyboard focus, and shows a distinct white shape on its colour, next to a
  visible label: colour is never the only signal.
- Both times are ``<time datetime="…" title="exact time">relative text</time>``.
- Colours meet WCAG 1.4.11 (at least 3:1 for graphical objects) against the page's white
  background, and the white shapes meet it against each colour; hosts embedding the fragment on
  another background must re-check (the CSS classes make the colours easy to override).
- Everything sources or hosts supply is escaped; the page has inline CSS and inline SVG only, and a
  Content-Security-Policy that forbids every network fetch.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from html import escape
from types import MappingProxyType

from incsync.humanize import TimeText
from incsync.status import REASONS, SourceStatus, StatusColor, StatusIcon, StatusReason

__all__ = [
    "ASCII_SYMBOLS",
    "PAGE_BACKGROUND",
    "PALETTE",
    "STYLESHEET",
    "SYMBOLS",
    "icon_svg",
    "render_html_fragment",
    "render_html_page",
    "render_text_table",
    "terminal_safe",
]

PALETTE: Mapping[StatusColor, str] = MappingProxyType(
    {
        # Each has at least 4.5:1 against white, so the circle (3:1 needed) and the white shape
        # inside it (3:1 needed) both pass with room to spare.
        StatusColor.GREY: "#646c75",
        StatusColor.GREEN: "#1a7f37",
        StatusColor.ORANGE: "#b35900",
        StatusColor.RED: "#cf222e",
    }
)
"""The circle colours, as CSS hex."""

PAGE_BACKGROUND = "#ffffff"
"""The background the palette was checked against."""

_TEXT = "#1f2328"
_MUTED_TEXT = "#59636e"
_FOCUS = "#0969da"

SYMBOLS: Mapping[StatusIcon, str] = MappingProxyType(
    {
        StatusIcon.PAUSE: "‖",
        StatusIcon.CROSS: "✗",
        StatusIcon.REFRESH: "↻",
        StatusIcon.HOURGLASS: "⧗",
        StatusIcon.CLOCK: "◷",
        StatusIcon.REDO: "↷",
        StatusIcon.CHECK: "✓",
        StatusIcon.MINUS: "\N{MINUS SIGN}",
    }
)
"""One character per icon, for terminals."""

ASCII_SYMBOLS: Mapping[StatusIcon, str] = MappingProxyType(
    {
        StatusIcon.PAUSE: "=",
        StatusIcon.CROSS: "x",
        StatusIcon.REFRESH: "~",
        StatusIcon.HOURGLASS: ".",
        StatusIcon.CLOCK: "!",
        StatusIcon.REDO: ">",
        StatusIcon.CHECK: "+",
        StatusIcon.MINUS: "-",
    }
)
"""One ASCII character per icon, for terminals that cannot show :data:`SYMBOLS`."""

# SVG paths on a 16x16 grid, stroked in the circle's text colour (white).
_ICON_PATHS: Mapping[StatusIcon, str] = MappingProxyType(
    {
        StatusIcon.PAUSE: "M6 4.5v7M10 4.5v7",
        StatusIcon.CROSS: "M5 5l6 6M11 5l-6 6",
        StatusIcon.REFRESH: "M11.2 4.8A4.5 4.5 0 1 0 12.5 8M11.2 2.3v2.5H8.7",
        StatusIcon.HOURGLASS: "M5 3.5h6L5 12.5h6z",
        StatusIcon.CLOCK: "M13 8A5 5 0 1 1 3 8A5 5 0 1 1 13 8M8 5.5V8l2 1.5",
        StatusIcon.REDO: "M3 11.5A5 5 0 0 1 12.5 9.5M9.5 8.5l3 1.5 1.5-3",
        StatusIcon.CHECK: "M4 8.5l2.5 2.5L12 5.5",
        StatusIcon.MINUS: "M4 8h8",
    }
)

_ANSI: Mapping[StatusColor, str] = MappingProxyType(
    {
        StatusColor.GREY: "\x1b[90m",
        StatusColor.GREEN: "\x1b[32m",
        StatusColor.ORANGE: "\x1b[33m",
        StatusColor.RED: "\x1b[31m",
    }
)
_ANSI_RESET = "\x1b[0m"

_DOT_RULES = "\n".join(
    f".incsync-dot-{color.value}{{background-color:{hex_color}}}"
    for color, hex_color in PALETTE.items()
)

STYLESHEET = f"""\
.incsync-page{{margin:0;padding:1.5rem;background-color:{PAGE_BACKGROUND};color:{_TEXT};\
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}}
.incsync-status{{border-collapse:collapse;width:100%}}
.incsync-status th,.incsync-status td{{padding:.5rem .75rem;text-align:left;\
vertical-align:middle;border-bottom:1px solid #d0d7de}}
.incsync-status thead th{{font-weight:600;border-bottom:2px solid #8c959f}}
.incsync-dot{{display:inline-flex;align-items:center;justify-content:center;width:1.5rem;\
height:1.5rem;border-radius:50%;color:#ffffff;vertical-align:middle}}
.incsync-dot svg{{width:1rem;height:1rem}}
.incsync-dot:focus-visible{{outline:3px solid {_FOCUS};outline-offset:2px}}
{_DOT_RULES}
.incsync-label{{margin-left:.5rem}}
.incsync-never{{color:{_MUTED_TEXT}}}
.incsync-status time{{text-decoration:underline dotted;cursor:help}}
.incsync-legend{{list-style:none;padding:0}}
.incsync-legend li{{display:flex;align-items:center;margin:.25rem 0}}
.incsync-legend .incsync-dot{{flex:none}}
@media (forced-colors:active){{.incsync-dot{{forced-color-adjust:none}}}}
"""
"""The CSS the HTML views need; a host embedding the fragment includes it once per page."""

_MEANINGS: Mapping[StatusReason, str] = MappingProxyType(
    {
        StatusReason.STARTING: "synchronization is starting; no cycle has completed yet.",
        StatusReason.RESETTING: "synchronization was reset and re-reads everything.",
        StatusReason.CANCELLED: "synchronization was cancelled; no transactions were deleted.",
        StatusReason.RECENT_CHANGES: "synchronization ran recently, and recent changes were "
        "detected at the source.",
        StatusReason.NO_RECENT_CHANGES: "synchronization ran recently, but no recent changes "
        "were detected at the source.",
        StatusReason.STOPPED: "synchronization has stopped due to repeated errors connecting to "
        "the source.",
        StatusReason.RETRYING: "synchronization was attempted recently, but no cycle has "
        "completed for hours, so no recent changes were detected; the attempts continue.",
        StatusReason.SYNC_OVERDUE: "synchronization has not even been attempted for hours; "
        "cycles may not be running.",
    }
)

# Controls (C0, DEL, C1), format characters (bidi overrides, zero-width marks), line and
# paragraph separators, and lone surrogates: each could move the cursor, retitle the window,
# reorder a line or fail to encode, rather than show as itself.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _visible_escape(character: str) -> str:
    if unicodedata.category(character) not in _UNSAFE_CATEGORIES:
        return character
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def terminal_safe(text: str) -> str:
    r"""Return ``text`` with every character that could drive a terminal shown as an escape.

    Names, record ids, reasons and error messages come from hosts and sources; printed raw, an
    ``ESC [2J`` in a vendor's error body would clear the screen, an OSC sequence retitle the
    window, and a bidi override make a line read differently from what it holds. Each such
    character becomes the escape Python would write for it (``\x1b``, ``\u202e``), so it stays
    visible and harmless; line breaks are escaped too, so one value is one line. Everything else,
    including non-Latin text, is kept as it is. JSON and HTML output escape on their own.

    Args:
        text: Text from outside the program.

    Returns:
        The text, safe to write to a terminal.
    """
    if text.isprintable():  # the common case, answered in C
        return text
    return "".join(_visible_escape(character) for character in text)


def _text_time(value: TimeText | None, exact: bool) -> str:
    if value is None:
        return "never"
    return value.exact if exact else value.relative


def render_text_table(
    rows: Iterable[tuple[str, SourceStatus]],
    *,
    exact: bool = False,
    ascii_only: bool = False,
    ansi: bool = False,
) -> str:
    """Return a plain-text table of sources: colour, symbol and label, both times, and reason.

    Args:
        rows: ``(name, status)`` pairs, in the order to show.
        exact: Show exact times instead of relative ones.
        ascii_only: Use :data:`ASCII_SYMBOLS` (for terminals without Unicode).
        ansi: Colour the symbol and colour name with ANSI escapes (for a terminal, not a file).

    Returns:
        The table, one line per source under a header, ending in a newline.
    """
    symbols = ASCII_SYMBOLS if ascii_only else SYMBOLS
    header = ("SOURCE", "STATUS", "LAST CHANGE", "LAST SYNC", "REASON")
    table: list[tuple[str, ...]] = [header]
    colors: list[StatusColor | None] = [None]
    for name, status in rows:
        reason = status.reason.value
        if status.notes:
            reason += " (" + ", ".join(note.value for note in status.notes) + ")"
        table.append(
            (
                terminal_safe(name),
                f"{symbols[status.icon]} {status.color.value:<6} {status.label}",
                _text_time(status.last_change, exact),
                _text_time(status.last_sync, exact),
                reason,
            )
        )
        colors.append(status.color)
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = []
    for row, color in zip(table, colors, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        if ansi and color is not None:
            # Colour only "symbol colour-name", after padding was measured on the plain text.
            end = 2 + len(color.value)
            cells[1] = f"{_ANSI[color]}{cells[1][:end]}{_ANSI_RESET}{cells[1][end:]}"
        lines.append("  ".join(cells).rstrip())
    if len(table) == 1:
        lines.append("(no sources)")
    return "\n".join(lines) + "\n"


def icon_svg(icon: StatusIcon) -> str:
    """Return the icon's inline SVG, hidden from screen readers (the label says it in words)."""
    return (
        '<svg viewBox="0 0 16 16" aria-hidden="true" focusable="false" fill="none" '
        'stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">'
        f'<path d="{_ICON_PATHS[icon]}"/></svg>'
    )


def _dot(color: StatusColor, icon: StatusIcon, hover: str) -> str:
    text = escape(hover, quote=True)
    return (
        f'<span class="incsync-dot incsync-dot-{color.value}" role="img" tabindex="0" '
        f'title="{text}" aria-label="{text}">{icon_svg(icon)}</span>'
    )


def _html_time(value: TimeText | None) -> str:
    if value is None:
        return '<span class="incsync-never">Never</span>'
    return (
        f'<time datetime="{escape(value.iso, quote=True)}" '
        f'title="{escape(value.exact, quote=True)}">{escape(value.relative)}</time>'
    )


def render_html_fragment(rows: Iterable[tuple[str, SourceStatus]], *, caption: str = "") -> str:
    """Return an HTML ``<table>`` of sources, for a host page that includes :data:`STYLESHEET`.

    Args:
        rows: ``(name, status)`` pairs, in the order to show.
        caption: A caption for the table; none when empty.

    Returns:
        The table's HTML; every name, label and hover text in it is escaped.
    """
    parts = ['<table class="incsync-status">']
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts.append(
        '<thead><tr><th scope="col">Source</th><th scope="col">Status</th>'
        '<th scope="col">Last change</th><th scope="col">Last sync</th></tr></thead>'
    )
    parts.append("<tbody>")
    empty = True
    for name, status in rows:
        empty = False
        parts.append(
            f'<tr data-color="{status.color.value}" data-reason="{status.reason.value}">'
            f'<th scope="row">{escape(name)}</th>'
            f"<td>{_dot(status.color, status.icon, status.hover)}"
            f'<span class="incsync-label">{escape(status.label)}</span></td>'
            f"<td>{_html_time(status.last_change)}</td>"
            f"<td>{_html_time(status.last_sync)}</td></tr>"
        )
    if empty:
        parts.append('<tr><td colspan="4">No sources are connected.</td></tr>')
    parts.append("</tbody></table>")
    return "\n".join(parts)


def _legend() -> str:
    items = []
    for reason, meaning in _MEANINGS.items():
        color, icon, label = REASONS[reason]
        # The legend's circles only illustrate the text next to them: hidden from screen readers.
        items.append(
            f'<li><span class="incsync-dot incsync-dot-{color.value}" aria-hidden="true">'
            f'{icon_svg(icon)}</span><span class="incsync-label"><strong>{label}</strong> '
            f"({color.value}): {escape(meaning)}</span></li>"
        )
    return f'<h2>What the colours mean</h2>\n<ul class="incsync-legend">{"".join(items)}</ul>'


def render_html_page(
    rows: Iterable[tuple[str, SourceStatus]],
    *,
    title: str = "Automated Import",
    generated: TimeText | None = None,
) -> str:
    """Return a complete standalone HTML page of sources, needing nothing from the network.

    Args:
        rows: ``(name, status)`` pairs, in the order to show.
        title: The page's title and heading.
        generated: When the statuses were computed (their ``now``), shown under the heading.

    Returns:
        An HTML5 document with inline CSS and a Content-Security-Policy that forbids fetches.
    """
    heading = escape(title)
    stamp = ""
    if generated is not None:
        stamp = (
            f'<p>Status as of <time datetime="{escape(generated.iso, quote=True)}">'
            f"{escape(generated.exact)}</time>.</p>"
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{heading}</title>\n<style>\n{STYLESHEET}</style>\n</head>\n"
        f'<body class="incsync-page">\n<main>\n<h1>{heading}</h1>\n{stamp}\n'
        f"{render_html_fragment(rows)}\n{_legend()}\n</main>\n</body>\n</html>\n"
    )
