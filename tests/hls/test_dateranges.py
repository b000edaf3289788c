"""Commerce events in the packager's playlist: EXT-X-DATERANGE tags at their media time,
the delta updates (_HLS_skip=YES and v2), and the feed from the stored timeline."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Any

import redis.asyncio as aioredis

from livecast.hls.dateranges import DateRanges, follow_timelines
from livecast.hls.packager import Packager, PackagerSettings
from livecast.redisdb import KeySpace
from livecast.timeline import Moment, MomentKind, ShownPrice, Timeline, TimelineEntry
from tests.conftest import Client
from tests.hls.media import h264_frames
from tests.hls.test_packager import feed
from tests.ingest.conftest import eventually

_RANGE = re.compile(r"#EXT-X-DATERANGE:ID=\"([^\"]+)\",(.*)")


def _entry(n: int, kind: MomentKind, media: int | None, **fields: Any) -> TimelineEntry:
    return TimelineEntry(id=f"{n}-0", at_ms=n, kind=kind, media_time_ms=media, **fields)


def _ranges(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = _RANGE.fullmatch(line)
        if match:
            found[match[1]] = match[2]
    return found


def _line(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(prefix))


def _iso(unix_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(unix_ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _body(packager: Packager, skip: str | None = None) -> str:
    playlist = packager.video.playlist()
    assert playlist is not None
    return playlist.for_skip(skip).body.decode()


def test_pins_deals_and_auctions_are_date_ranges_at_their_media_time() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0, window=20), audio=False)
    frames = h264_frames(300, gop=30)
    feed(packager, frames[:120], [])
    pdt = round(packager.video.segments[0].program_date_time * 1000)
    euro = ShownPrice(amount_minor=1500, currency="EUR")
    ranges = packager.dateranges
    ranges.add(
        _entry(1, MomentKind.PIN_SET, pdt + 500, sku="HAT-1", title='The "big" hat\n', price=euro)
    )
    ranges.add(
        _entry(
            2,
            MomentKind.DEAL_STARTED,
            pdt + 800,
            sku="HAT-1",
            deal_id="d1",
            title="Hat",
            price=euro,
        )
    )
    ranges.add(_entry(3, MomentKind.STOCK, pdt + 900, sku="HAT-1", left=3, sold_out=False))
    ranges.add(_entry(4, MomentKind.PIN_SET, pdt + 1500, sku="CAP-2", title="Cap", price=euro))
    ranges.add(_entry(5, MomentKind.DEAL_ENDED, pdt + 2500, sku="HAT-1", deal_id="d1"))
    ranges.add(
        _entry(
            6,
            MomentKind.AUCTION_STARTED,
            pdt + 3000,
            sku="LOT",
            auction_id="a1",
            title="Lot",
            price=euro,
        )
    )
    ranges.add(_entry(7, MomentKind.DEAL_STARTED, None, sku="X", deal_id="d2"))  # no media then
    before = packager.video.playlist()
    assert before is not None
    assert "#EXT-X-DATERANGE" not in before.body.decode()  # made before the events came
    feed(packager, frames[120:140], [], base=100.0)  # the next parts
    body = _body(packager)
    assert before.body.decode() not in body
    found = _ranges(body)
    assert list(found) == ["pin-1-0", "deal-d1", "pin-4-0", "auction-a1"]  # by start
    assert found["pin-1-0"] == (
        f'CLASS="com.livecast.pin",START-DATE="{_iso(pdt + 500)}",END-DATE="{_iso(pdt + 1500)}",'
        'X-SKU="HAT-1",X-TITLE="The \'big\' hat",X-PRICE-MINOR=1500,X-CURRENCY="EUR"'
    )
    assert found["deal-d1"] == (
        f'CLASS="com.livecast.deal",START-DATE="{_iso(pdt + 800)}",END-DATE="{_iso(pdt + 2500)}",'
        'X-SKU="HAT-1",X-TITLE="Hat",X-PRICE-MINOR=1500,X-CURRENCY="EUR",X-DEAL-ID="d1"'
    )
    assert "END-DATE" not in found["pin-4-0"]  # still pinned
    assert found["auction-a1"].startswith(
        f'CLASS="com.livecast.auction",START-DATE="{_iso(pdt + 3000)}"'
    )
    assert 'X-AUCTION-ID="a1"' in found["auction-a1"]
    # the unpin ends the open pin, in the renderings from then on
    ranges.add(_entry(8, MomentKind.PIN_CLEARED, pdt + 3500, sku="CAP-2"))
    feed(packager, frames[140:160], [], base=100.0)
    assert f'END-DATE="{_iso(pdt + 3500)}"' in _ranges(_body(packager))["pin-4-0"]
    # and the ranges sit after the segments, before the hint
    lines = _body(packager).splitlines()
    tags = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-DATERANGE")]
    last_uri = max(i for i, line in enumerate(lines) if not line.startswith("#"))
    assert min(tags) > last_uri
    assert lines[-1].startswith("#EXT-X-PRELOAD-HINT")


def test_the_selling_formats_are_date_ranges_at_their_media_time() -> None:
    """A poll, a giveaway, a group buy and a knock-down each span their start to their
    end; their price changes are live counters, not ranges."""
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0, window=20), audio=False)
    frames = h264_frames(300, gop=30)
    feed(packager, frames[:120], [])
    pdt = round(packager.video.segments[0].program_date_time * 1000)
    euro = ShownPrice(amount_minor=2000, currency="EUR")
    lower = ShownPrice(amount_minor=1700, currency="EUR")
    kinds = MomentKind
    for entry in (
        _entry(1, kinds.POLL_STARTED, pdt + 100, poll_id="p1", title='Red or "blue"?'),
        _entry(2, kinds.GIVEAWAY_STARTED, pdt + 200, sku="PEN", giveaway_id="g1", title="Pen"),
        _entry(
            3,
            kinds.GROUPBUY_STARTED,
            pdt + 300,
            sku="KET",
            groupbuy_id="b1",
            title="Kettle",
            price=euro,
        ),
        _entry(
            4,
            kinds.KNOCKDOWN_STARTED,
            pdt + 400,
            sku="SHOE",
            knockdown_id="k1",
            title="Shoe",
            price=euro,
        ),
        _entry(5, kinds.GROUPBUY_UPDATED, pdt + 500, sku="KET", groupbuy_id="b1", price=lower),
        _entry(6, kinds.KNOCKDOWN_UPDATED, pdt + 600, sku="SHOE", knockdown_id="k1", price=lower),
        _entry(7, kinds.POLL_CLOSED, pdt + 1000, poll_id="p1", state="closed"),
        _entry(8, kinds.GIVEAWAY_DRAWN, pdt + 1100, giveaway_id="g1", state="drawn"),
        _entry(9, kinds.GROUPBUY_ENDED, pdt + 1200, groupbuy_id="b1", state="capturing"),
        _entry(10, kinds.POLL_STARTED, None, poll_id="p2", title="No media"),  # no range
    ):
        packager.dateranges.add(entry)
    feed(packager, frames[120:140], [], base=100.0)
    found = _ranges(_body(packager))
    assert list(found) == ["poll-p1", "giveaway-g1", "groupbuy-b1", "knockdown-k1"]
    assert found["poll-p1"] == (
        f'CLASS="com.livecast.poll",START-DATE="{_iso(pdt + 100)}",'
        f'END-DATE="{_iso(pdt + 1000)}",X-TITLE="Red or \'blue\'?",X-POLL-ID="p1"'
    )
    assert found["giveaway-g1"] == (
        f'CLASS="com.livecast.giveaway",START-DATE="{_iso(pdt + 200)}",'
        f'END-DATE="{_iso(pdt + 1100)}",X-SKU="PEN",X-TITLE="Pen",X-GIVEAWAY-ID="g1"'
    )
    assert found["groupbuy-b1"] == (
        f'CLASS="com.livecast.groupbuy",START-DATE="{_iso(pdt + 300)}",'
        f'END-DATE="{_iso(pdt + 1200)}",X-SKU="KET",X-TITLE="Kettle",X-PRICE-MINOR=2000,'
        'X-CURRENCY="EUR",X-GROUPBUY-ID="b1"'
    )
    assert found["knockdown-k1"] == (
        f'CLASS="com.livecast.knockdown",START-DATE="{_iso(pdt + 400)}",X-SKU="SHOE",'
        'X-TITLE="Shoe",X-PRICE-MINOR=2000,X-CURRENCY="EUR",X-KNOCKDOWN-ID="k1"'
    )
    # the knock-down's end closes its range, the same ID and attributes
    packager.dateranges.add(_entry(11, kinds.KNOCKDOWN_ENDED, pdt + 1300, knockdown_id="k1"))
    feed(packager, frames[140:160], [], base=100.0)
    ended = _ranges(_body(packager))["knockdown-k1"]
    assert ended == found["knockdown-k1"].replace(
        f'START-DATE="{_iso(pdt + 400)}"',
        f'START-DATE="{_iso(pdt + 400)}",END-DATE="{_iso(pdt + 1300)}"',
    )


def test_a_blocking_answer_keeps_its_bytes_whatever_came_later() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0), audio=False)
    frames = h264_frames(200, gop=30)
    feed(packager, frames[:90], [])
    msn, part = packager.video.next_part()
    feed(packager, frames[90:100], [], base=100.0)
    answer = packager.video.blocking_playlist(msn, part)
    assert answer is not None
    pdt = round(packager.video.segments[-1].program_date_time * 1000)
    packager.dateranges.add(_entry(1, MomentKind.PIN_SET, pdt, sku="A", title="A"))
    feed(packager, frames[100:130], [], base=100.0)
    again = packager.video.blocking_playlist(msn, part)
    assert again is not None
    assert (again.body, again.etag) == (answer.body, answer.etag)
    assert "pin-1-0" in _body(packager)


def test_delta_updates_skip_old_segments_and_date_ranges() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0, window=20), audio=False)
    frames = h264_frames(900, gop=30)
    feed(packager, frames[:780], [])  # 26 seconds: the window is full
    start = round(packager.video.segments[1].program_date_time * 1000)
    late = round(packager.video.segments[-1].program_date_time * 1000)
    ranges = packager.dateranges
    ranges.add(_entry(1, MomentKind.PIN_SET, start + 100, sku="OLD", title="Old"))
    ranges.add(_entry(2, MomentKind.PIN_CLEARED, start + 600, sku="OLD"))
    ranges.add(_entry(3, MomentKind.DEAL_STARTED, late, sku="NEW", deal_id="d9", title="New"))
    feed(packager, frames[780:800], [], base=100.0)
    full = _body(packager)
    until = 6 * packager.target_duration  # the least RFC 8216bis allows
    assert f"CAN-SKIP-UNTIL={until:.1f},CAN-SKIP-DATERANGES=YES" in full.splitlines()[3]
    uris = [line for line in full.splitlines() if line.startswith("seg-")]
    assert set(_ranges(full)) == {"pin-1-0", "deal-d9"}

    delta = _body(packager, "YES")
    skip = re.search(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)\n", delta)
    assert skip is not None
    skipped = int(skip[1])
    # what is left is at least the skip boundary (six target durations) from the end
    assert 0 < skipped < len(uris)
    kept = [line for line in delta.splitlines() if line.startswith("seg-")]
    assert kept == uris[skipped:]
    # the last skipped segment ends `until` or more before the end, the first listed less
    listed = [s for s in packager.video.segments if s.name in uris]
    after_last = full.splitlines()[full.splitlines().index(uris[-1]) + 1 :]
    open_parts = sum(float(line[21:].split(",")[0]) for line in after_last if "X-PART:" in line)
    from_kept = sum(s.duration for s in listed[skipped:]) + open_parts
    assert from_kept >= until > from_kept - listed[skipped].duration
    for tag in (
        "#EXT-X-MEDIA-SEQUENCE:",
        "#EXT-X-DISCONTINUITY-SEQUENCE:",
        "#EXT-X-TARGETDURATION:",
        "#EXT-X-SERVER-CONTROL:",
    ):
        assert _line(delta, tag) == _line(full, tag)
    assert "#EXT-X-MAP:" in delta  # the init segment of the first segment listed
    assert set(_ranges(delta)) == {"pin-1-0", "deal-d9"}  # YES skips segments only

    v2 = _body(packager, "v2")
    assert f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}" in v2
    # the old pin is unchanged since long before the first listed segment: skipped
    assert set(_ranges(v2)) == {"deal-d9"}
    assert [line for line in v2.splitlines() if line.startswith("seg-")] == uris[skipped:]

    # once the old pin leaves the window it is named as recently removed
    feed(packager, frames[800:900], [], base=100.0)
    assert "pin-1-0" not in _ranges(_body(packager))
    assert 'RECENTLY-REMOVED-DATERANGES="pin-1-0"' in _body(packager, "v2")


def test_too_short_a_playlist_to_skip_answers_in_full() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0, window=3), audio=False)
    feed(packager, h264_frames(150, gop=30), [])
    playlist = packager.video.playlist()
    assert playlist is not None
    assert playlist.for_skip("YES") is playlist
    assert playlist.for_skip("v2") is playlist


def test_recently_removed_date_ranges_are_named() -> None:
    ranges = DateRanges()
    lines = [
        "#EXTM3U",
        "#EXT-X-TARGETDURATION:1",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES",
        "#EXT-X-MEDIA-SEQUENCE:0",
    ]
    for n in range(14):
        lines += [
            f"#EXT-X-PROGRAM-DATE-TIME:{_iso(100_000 + n * 1000)}",
            "#EXTINF:1.00000,",
            f"seg-{n}.m4s",
        ]
    ranges.add(_entry(1, MomentKind.DEAL_STARTED, 90_000, deal_id="gone", title="Gone"))
    ranges.add(_entry(2, MomentKind.DEAL_ENDED, 97_000, deal_id="gone"))
    ranges.add(_entry(3, MomentKind.DEAL_STARTED, 91_000, deal_id="long-gone", title="Gone"))
    ranges.add(_entry(4, MomentKind.DEAL_ENDED, 92_000, deal_id="long-gone"))
    ranges.add(_entry(5, MomentKind.DEAL_STARTED, 101_000, deal_id="old", title="Old"))
    ranges.add(_entry(6, MomentKind.DEAL_STARTED, 112_500, deal_id="new", title="New"))
    playlist = ranges.playlist(lines, 1)
    assert set(_ranges(playlist.body.decode())) == {"deal-old", "deal-new"}
    v2 = playlist.for_skip("v2").body.decode()
    # segments 0-7 end 6 s or more before the end (114 s): skipped; the first listed
    # starts at 108 s, so "old" (101 s) is skipped, "new" is not
    assert '#EXT-X-SKIP:SKIPPED-SEGMENTS=8,RECENTLY-REMOVED-DATERANGES="deal-gone"' in v2
    assert set(_ranges(v2)) == {"deal-new"}
    assert "seg-7.m4s" not in v2
    assert "seg-8.m4s" in v2


async def test_the_packager_reads_its_ranges_from_the_stored_timeline(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    keys = KeySpace(f"t-{uuid.uuid4().hex[:12]}:")
    timeline = Timeline(client, keys, max_entries=100, retention_s=0)
    ranges = DateRanges()
    task = asyncio.create_task(follow_timelines(lambda: [("s1", ranges)], timeline, 0.02))
    try:
        await timeline.append("s1", Moment(kind=MomentKind.PIN_SET, media_time_ms=5_000, sku="A"))
        await timeline.append("s2", Moment(kind=MomentKind.PIN_SET, media_time_ms=5_000, sku="B"))
        await eventually(lambda: bool(ranges.ranges), 5)
        await timeline.append("s1", Moment(kind=MomentKind.PIN_CLEARED, media_time_ms=6_000))
        await eventually(lambda: next(iter(ranges.ranges.values())).end_ms is not None, 5)
        [pin] = ranges.ranges.values()
        assert (pin.start_ms, pin.end_ms) == (5_000, 6_000)
        assert 'X-SKU="A"' in pin.attributes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.delete(timeline.key("s1"), timeline.key("s2"))
        await client.aclose()


async def test_a_bad_skip_is_refused(client: Client) -> None:
    resp = await client.get("/hls/anystream/video-0a1b2c3d.m3u8?_HLS_skip=maybe")
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_hls_request"
