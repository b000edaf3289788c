"""Publish over WHIP with FFmpeg's ``whip`` muxer, through PyAV: run as a script.

``python whip_muxer_publisher.py URL TOKEN SECONDS [--dtls-active]`` encodes generated
frames with PyAV itself (H.264 constrained baseline through libx264, Opus through
libopus) at 30 fps in real time and muxes them into FFmpeg's WHIP muxer, which does the
WHIP exchange, ICE, DTLS and SRTP; ``--dtls-active`` makes FFmpeg the DTLS client.
Video frame ``n`` shows ``n`` in binary, the same 16 blocks that
``tests.ingest.peers.read_counter`` reads back. It imports only ``av`` and the standard
library, so it runs in any interpreter that has a PyAV (the project's, or another
PyAV's in its own venv). The token goes in the muxer's ``authorization`` option, which
FFmpeg sends as ``Authorization: Bearer <token>``. Prints one JSON line on stdout when
done: frames sent and the PyAV and FFmpeg versions. ``WHIP_PUBLISHER_VERBOSE=1`` logs
FFmpeg's own messages (ICE, DTLS, SRTP) to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from fractions import Fraction

import av

FPS = 30
WIDTH, HEIGHT = 160, 96  # as tests.ingest.peers
_COLS, _ROWS = 8, 2
_BLOCK_W, _BLOCK_H = WIDTH // _COLS, HEIGHT // _ROWS
_WHITE = bytes([235]) * _BLOCK_W
_BLACK = bytes([16]) * _BLOCK_W
_CHROMA = bytes([128]) * (WIDTH * HEIGHT // 4)
SAMPLE_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms


def counter_frame(counter: int) -> av.VideoFrame:
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    rows = []
    for row in range(_ROWS):
        line = b"".join(
            _WHITE if counter >> (row * _COLS + col) & 1 else _BLACK for col in range(_COLS)
        )
        rows.append(line * _BLOCK_H)
    frame.planes[0].update(b"".join(rows))
    frame.planes[1].update(_CHROMA)
    frame.planes[2].update(_CHROMA)
    return frame


def silence(samples: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
    frame.sample_rate = SAMPLE_RATE
    frame.planes[0].update(bytes(samples * 4))
    return frame


def main(url: str, token: str, seconds: float, dtls_active: bool = False) -> int:
    if os.environ.get("WHIP_PUBLISHER_VERBOSE"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        av.logging.set_level(av.logging.VERBOSE)
    options = {"authorization": token}
    if dtls_active:  # offer a=setup:active: FFmpeg is the DTLS client, the server its server
        options["whip_flags"] = "dtls_active"
    container = av.open(url, "w", format="whip", options=options)
    video = container.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.time_base = Fraction(1, FPS)
    video.options = {
        "profile": "baseline",
        "preset": "ultrafast",
        "tune": "zerolatency",
        "g": str(FPS),  # a keyframe a second
        "bf": "0",
    }
    audio = container.add_stream("libopus", rate=SAMPLE_RATE)
    audio.layout = "stereo"
    audio.time_base = Fraction(1, SAMPLE_RATE)

    started = time.monotonic()
    sent = 0
    audio_pts = 0
    total = int(seconds * FPS)
    try:
        for index in range(total):
            # real time: the muxer sends each packet as it is muxed
            delay = started + index / FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            frame = counter_frame(index & 0xFFFF)
            frame.pts = index
            frame.time_base = Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
            sent += 1
            while audio_pts < (index + 1) * SAMPLE_RATE // FPS:
                chunk = silence(AUDIO_SAMPLES)
                chunk.pts = audio_pts
                chunk.time_base = Fraction(1, SAMPLE_RATE)
                audio_pts += AUDIO_SAMPLES
                for packet in audio.encode(chunk):
                    container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    finally:
        container.close()
    report = {"frames_sent": sent, "ffmpeg": av.ffmpeg_version_info, "av": av.__version__}
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), "--dtls-active" in sys.argv[4:]))
