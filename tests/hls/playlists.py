"""Reading a media playlist the way an LL-HLS player does, for the HLS tests."""

from __future__ import annotations

import re

HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(part-\w+-\d+\.m4s)"')


def segments(text: str) -> list[tuple[int, list[str], bool]]:
    """Each listed segment: its media sequence number, its listed part lines, complete."""
    lines = text.splitlines()
    msn = int(next(line for line in lines if line.startswith("#EXT-X-MEDIA-SEQUENCE:"))[22:]) - 1
    listed: list[tuple[int, list[str], bool]] = []
    for line in lines:
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):  # one per segment, first of its tags
            msn += 1
            listed.append((msn, [], False))
        elif line.startswith("#EXT-X-PART:"):
            listed[-1][1].append(line)
        elif line.startswith("seg-"):
            listed[-1] = (listed[-1][0], listed[-1][1], True)
    return listed


def last_part(text: str) -> tuple[int, int]:
    """(msn, index) of the newest listed part."""
    msn, parts, _ = next(s for s in reversed(segments(text)) if s[1])
    return msn, len(parts) - 1


def next_part(text: str) -> tuple[int, int]:
    """(msn, index) to ask for with ``_HLS_msn``/``_HLS_part``: the part after the newest."""
    msn, parts, complete = segments(text)[-1]
    return (msn + 1, 0) if complete else (msn, len(parts))


def hint(text: str) -> str:
    match = HINT.search(text)
    assert match is not None, text
    return match[1]
