"""Reading offers and trickle fragments, and choosing codecs, before any peer is built.

An offer is checked here once: it must parse, carry at least one audio or video
section, offer ICE credentials, a DTLS fingerprint and RTCP multiplexing (what aiortc
would otherwise refuse with a bare ``ValueError``), and at most one section per kind.
What codecs the relay can use for it is worked out with aiortc's own matching rules,
so what is accepted here is what aiortc will negotiate.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCIceCandidate, RTCRtpSender
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription, candidate_from_sdp

from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, Unprocessable

__all__ = [
    "AUDIO_CODEC",
    "Offer",
    "TrickleFragment",
    "codec_preferences",
    "family_of",
    "mime_of",
    "parse_offer",
    "parse_trickle",
]

AUDIO_CODEC = "opus"
_FAMILY_BY_MIME = {"video/h264": "h264", "video/vp8": "vp8", "audio/opus": "opus"}
_MIME_BY_FAMILY = {family: mime for mime, family in _FAMILY_BY_MIME.items()}


@dataclass(frozen=True, slots=True)
class Offer:
    sdp: str
    # kind -> codec families (h264, vp8, opus) aiortc can negotiate for that section
    codecs: dict[str, tuple[str, ...]]
    # kind -> direction as the offerer states it
    directions: dict[str, str]
    ice_ufrag: str

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.codecs)


def parse_offer(text: str) -> Offer:
    """Validate an SDP offer: 400 ``malformed_sdp``, 422 ``no_media``/``duplicate_media``."""
    if not text.startswith("v=0"):
        raise BadRequest(
            "body is not an SDP offer (it must start with v=0)", code=ErrorCode.MALFORMED_SDP
        )
    try:
        description = SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises whatever the line makes it raise
        raise BadRequest(f"SDP does not parse: {exc}", code=ErrorCode.MALFORMED_SDP) from None
    codecs: dict[str, tuple[str, ...]] = {}
    directions: dict[str, str] = {}
    ufrag = ""
    for media in description.media:
        # aiortc refuses any section without ICE credentials, data channels included
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise BadRequest(
                f"{media.kind} section lacks ice-ufrag/ice-pwd", code=ErrorCode.MALFORMED_SDP
            )
        if media.kind not in ("audio", "video"):
            continue
        if media.kind in codecs:
            raise Unprocessable(
                f"the offer has more than one {media.kind} section; send one of each at most",
                code=ErrorCode.DUPLICATE_MEDIA,
            )
        if media.dtls is None or not media.dtls.fingerprints:
            raise BadRequest(
                f"{media.kind} section lacks a DTLS fingerprint or a=setup",
                code=ErrorCode.MALFORMED_SDP,
            )
        if not media.rtp.muxId:
            raise BadRequest(f"{media.kind} section lacks a=mid", code=ErrorCode.MALFORMED_SDP)
        if not media.rtcp_mux:
            raise BadRequest(
                f"{media.kind} section lacks a=rtcp-mux (WebRTC requires it)",
                code=ErrorCode.MALFORMED_SDP,
            )
        ufrag = ufrag or media.ice.usernameFragment
        common = find_common_codecs(CODECS[media.kind], media.rtp.codecs)
        families: list[str] = []
        for codec in common:
            family = _FAMILY_BY_MIME.get(codec.mimeType.lower())
            if family is not None and family not in families:
                families.append(family)
        codecs[media.kind] = tuple(families)
        directions[media.kind] = media.direction or "sendrecv"
    if not codecs:
        raise Unprocessable("the offer has no audio or video section", code=ErrorCode.NO_MEDIA)
    return Offer(sdp=text, codecs=codecs, directions=directions, ice_ufrag=ufrag)


def codec_preferences(kind: str, *families: str) -> list[RTCRtpCodecCapability]:
    """Capabilities that make aiortc negotiate only ``families``, in that order (plus
    RTX for video): the first one the offer has is what a sender sends first."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [
        c for family in families for c in capabilities if c.mimeType.lower() == mime_of(family)
    ]
    chosen += [c for c in capabilities if c.mimeType.lower() == f"{kind}/rtx"]
    return chosen


def mime_of(family: str) -> str:
    return _MIME_BY_FAMILY[family]


def family_of(mime_type: str) -> str | None:
    return _FAMILY_BY_MIME.get(mime_type.lower())


@dataclass(frozen=True, slots=True)
class TrickleFragment:
    """An ``application/trickle-ice-sdpfrag`` body (RFC 8840)."""

    ice_ufrag: str
    ice_pwd: str
    # (mid, the candidate parsed)
    candidates: tuple[tuple[str, RTCIceCandidate], ...]
    end_of_candidates: bool


def parse_trickle(text: str) -> TrickleFragment:
    ufrag = pwd = ""
    mid = ""
    candidates: list[tuple[str, RTCIceCandidate]] = []
    end = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            pwd = line.split(":", 1)[1]
        elif line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            value = line[len("a=candidate:") :]
            try:
                # aioice asserts, rather than raises ValueError, on too few fields
                candidate = candidate_from_sdp(value)
            except (ValueError, IndexError, AssertionError):
                raise BadRequest(
                    f"bad candidate {value[:80]!r}", code=ErrorCode.MALFORMED_SDP
                ) from None
            candidates.append((mid, candidate))
        elif line == "a=end-of-candidates":
            end = True
        elif line.startswith(("m=", "a=", "c=")):
            continue
        else:
            raise BadRequest(
                f"not an SDP fragment line: {line[:80]!r}", code=ErrorCode.MALFORMED_SDP
            )
    return TrickleFragment(ufrag, pwd, tuple(candidates), end)
