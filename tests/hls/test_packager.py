"""The packager fed with real libx264 and libopus output: the multivariant playlist, the
video and audio renditions (one CMAF track each) and how they line up, playlist grammar,
numbering, part durations, discontinuities, silence where audio is missing,
blocking-reload answers, and that what it makes decodes."""

from __future__ import annotations

import array
import asyncio
import io
import re

import av
import pytest

from livecast.errors import BadRequest
from livecast.hls._aac import silent_frame
from livecast.hls.packager import Packager, PackagerSettings, Rendition
from tests.hls import playlists
from tests.hls.media import Frame, h264_frames, opus_frames
from tests.hls.playlists import hint, last_part
from tests.ingest.peers import read_counter

_PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="part-(\w+)-(\d+)\.m4s"(,INDEPENDENT=YES)?')


def feed(
    packager: Packager, video: list[Frame], audio: list[Frame], *, base: float = 100.0
) -> None:
    """Push frames in arrival order, as the relay would."""
    events = [(f.at, 0, f) for f in video] + [(f.at, 1, f) for f in audio]
    for at, kind, frame in sorted(events, key=lambda e: (e[0], e[1])):
        push = packager.push_audio if kind else packager.push_video
        push(frame.data, frame.timestamp, frame.keyframe, base + at)


def text(packager: Packager, rendition: str = "video") -> str:
    playlist = packager.audio if rendition == "audio" else packager.video
    assert playlist is not None
    current = playlist.playlist()
    assert current is not None
    return current.body.decode()


def decode(data: bytes) -> tuple[list[int], int]:
    """The counters of the decoded video frames, and the decoded audio samples."""
    counters: list[int] = []
    samples = 0
    with av.open(io.BytesIO(data), "r") as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                counters.append(read_counter(frame))
            else:
                assert isinstance(frame, av.AudioFrame)
                samples += frame.samples
    return counters, samples


def all_bytes(rendition: Rendition | None) -> bytes:
    assert rendition is not None
    init = rendition.file(rendition.segments[0].init_name)
    assert init is not None
    return init + b"".join(s.data or b"" for s in rendition.segments)


def test_segments_decode_to_every_frame_in_order_with_aac_audio() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0), audio=True)
    feed(packager, h264_frames(150, gop=30), opus_frames(5.0))
    assert [s.msn for s in packager.video.segments] == [0, 1, 2, 3]
    counters, samples = decode(all_bytes(packager.video))
    assert counters == list(range(120))  # four complete 1 s segments
    assert samples == 0  # one track per file
    counters, samples = decode(all_bytes(packager.audio))
    assert counters == []
    # AAC frames of 1024 samples covering those 4 s (the encoder's priming aside)
    assert 4 * 48_000 - 3 * 1024 <= samples <= 4 * 48_000 + 1024


def test_playlist_grammar_parts_and_preload_hint() -> None:
    settings = PackagerSettings(part_s=0.3, segment_s=1.0, window=3)
    packager = Packager(settings, audio=True)
    feed(packager, h264_frames(200, gop=30), opus_frames(7.0))
    lines = text(packager).splitlines()
    assert lines[0] == "#EXTM3U"
    tags = {line.split(":", 1)[0] for line in lines}
    for tag in (
        "#EXT-X-TARGETDURATION",
        "#EXT-X-PART-INF",
        "#EXT-X-SERVER-CONTROL",
        "#EXT-X-MEDIA-SEQUENCE",
        "#EXT-X-MAP",
        "#EXT-X-PROGRAM-DATE-TIME",
        "#EXT-X-PRELOAD-HINT",
    ):
        assert tag in tags, tag
    assert (
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.900,"
        "CAN-SKIP-UNTIL=6.0,CAN-SKIP-DATERANGES=YES"
    ) in lines
    assert "#EXT-X-PART-INF:PART-TARGET=0.300" in lines
    assert "#EXT-X-ENDLIST" not in lines
    # a bounded window: three complete segments, numbered on from the first listed
    segments = [line for line in lines if line.startswith("seg-")]
    assert len(segments) == 3
    assert f"video-{packager.run}.m3u8" == packager.video.playlist_name
    first = int(next(line for line in lines if "MEDIA-SEQUENCE" in line).split(":")[1])
    assert segments == [f"seg-{packager.run}-{msn}.m4s" for msn in range(first, first + 3)]
    # parts: within PART-TARGET, numbered through the run, independent at each keyframe
    numbers = []
    for _msn, parts, _complete in playlists.segments(text(packager)):
        for index, line in enumerate(parts):
            match = _PART.fullmatch(line)
            assert match is not None, line
            assert match[2] == packager.run
            assert 0 < float(match[1]) <= 0.3
            numbers.append(int(match[3]))
            assert (match[4] is not None) == (index == 0)  # keyframes only start segments
    assert numbers
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    # a complete segment's EXTINF is the sum of its parts, within the target duration
    target = int(next(line for line in lines if "TARGETDURATION" in line).split(":")[1])
    for segment in packager.video.segments:
        assert segment.duration == pytest.approx(sum(p.duration for p in segment.parts))
        assert round(segment.duration) <= target
    # the hint names the part that comes next, and that part then exists
    hinted = f"part-{packager.run}-{numbers[-1] + 1}.m4s"
    assert lines[-2] == f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hinted}"'
    # where the audio rendition is: at the same part as this one
    msn, index = last_part(text(packager))
    assert lines[-1] == (
        f'#EXT-X-RENDITION-REPORT:URI="audio-{packager.run}.m3u8",LAST-MSN={msn},LAST-PART={index}'
    )
    audio_lines = text(packager, "audio").splitlines()
    assert audio_lines[-1] == (
        f'#EXT-X-RENDITION-REPORT:URI="video-{packager.run}.m3u8",LAST-MSN={msn},LAST-PART={index}'
    )
    assert hinted == hint(text(packager))
    assert packager.video.file(hinted) is None
    more = h264_frames(230, gop=30)[200:]
    feed(packager, more, [], base=100.0)
    assert packager.video.file(hinted) is not None


def test_publisher_drop_and_return_continues_after_a_discontinuity() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0), audio=True)
    feed(packager, h264_frames(75, gop=15), opus_frames(2.5))
    packager.publisher_changed()
    # the new publisher: another encoder, its own timestamps, arriving 4 s later
    feed(packager, h264_frames(75, gop=15, start_ts=123_456), opus_frames(2.5), base=106.5)
    lines = text(packager).splitlines()
    assert lines.count("#EXT-X-DISCONTINUITY") == 1
    after = lines.index("#EXT-X-DISCONTINUITY")
    # the same encoder settings: the same parameter sets, so the same init segment
    assert lines[after + 1].startswith("#EXT-X-PROGRAM-DATE-TIME:")
    # each side decodes on its own, all its frames in order
    audio_lines = text(packager, "audio").splitlines()
    assert audio_lines.count("#EXT-X-DISCONTINUITY") == 1
    for rendition in packager.renditions:
        segments = rendition.segments
        cut = next(i for i, s in enumerate(segments) if s.discontinuity)
        assert cut == next(i for i, s in enumerate(packager.video.segments) if s.discontinuity)
        before, rest = segments[:cut], segments[cut:]
        assert before
        assert rest
        for run in (before, rest):
            init = rendition.file(run[0].init_name)
            assert init is not None
            counters, samples = decode(init + b"".join(s.data or b"" for s in run))
            if rendition is packager.video:
                assert counters == list(range(len(counters)))
                assert len(counters) >= 30
            else:
                assert samples >= 48_000


def test_blocking_answers_are_the_playlist_when_that_part_appeared() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0), audio=False)
    video = h264_frames(120, gop=30)
    feed(packager, video[:50], [])
    msn, index = packager.video.next_part()
    assert packager.video.blocking_playlist(msn, index) is None  # not there yet
    feed(packager, video[50:], [])
    answer = packager.video.blocking_playlist(msn, index)
    assert answer is not None
    # it ends with the part asked for, however many parts came since
    assert last_part(answer.body.decode()) == (msn, index)
    assert packager.video.blocking_playlist(msn, index) == answer  # identical bytes, same ETag
    assert answer != packager.video.playlist()
    # a part index past a complete segment's last part is the next segment's first
    done = packager.video.segments[-1]
    assert packager.video.blocking_playlist(done.msn, len(done.parts) + 3) == (
        packager.video.blocking_playlist(done.msn + 1, 0)
    )
    # the whole segment
    assert packager.video.blocking_playlist(done.msn, None) is not None
    newest = packager.video.next_part()[0]
    assert packager.video.blocking_playlist(newest + 2, 0) is None
    with pytest.raises(BadRequest):
        packager.video.blocking_playlist(newest + 3, 0)


def test_a_stall_longer_than_a_part_keeps_parts_within_the_target() -> None:
    packager = Packager(PackagerSettings(part_s=0.4, segment_s=1.0), audio=False)
    video = h264_frames(90, gop=30)
    stalled = [
        Frame(f.data, f.timestamp + (90_000 if i >= 40 else 0), f.keyframe, f.at + (i >= 40))
        for i, f in enumerate(video)
    ]
    feed(packager, stalled, [])
    durations = [p.duration for s in packager.video.segments for p in s.parts]
    assert durations
    assert max(durations) <= 0.4
    counters, _ = decode(all_bytes(packager.video))
    assert counters == list(range(len(counters)))
    assert len(counters) >= 60


def test_the_end_lists_endlist_and_keeps_every_frame() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0), audio=False)
    feed(packager, h264_frames(50, gop=30), [])
    packager.finish()
    lines = text(packager).splitlines()
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert not any(line.startswith("#EXT-X-PRELOAD-HINT") for line in lines)
    counters, _ = decode(all_bytes(packager.video))
    assert counters == list(range(50))


def test_new_parameter_sets_start_a_segment_with_a_new_init() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0), audio=False)
    feed(packager, h264_frames(45, gop=15), [])
    # the publisher's encoder goes to a larger picture mid-segment, on the same timeline
    larger = h264_frames(75, gop=15, start_ts=1000 + 45 * 3000, size=(320, 192))
    feed(packager, [Frame(f.data, f.timestamp, f.keyframe, f.at + 1.5) for f in larger], [])
    lines = text(packager).splitlines()
    maps = [line for line in lines if line.startswith("#EXT-X-MAP:")]
    assert len(maps) == 2
    assert "#EXT-X-DISCONTINUITY" not in lines
    for init_name in {s.init_name for s in packager.video.segments}:
        init = packager.video.file(init_name)
        assert init is not None
        run = [s for s in packager.video.segments if s.init_name == init_name]
        with av.open(io.BytesIO(init + b"".join(s.data or b"" for s in run)), "r") as container:
            frames = list(container.decode(video=0))
        assert frames
        width = frames[0].width
        assert width == (160 if init_name == packager.video.segments[0].init_name else 320)
        counters = [read_counter(f) for f in frames]
        assert counters == list(range(counters[0], counters[0] + len(counters)))


def test_init_segments_no_listed_segment_needs_are_let_go() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0, window=2), audio=False)
    small = h264_frames(45, gop=15)
    feed(packager, small, [])
    first_init = packager.video.segments[0].init_name
    larger = h264_frames(150, gop=15, start_ts=1000 + 45 * 3000, size=(320, 192))
    feed(packager, [Frame(f.data, f.timestamp, f.keyframe, f.at + 1.5) for f in larger], [])
    assert all(s.init_name != first_init for s in packager.video.segments)
    assert packager.video.file(first_init) is None
    assert packager.video.file(packager.video.segments[0].init_name) is not None
    assert f'#EXT-X-MAP:URI="{first_init}"' not in text(packager)


async def test_one_waiter_giving_up_does_not_cancel_the_change_for_others() -> None:
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0), audio=False)
    video = h264_frames(40, gop=30)
    feed(packager, video[:20], [])
    patient = packager.next_change()
    impatient = packager.next_change()
    impatient.cancel()  # its request gave up
    feed(packager, video[20:], [])
    await asyncio.wait_for(patient, 1.0)  # resolved by the next part
    assert not packager.next_change().done()  # and the next change is a new one


def test_the_multivariant_playlist_names_both_renditions_and_their_codecs() -> None:
    packager = Packager(PackagerSettings(part_s=0.3, segment_s=1.0), audio=True)
    assert packager.multivariant() is None  # nothing to play yet
    feed(packager, h264_frames(90, gop=30), opus_frames(3.0))
    multivariant = packager.multivariant()
    assert multivariant is not None
    run = packager.run
    lines = multivariant.body.decode().splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    assert lines[3] == (
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,'
        f'CHANNELS="2",URI="audio-{run}.m3u8"'
    )
    stream_inf = re.fullmatch(
        r'#EXT-X-STREAM-INF:BANDWIDTH=(\d+),CODECS="avc1\.42c0[0-9a-f]{2},mp4a\.40\.2",'
        r'RESOLUTION=160x96,AUDIO="audio"',
        lines[4],
    )
    assert stream_inf is not None, lines[4]
    assert lines[5:] == [f"video-{run}.m3u8"]
    # about what the complete segments carry, rounded up
    bits = 8 * sum(len(s.data or b"") for r in packager.renditions for s in r.segments)
    seconds = sum(s.duration for s in packager.video.segments)
    assert bits / seconds <= int(stream_inf[1]) <= bits / seconds + 3 * 100_000
    assert packager.multivariant() is multivariant  # the same bytes while nothing changes
    # without audio: no audio group
    silent = Packager(PackagerSettings(part_s=0.3, segment_s=1.0), audio=False)
    feed(silent, h264_frames(30, gop=30), [])
    alone = silent.multivariant()
    assert alone is not None
    body = alone.body.decode()
    assert "#EXT-X-MEDIA" not in body
    assert "AUDIO=" not in body
    assert 'CODECS="avc1.' in body
    assert "mp4a" not in body
    assert silent.audio is None
    assert silent.file(f"audio-init-{silent.run}-0.mp4") is None


def test_audio_parts_are_cut_where_the_video_parts_end() -> None:
    packager = Packager(PackagerSettings(part_s=0.3, segment_s=1.0, window=10), audio=True)
    feed(packager, h264_frames(180, gop=30), opus_frames(6.0))
    audio = packager.audio
    assert audio is not None
    video_segments = packager.video.segments
    assert [s.msn for s in audio.segments] == [s.msn for s in video_segments]
    frame = 1024 / 48_000
    video_end = audio_end = 0.0
    for video_segment, audio_segment in zip(video_segments, audio.segments, strict=True):
        assert audio_segment.program_date_time == video_segment.program_date_time
        assert len(audio_segment.parts) == len(video_segment.parts)
        for video_part, audio_part in zip(video_segment.parts, audio_segment.parts, strict=True):
            assert audio_part.independent
            video_end += video_part.duration
            audio_end += audio_part.duration
            # the encoder runs a frame or two behind; never does the drift add up
            assert video_end - 3 * frame <= audio_end <= video_end + frame
    # the audio track has no hole: its parts follow each other sample for sample
    _, samples = decode(all_bytes(audio))
    assert samples == round(audio_end * 48_000)


def test_a_returning_publisher_without_audio_gets_silence_and_the_playlists_go_on() -> None:
    packager = Packager(PackagerSettings(part_s=0.3, segment_s=1.0, window=10), audio=True)
    feed(packager, h264_frames(60, gop=30), opus_frames(2.0))
    packager.publisher_changed()
    feed(packager, h264_frames(90, gop=30, start_ts=777), [], base=103.0)
    audio = packager.audio
    assert audio is not None
    cut = next(i for i, s in enumerate(audio.segments) if s.discontinuity)
    after = audio.segments[cut:]
    assert len(after) == len(packager.video.segments[cut:]) >= 2
    silence = silent_frame()
    for segment in after:
        assert segment.duration == pytest.approx(
            packager.video.segments[segment.msn].duration, abs=2 * 1024 / 48_000
        )
        assert segment.data is not None
        assert silence in segment.data
    init = audio.file(after[0].init_name)
    assert init is not None
    with av.open(io.BytesIO(init + b"".join(s.data or b"" for s in after)), "r") as container:
        frames = list(container.decode(audio=0))
    assert sum(f.samples for f in frames) >= 2 * 48_000
    loudest = max(
        max(map(abs, array.array("f", bytes(plane)[: f.samples * 4])))
        for f in frames
        for plane in f.planes
    )
    assert loudest < 1e-3  # silence
    assert "#EXT-X-PRELOAD-HINT" in text(packager, "audio")
