"""What counts as displayable text: real scripts and emoji pass, invisible and
direction-changing characters do not."""

from __future__ import annotations

import re

import pytest

from livecast.display_text import DisplayTextError, check_line, check_multiline

_TEXT = [
    "Winter boot, size 42",
    "Café crème — 20 % off",
    "مرحبا بالعالم",  # right-to-left script, no override needed
    "日本語のタイトル",
    "no\u00a0break",  # NBSP: a space, not a control
    "\U0001f469\u200d\U0001f4bb and \u0915\u094d\u200d\u0937",  # ZWJ sequences
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # tag flag
]

_REFUSED = {
    "\x00": "U+0000",
    "\x07": "U+0007",
    "\x1b": "U+001B",
    "\x7f": "U+007F",
    "\x85": "U+0085",
    "\x9b": "U+009B",
    "\u061c": "ARABIC LETTER MARK",
    "\u200b": "ZERO WIDTH SPACE",
    "\u200e": "LEFT-TO-RIGHT MARK",
    "\u200f": "RIGHT-TO-LEFT MARK",
    "\u202a": "LEFT-TO-RIGHT EMBEDDING",
    "\u202b": "RIGHT-TO-LEFT EMBEDDING",
    "\u202c": "POP DIRECTIONAL FORMATTING",
    "\u202d": "LEFT-TO-RIGHT OVERRIDE",
    "\u202e": "RIGHT-TO-LEFT OVERRIDE",
    "\u2028": "LINE SEPARATOR",
    "\u2029": "PARAGRAPH SEPARATOR",
    "\u2060": "WORD JOINER",
    "\u2066": "LEFT-TO-RIGHT ISOLATE",
    "\u2067": "RIGHT-TO-LEFT ISOLATE",
    "\u2068": "FIRST STRONG ISOLATE",
    "\u2069": "POP DIRECTIONAL ISOLATE",
    "\ufeff": "ZERO WIDTH NO-BREAK SPACE",
    "\ud800": "U+D800 (a lone surrogate)",
}


@pytest.mark.parametrize("text", _TEXT)
def test_real_text_passes_unchanged(text: str) -> None:
    assert check_line("title", text) == text
    assert check_multiline("description", text) == text


@pytest.mark.parametrize(("ch", "named"), list(_REFUSED.items()))
def test_controls_and_bidi_formatting_are_refused_by_name(ch: str, named: str) -> None:
    for check in (check_line, check_multiline):
        with pytest.raises(DisplayTextError, match=f"^title may not contain .*{re.escape(named)}"):
            check("title", f"abc{ch}def")


def test_line_breaks_and_tabs_only_in_multiline_text() -> None:
    text = "one\ntwo\r\nthree\rfour\tfive"
    assert check_multiline("description", text) == text
    for ch, named in (("\n", "LINE FEED"), ("\r", "CARRIAGE RETURN"), ("\t", "TAB")):
        with pytest.raises(DisplayTextError, match=f"name may not contain U\\+000[9AD] \\({named}"):
            check_line("name", f"a{ch}b")
    assert isinstance(DisplayTextError("x"), ValueError)
