"""Commerce events on the LL-HLS timeline: ``EXT-X-DATERANGE`` tags, and delta updates.

A stream's timeline (:mod:`livecast.timeline`) says what the host did and at which media
time: the program date time of the picture live then, the clock of the playlist's
``EXT-X-PROGRAM-DATE-TIME``. :class:`DateRanges` turns its entries into date ranges, and
:meth:`DateRanges.playlist` is the one call through which the packager's rendering passes:
it adds the tags and makes the delta updates of the same rendering (RFC 8216bis 4.4.5.1,
6.2.5.1).

Date ranges (``CLASS``, ``ID``, the ``X-`` attributes)::

    com.livecast.pin      pin-<entry id>     X-SKU X-TITLE X-PRICE-MINOR X-CURRENCY [X-DEAL-ID]
    com.livecast.deal     deal-<deal id>     X-SKU X-TITLE X-PRICE-MINOR X-CURRENCY X-DEAL-ID
    com.livecast.auction  auction-<id>       X-SKU X-TITLE X-PRICE-MINOR X-CURRENCY X-AUCTION-ID
    com.livecast.poll     poll-<id>          X-TITLE (the question) X-POLL-ID
    com.livecast.giveaway giveaway-<id>      X-SKU X-TITLE X-GIVEAWAY-ID
    com.livecast.groupbuy groupbuy-<id>      X-SKU X-TITLE X-PRICE-MINOR X-CURRENCY X-GROUPBUY-ID
    com.livecast.knockdown knockdown-<id>    X-SKU X-TITLE X-PRICE-MINOR X-CURRENCY X-KNOCKDOWN-ID

``START-DATE`` is the media time of the pin, or of the start of the deal or selling
format; ``END-DATE`` is added once the range ends (the next pin or an unpin; the deal's
or the format's end: an auction's end or cancel, a poll's close or cancel, a giveaway's
draw or cancel, a group buy's close, a knock-down's end), with the same ``ID`` and the
same other attributes, as RFC 8216bis allows (so a group buy's or knock-down's price
is the one it started at). Stock, deal numbers, bids, votes, entries, members and
knock-down prices are live counters: the players get them from the live events, not
from the playlist. Entries without media time (no media then) have no range.

A range is listed while it is open or ends within the playlist's window (at or after
its first segment's program date time). ``X-TITLE`` is a quoted-string: a ``"`` in a
title becomes ``'`` and control characters are dropped.

Delta updates: ``EXT-X-SERVER-CONTROL`` gets ``CAN-SKIP-UNTIL`` (six target durations,
the least RFC 8216bis allows) and ``CAN-SKIP-DATERANGES=YES``. ``_HLS_skip=YES`` gets
the oldest complete segments that end at least ``CAN-SKIP-UNTIL`` before the end of the
playlist replaced with ``EXT-X-SKIP:SKIPPED-SEGMENTS=n``; ``_HLS_skip=v2`` also leaves out
the date ranges unchanged since before the first segment it lists, and names in
``RECENTLY-REMOVED-DATERANGES`` those that left the window within the skip boundary.
When no segment can be skipped, the full playlist is the answer.

Each rendering and its deltas are made together and never change: identical requests
get identical bytes. An event that comes after a rendering appears in the next one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from livecast.redisdb import UNAVAILABLE_ERRORS
from livecast.timeline import MomentKind, Timeline, TimelineEntry

__all__ = ["DateRange", "DateRanges", "Playlist", "follow_timelines"]

log = logging.getLogger(__name__)

_SERVER_CONTROL: Final = "#EXT-X-SERVER-CONTROL:"
_PDT: Final = "#EXT-X-PROGRAM-DATE-TIME:"
_MAP: Final = "#EXT-X-MAP:"
# the tags that belong to a segment (EXT-X-DISCONTINUITY alone: not -SEQUENCE, a header's)
_SEGMENT_TAGS: Final = ("#EXT-X-DISCONTINUITY\n", _MAP, _PDT, "#EXT-X-PART:", "#EXTINF:")
_TRAILER_TAGS: Final = ("#EXT-X-PRELOAD-HINT:", "#EXT-X-RENDITION-REPORT:", "#EXT-X-ENDLIST")
# ranges kept past the window, for RECENTLY-REMOVED-DATERANGES, in skip boundaries
_KEEP_BOUNDARIES: Final = 2
# a packager that starts reads the timeline from this long ago (a pin still up, say)
_LOOK_BACK_MS: Final = 600_000
_READ: Final = 1000


@dataclass(frozen=True, slots=True)
class Playlist:
    """One rendering of the media playlist, served as is; with its delta updates
    (``_HLS_skip=YES`` and ``v2``) where some segments can be skipped."""

    body: bytes
    etag: str
    skip: Playlist | None = None
    skip_v2: Playlist | None = None

    @classmethod
    def of(cls, text: str) -> Playlist:
        body = text.encode()
        return cls(body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"')

    def for_skip(self, skip: str | None) -> Playlist:
        """The answer to ``_HLS_skip`` (None, ``YES`` or ``v2``)."""
        if skip == "v2" and self.skip_v2 is not None:
            return self.skip_v2
        if skip is not None and self.skip is not None:
            return self.skip
        return self


@dataclass(slots=True)
class DateRange:
    id: str
    cls: str
    start_ms: int
    attributes: str  # the X- attributes, rendered
    end_ms: int | None = None

    def tag(self) -> str:
        end = "" if self.end_ms is None else f',END-DATE="{_date(self.end_ms)}"'
        return (
            f'#EXT-X-DATERANGE:ID="{self.id}",CLASS="{self.cls}",'
            f'START-DATE="{_date(self.start_ms)}"{end}{self.attributes}'
        )

    def changed_ms(self) -> int:
        """When the tag last changed (on the media timeline)."""
        return self.start_ms if self.end_ms is None else max(self.start_ms, self.end_ms)


@dataclass(frozen=True, slots=True)
class _Format:
    """A selling format's date range: its class, and the timeline kinds that open and
    close it."""

    cls: str
    prefix: str
    starts: MomentKind
    ends: frozenset[MomentKind]


_FORMATS: Final = (
    _Format(
        "com.livecast.auction",
        "auction",
        MomentKind.AUCTION_STARTED,
        frozenset({MomentKind.AUCTION_ENDED, MomentKind.AUCTION_CANCELLED}),
    ),
    _Format(
        "com.livecast.poll",
        "poll",
        MomentKind.POLL_STARTED,
        frozenset({MomentKind.POLL_CLOSED, MomentKind.POLL_CANCELLED}),
    ),
    _Format(
        "com.livecast.giveaway",
        "giveaway",
        MomentKind.GIVEAWAY_STARTED,
        frozenset({MomentKind.GIVEAWAY_DRAWN, MomentKind.GIVEAWAY_CANCELLED}),
    ),
    _Format(
        "com.livecast.groupbuy",
        "groupbuy",
        MomentKind.GROUPBUY_STARTED,
        frozenset({MomentKind.GROUPBUY_ENDED}),
    ),
    _Format(
        "com.livecast.knockdown",
        "knockdown",
        MomentKind.KNOCKDOWN_STARTED,
        frozenset({MomentKind.KNOCKDOWN_ENDED}),
    ),
)
_STARTS: Final = {f.starts: f for f in _FORMATS}
_ENDS: Final = {kind: f for f in _FORMATS for kind in f.ends}


def _format_id(entry: TimelineEntry, prefix: str) -> str | None:
    ids = {
        "auction": entry.auction_id,
        "poll": entry.poll_id,
        "giveaway": entry.giveaway_id,
        "groupbuy": entry.groupbuy_id,
        "knockdown": entry.knockdown_id,
    }
    found = ids[prefix]
    return None if found is None else f"{prefix}-{found}"


@dataclass(slots=True)
class DateRanges:
    """One stream's date ranges, fed its timeline entries in order (:meth:`add`)."""

    ranges: dict[str, DateRange] = field(default_factory=dict)
    cursor: str | None = None  # the last timeline entry added
    _pin: str | None = None

    def add(self, entry: TimelineEntry) -> None:
        self.cursor = entry.id
        kind = entry.kind
        at = entry.media_time_ms
        if kind is MomentKind.PIN_SET or kind is MomentKind.PIN_CLEARED:
            if self._pin is not None:
                self._end(self._pin, at if at is not None else entry.at_ms)
                self._pin = None
            if kind is MomentKind.PIN_SET and at is not None:
                self._pin = f"pin-{entry.id}"
                self._start(self._pin, "com.livecast.pin", at, entry)
        elif kind is MomentKind.DEAL_STARTED and at is not None:
            self._start(f"deal-{entry.deal_id}", "com.livecast.deal", at, entry)
        elif kind is MomentKind.DEAL_ENDED:
            self._end(f"deal-{entry.deal_id}", at if at is not None else entry.at_ms)
        elif kind in _STARTS:
            started = _STARTS[kind]
            range_id = _format_id(entry, started.prefix)
            if at is not None and range_id is not None:
                self._start(range_id, started.cls, at, entry)
        elif kind in _ENDS:
            range_id = _format_id(entry, _ENDS[kind].prefix)
            if range_id is not None:
                self._end(range_id, at if at is not None else entry.at_ms)

    def _start(self, range_id: str, cls: str, at: int, entry: TimelineEntry) -> None:
        attributes = []
        if entry.sku is not None:
            attributes.append(f'X-SKU="{_quoted(entry.sku)}"')
        if entry.title is not None:
            attributes.append(f'X-TITLE="{_quoted(entry.title)}"')
        if entry.price is not None:
            attributes.append(f"X-PRICE-MINOR={entry.price.amount_minor}")
            attributes.append(f'X-CURRENCY="{_quoted(entry.price.currency)}"')
        if entry.deal_id is not None:
            attributes.append(f'X-DEAL-ID="{_quoted(entry.deal_id)}"')
        for name, value in (
            ("X-AUCTION-ID", entry.auction_id),
            ("X-POLL-ID", entry.poll_id),
            ("X-GIVEAWAY-ID", entry.giveaway_id),
            ("X-GROUPBUY-ID", entry.groupbuy_id),
            ("X-KNOCKDOWN-ID", entry.knockdown_id),
        ):
            if value is not None:
                attributes.append(f'{name}="{_quoted(value)}"')
        rendered = "".join("," + a for a in attributes)
        self.ranges.setdefault(range_id, DateRange(range_id, cls, at, rendered))

    def _end(self, range_id: str, at: int) -> None:
        found = self.ranges.get(range_id)
        if found is not None and found.end_ms is None:
            found.end_ms = max(at, found.start_ms)

    def playlist(self, lines: list[str], target_duration: int) -> Playlist:
        """The rendering of ``lines`` (the packager's playlist, one tag or URI a line):
        the date ranges within its window added, and its delta updates."""
        skip_until = 6 * target_duration
        head, blocks, trailer = _split(lines)
        for i, line in enumerate(head):
            if line.startswith(_SERVER_CONTROL):
                head[i] = f"{line},CAN-SKIP-UNTIL={skip_until:.1f},CAN-SKIP-DATERANGES=YES"
        starts = [_block_pdt(block) for block in blocks]
        if not blocks or starts[0] is None:
            return Playlist.of(_text(head, [], [], trailer))
        window_ms = starts[0]
        kept_from = window_ms - _KEEP_BOUNDARIES * skip_until * 1000
        for range_id in [
            r.id for r in self.ranges.values() if r.end_ms is not None and r.end_ms < kept_from
        ]:
            del self.ranges[range_id]
        listed = [r for r in self.ranges.values() if r.end_ms is None or r.end_ms >= window_ms]
        listed.sort(key=lambda r: (r.start_ms, r.id))
        tags = [r.tag() for r in listed]
        full = Playlist.of(_text(head, blocks, tags, trailer))
        skipped = _skippable(blocks, skip_until)
        if skipped == 0:
            return full
        kept = blocks[skipped:]
        map_line = next(
            (
                line
                for block in reversed(blocks[:skipped])
                for line in block
                if line.startswith("#EXT-X-MAP:")
            ),
            None,
        )
        if map_line is not None and not any(line.startswith("#EXT-X-MAP:") for line in kept[0]):
            kept = [[map_line, *kept[0]], *kept[1:]]
        skip_line = f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}"
        delta = Playlist.of(_text([*head, skip_line], kept, tags, trailer))
        boundary_ms = starts[skipped] or window_ms
        removed = [
            r.id
            for r in self.ranges.values()
            if r.end_ms is not None and window_ms - skip_until * 1000 <= r.end_ms < window_ms
        ]
        v2_skip = skip_line + (
            ',RECENTLY-REMOVED-DATERANGES="' + "\t".join(sorted(removed)) + '"' if removed else ""
        )
        v2_tags = [r.tag() for r in listed if r.changed_ms() >= boundary_ms]
        v2 = Playlist.of(_text([*head, v2_skip], kept, v2_tags, trailer))
        return Playlist(full.body, full.etag, delta, v2)


def _split(lines: list[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """The header, each segment's lines (the open one last), and the trailing tags."""
    head: list[str] = []
    blocks: list[list[str]] = []
    trailer: list[str] = []
    current: list[str] | None = None
    for line in lines:
        if line.startswith(_TRAILER_TAGS):
            trailer.append(line)
        elif current is None and not blocks and not (line + "\n").startswith(_SEGMENT_TAGS):
            head.append(line)
        else:
            if current is None:
                current = []
                blocks.append(current)
            current.append(line)
            if not line.startswith("#"):  # a segment's URI ends it
                current = None
    return head, blocks, trailer


def _block_pdt(block: list[str]) -> int | None:
    for line in block:
        if line.startswith(_PDT):
            moment = dt.datetime.fromisoformat(line[len(_PDT) :].replace("Z", "+00:00"))
            return round(moment.timestamp() * 1000)
    return None


def _block_duration(block: list[str]) -> float:
    for line in block:
        if line.startswith("#EXTINF:"):
            return float(line[8:].split(",", 1)[0])
    total = 0.0
    for line in block:
        if line.startswith("#EXT-X-PART:DURATION="):
            total += float(line[21:].split(",", 1)[0])
    return total


def _skippable(blocks: list[list[str]], skip_until: float) -> int:
    """How many of the oldest complete segments end ``skip_until`` or more before the
    end of the playlist."""
    durations = [_block_duration(block) for block in blocks]
    remaining = sum(durations)
    count = 0
    for block, duration in zip(blocks, durations, strict=True):
        remaining -= duration
        complete = not block[-1].startswith("#")
        if not complete or remaining < skip_until or _block_pdt(block) is None:
            break
        count += 1
    return count


def _text(head: list[str], blocks: list[list[str]], tags: list[str], trailer: list[str]) -> str:
    lines = [*head]
    for block in blocks:
        lines.extend(block)
    lines.extend(tags)
    lines.extend(trailer)
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    """``value`` as a quoted-string may carry it: no ``"``, CR or LF (RFC 8216bis 4.2)."""
    return "".join(c for c in value.replace('"', "'") if c >= " " and c != "\x7f")


def _date(unix_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(unix_ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def follow_timelines(
    streams: Callable[[], Iterable[tuple[str, DateRanges]]],
    timeline: Timeline,
    interval_s: float,
) -> None:
    """Feed each packaged stream's date ranges from its stored timeline, read every
    ``interval_s`` (one ``XRANGE`` per stream: any node may have recorded the event).
    ``streams()`` gives the streams packaged here now. Runs until cancelled."""
    while True:
        for stream_id, ranges in list(streams()):
            try:
                await _catch_up(stream_id, ranges, timeline)
            except UNAVAILABLE_ERRORS as exc:
                log.warning("stream %s: timeline not read (%s); trying again", stream_id, exc)
            except Exception:
                log.exception("stream %s: timeline not read; trying again", stream_id)
        await asyncio.sleep(interval_s)


async def _catch_up(stream_id: str, ranges: DateRanges, timeline: Timeline) -> None:
    since = ranges.cursor or str(round(time.time() * 1000) - _LOOK_BACK_MS)
    while True:
        entries = await timeline.entries(stream_id, since=since, limit=_READ)
        for entry in entries:
            ranges.add(entry)
        if len(entries) < _READ:
            return
        since = entries[-1].id
