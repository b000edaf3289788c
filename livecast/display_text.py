"""Checks for text that people read: titles, descriptions, display names.

Such text is shown on pages, in chat and in other sellers' panels, so it must not carry
characters that are invisible or that change how the text around them is drawn:

* control characters (C0, DEL, C1; NUL included). Multi-line text (descriptions) may
  hold tab, line feed and carriage return; one-line text (titles, names) none of them;
* bidirectional overrides, embeddings, isolates and marks (U+202A-U+202E, U+2066-U+2069,
  U+200E, U+200F, U+061C), which can make a name read as something else;
* every other format character (Unicode category Cf: zero-width space, byte order mark,
  word joiner...), line and paragraph separators, and lone surrogates. The zero-width
  joiner and non-joiner (emoji sequences, many scripts) and tag characters (subdivision
  flags) stay allowed.

:func:`check_line` and :func:`check_multiline` raise :class:`DisplayTextError` (a
``ValueError``) naming the field and the character; raised from a ``msgspec`` Struct's
``__post_init__`` it becomes the usual 422 ``invalid_field``.
"""

from __future__ import annotations

import unicodedata

__all__ = ["DisplayTextError", "check_line", "check_multiline"]

_MULTILINE_WHITESPACE = frozenset("\t\n\r")
# Format characters that real text needs: ZWNJ and ZWJ, and the tag characters of
# subdivision flag emoji.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d", *map(chr, range(0xE0020, 0xE0080))})
# Never printable and never allowed, whatever their category.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_UNNAMED = {"\0": "NUL", "\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\x1b": "ESCAPE"}


class DisplayTextError(ValueError):
    """The text holds a character it may not."""


def check_line(field: str, value: str) -> str:
    """``value`` if it is one line of displayable text, else :class:`DisplayTextError`."""
    return _check(field, value, frozenset())


def check_multiline(field: str, value: str) -> str:
    """``value`` if it is displayable text that may span lines (tab, LF, CR allowed)."""
    return _check(field, value, _MULTILINE_WHITESPACE)


def _check(field: str, value: str, allowed: frozenset[str]) -> str:
    if value.isprintable():  # the common case, in C: nothing below can be in it
        return value
    for ch in value:
        if ch in allowed or ch in _ALLOWED_FORMAT:
            continue
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            raise DisplayTextError(f"{field} may not contain {_describe(ch)}")
    return value


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "") or _UNNAMED.get(ch, "")
    if not name:
        name = "a lone surrogate" if unicodedata.category(ch) == "Cs" else "a control character"
    return f"U+{ord(ch):04X} ({name})"
