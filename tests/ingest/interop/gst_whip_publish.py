#!/usr/bin/python3
"""A WHIP publisher around GStreamer's ``webrtcbin``, for the system Python (PyGObject).

Debian 12's GStreamer 1.22 has no ``whipclientsink`` (gst-plugins-rs), so this does
what it does: build the offer in ``webrtcbin``, wait until ICE gathering completes,
POST it with ``Authorization: Bearer``, set the 201's answer, and at the end DELETE
the session URL (``Location``, resolved against the endpoint). The media is
``videotestsrc`` through ``x264enc`` (constrained baseline, no B-frames, a keyframe
every 2 s) and ``audiotestsrc`` through ``opusenc``, live at 30 fps.

Usage: /usr/bin/python3 gst_whip_publish.py --url URL --token TOKEN --seconds N
Prints one JSON object per line on stdout (``answered``, ``state``, ``progress``,
``done``); exits 0 when the session connected, stayed connected for the whole time and
its DELETE answered 200.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import gi  # type: ignore[import-not-found]

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # type: ignore[import-not-found]  # noqa: E402

PIPELINE = """
webrtcbin name=webrtc bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball
  ! video/x-raw,width=640,height=360,framerate=30/1
  ! videoconvert
  ! x264enc tune=zerolatency speed-preset=veryfast bitrate=800 key-int-max=60 bframes=0
  ! video/x-h264,profile=constrained-baseline
  ! rtph264pay config-interval=-1 aggregate-mode=zero-latency pt=96
  ! application/x-rtp,media=video,encoding-name=H264,payload=96
  ! webrtc.
audiotestsrc is-live=true wave=sine volume=0.2
  ! audioconvert ! audioresample
  ! opusenc bitrate=64000
  ! rtpopuspay pt=111
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111
  ! webrtc.
"""

GATHERING_TIMEOUT_S = 10


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class WhipPublisher:
    def __init__(self, url: str, token: str, seconds: float) -> None:
        self.url = url
        self.token = token
        self.seconds = seconds
        self.loop = GLib.MainLoop()
        self.pipeline = Gst.parse_launch(PIPELINE)
        self.webrtc = self.pipeline.get_by_name("webrtc")
        self.resource_url = ""
        self.states: list[str] = []
        self.offered = False
        self.error = ""
        self.delete_status = 0
        self.video_buffers = 0
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        payloader = self.pipeline.get_by_name("webrtc").get_static_pad("sink_0")
        if payloader is not None:
            payloader.add_probe(Gst.PadProbeType.BUFFER, self.count_video)

    def count_video(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        self.video_buffers += 1
        return Gst.PadProbeReturn.OK

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def run(self) -> int:
        self.pipeline.set_state(Gst.State.PLAYING)
        for transceiver in self.transceivers():
            transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        GLib.timeout_add_seconds(GATHERING_TIMEOUT_S, self.gathering_timeout)
        GLib.timeout_add_seconds(5, self.progress)
        self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)
        connected = "connected" in self.states
        ok = (
            connected
            and not self.error
            and not {"failed", "disconnected"} & set(self.states)
            and self.delete_status == 200
        )
        emit(
            "done",
            ok=ok,
            connected=connected,
            states=self.states,
            error=self.error,
            delete_status=self.delete_status,
            gstreamer=Gst.version_string(),
        )
        return 0 if ok else 1

    def transceivers(self) -> list[Any]:
        found: list[Any] = []
        index = 0
        while True:
            transceiver = self.webrtc.emit("get-transceiver", index)
            if transceiver is None:
                return found
            found.append(transceiver)
            index += 1

    # -- offer, gathering, POST, answer ---------------------------------------------------

    def on_negotiation_needed(self, _element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer_created(self, promise: Gst.Promise, _data: object) -> None:
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, _element: Gst.Element, _spec: object) -> None:
        state = self.webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.send_offer)

    def gathering_timeout(self) -> bool:
        if not self.offered:
            GLib.idle_add(self.send_offer)
        return False

    def send_offer(self) -> bool:
        if self.offered:
            return False
        self.offered = True
        local = self.webrtc.get_property("local-description")
        if local is None:
            return self.fail("no local description after ICE gathering")
        request = urllib.request.Request(
            self.url,
            data=local.sdp.as_text().encode(),
            headers={"Content-Type": "application/sdp", **self.headers()},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=8) as response:
                status, answer = response.status, response.read().decode()
                location = response.headers.get("Location", "")
                final_url = response.geturl()
        except urllib.error.HTTPError as exc:
            return self.fail(f"WHIP answered {exc.code}: {exc.read().decode()[:300]}")
        except OSError as exc:
            return self.fail(f"WHIP POST failed: {exc}")
        if status != 201 or not location:
            return self.fail(f"WHIP answered {status} (Location {location!r})")
        self.resource_url = urllib.parse.urljoin(final_url, location)
        result, message = GstSdp.SDPMessage.new_from_text(answer)
        if result != GstSdp.SDPResult.OK:
            return self.fail("the answer is not SDP")
        description = GstWebRTC.WebRTCSessionDescription.new(
            GstWebRTC.WebRTCSDPType.ANSWER, message
        )
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        emit(
            "answered",
            resource_url=self.resource_url,
            video_codec="h264" if "H264/90000" in answer else "other",
        )
        GLib.timeout_add(int(self.seconds * 1000), self.stop)
        return False

    # -- state, end -------------------------------------------------------------------------

    def on_connection_state(self, _element: Gst.Element, _spec: object) -> None:
        state = self.webrtc.get_property("connection-state").value_nick
        self.states.append(state)
        emit("state", state=state)
        if state in ("failed", "closed"):
            GLib.idle_add(self.stop)

    def progress(self) -> bool:
        emit("progress", video_buffers=self.video_buffers, states=self.states[-1:])
        return True

    def on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        self.fail(f"{error.message} ({debug})")

    def fail(self, error: str) -> bool:
        self.error = self.error or error
        GLib.idle_add(self.stop)
        return False

    def stop(self) -> bool:
        if not self.loop.is_running():
            return False
        if self.resource_url:
            request = urllib.request.Request(
                self.resource_url, headers=self.headers(), method="DELETE"
            )
            try:
                with urllib.request.urlopen(request, timeout=8) as response:
                    self.delete_status = response.status
            except urllib.error.HTTPError as exc:
                self.delete_status = exc.code
            except OSError as exc:
                self.error = self.error or f"DELETE failed: {exc}"
            self.resource_url = ""
        self.loop.quit()
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--seconds", type=float, default=45.0)
    args = parser.parse_args()
    Gst.init(None)
    return WhipPublisher(args.url, args.token, args.seconds).run()


if __name__ == "__main__":
    sys.exit(main())
