"""The console's colours meet WCAG AA in light and dark mode, read from its stylesheet.

axe-core (tests/web/test_browser.py) checks the text it finds on the pages shown; this checks
every colour pair the stylesheet defines, in both schemes, circles and chart bars included
(WCAG 1.4.11: 3:1 for graphics), whether or not a page happens to show it.
"""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from incsync.views import PALETTE
from tests.status.test_views import _contrast

CSS = files("incsync.integrations.web").joinpath("static/console.css").read_text("utf-8")


def _variables(block: str) -> dict[str, str]:
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", block))


LIGHT = _variables(CSS[CSS.index(":root {") : CSS.index("@media (prefers-color-scheme: dark)")])
DARK = {
    **LIGHT,
    **_variables(CSS[CSS.index("@media (prefers-color-scheme: dark)") :].split("}")[0]),
}
TEXT = [
    ("text", "bg"),
    ("muted", "bg"),
    ("link", "bg"),
    ("text", "bg-raised"),
    ("muted", "bg-raised"),
    ("text", "button-bg"),
    ("red-text", "bg"),
    ("red-text", "red-bg"),
    ("link", "red-bg"),
    ("muted", "red-bg"),
    ("primary-text", "primary-bg"),
]
GRAPHICS = [
    ("bar-completed", "bg"),
    ("bar-failed", "bg"),
    ("bar-interrupted", "bg"),
    ("focus", "bg"),
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_and_graphics_contrast(scheme: str) -> None:
    colors = LIGHT if scheme == "light" else DARK
    for foreground, background in TEXT:
        ratio = _contrast(colors[foreground], colors[background])
        assert ratio >= 4.5, (scheme, foreground, background, round(ratio, 2))
    for foreground, background in GRAPHICS:
        ratio = _contrast(colors[foreground], colors[background])
        assert ratio >= 3, (scheme, foreground, background, round(ratio, 2))
    for color, hex_color in PALETTE.items():
        for background in ("bg", "bg-raised", "red-bg"):
            ratio = _contrast(hex_color, colors[background])
            assert ratio >= 3, (scheme, color, background, round(ratio, 2))


def test_the_dark_scheme_changes_the_background() -> None:
    assert LIGHT["bg"] == "#ffffff"
    assert DARK["bg"] != LIGHT["bg"]
