// A WHIP publisher built the way OBS Studio's WHIP output (plugins/obs-webrtc/whip-output.cpp)
// is: libdatachannel through node-datachannel, an Opus track (mid 0, payload type 111) and an
// H.264 track (mid 1, payload type 96) with consecutive SSRCs, each behind a packetizer, an RTCP
// sender report reporter and a NACK responder (4000 packets for video), the offer POSTed with
// `Authorization: Bearer`, the answer taken from the 201, the session URL from `Location`
// (relative ones resolved against the endpoint), encoded frames sent with RTP timestamps advanced
// by their DTS difference, frames dropped while the track is not open, and at the end the peer
// connection closed and the session URL DELETEd.
//
// OBS 31 and newer offer no ICE candidates (libdatachannel's disableAutoGathering) and gather
// after the answer; node-datachannel does not expose gatherLocalCandidates(), so
// `--candidates after-answer` (the default) sends the offer with its candidates removed, which
// puts the same offer on the wire. `--candidates in-offer` sends them, as OBS 30 did.
//
// Media comes from a file of records, each: kind (1 byte: 1 video, 2 audio), DTS in
// microseconds (8 bytes, big endian), length (4 bytes, big endian), then that many bytes of one
// encoded frame (H.264 Annex B access unit, or one Opus packet). Records are in DTS order. The
// file is played in real time, looped until --seconds have passed.
//
// Usage: node obs-whip-publish.mjs --url URL --token TOKEN --media FILE --seconds N
//        [--candidates after-answer|in-offer]
// Prints one JSON object per line on stdout: {"event": "answered", ...}, {"event": "state",
// "state": ...}, and at the end {"event": "done", ...}. Exits 0 when the session connected,
// stayed up for the whole time and its DELETE answered 200.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import nodeDataChannel from 'node-datachannel';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string', default: '' },
    media: { type: 'string' },
    seconds: { type: 'string', default: '45' },
    candidates: { type: 'string', default: 'after-answer' },
  },
});
if (!args.url || !args.media) {
  console.error('usage: obs-whip-publish.mjs --url URL --token TOKEN --media FILE --seconds N');
  process.exit(2);
}

const AUDIO_MID = '0';
const AUDIO_PT = 111;
const VIDEO_MID = '1';
const VIDEO_PT = 96;
const MAX_VIDEO_FRAGMENT_SIZE = 1200;
const VIDEO_NACK_BUFFER_SIZE = 4000;
const ID_CHARS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function randomId(length) {
  let id = '';
  for (let i = 0; i < length; i += 1) id += ID_CHARS[Math.floor(Math.random() * ID_CHARS.length)];
  return id;
}

function readRecords(path) {
  const data = readFileSync(path);
  const records = [];
  let offset = 0;
  while (offset + 13 <= data.length) {
    const kind = data.readUInt8(offset);
    const dtsUs = Number(data.readBigUInt64BE(offset + 1));
    const length = data.readUInt32BE(offset + 9);
    const payload = data.subarray(offset + 13, offset + 13 + length);
    if (payload.length !== length) throw new Error('truncated media file');
    records.push({ kind: kind === 1 ? 'video' : 'audio', dtsUs, payload });
    offset += 13 + length;
  }
  if (records.length === 0) throw new Error('empty media file');
  return records;
}

const records = readRecords(args.media);
// the clip lasts one frame period past its last frame of each kind, so that the next loop
// continues the timeline
let clipUs = 0;
for (const kind of ['video', 'audio']) {
  const dts = records.filter((record) => record.kind === kind).map((record) => record.dtsUs);
  if (dts.length === 0) continue;
  const period = dts.length > 1 ? (dts[dts.length - 1] - dts[0]) / (dts.length - 1) : 33333;
  clipUs = Math.max(clipUs, dts[dts.length - 1] + period);
}

// -- Setup(): the peer connection and its two tracks --------------------------------------------

const pc = new nodeDataChannel.PeerConnection('obs-whip', { iceServers: [] });
let connected = false;
let failedState = null;
pc.onStateChange((state) => {
  emit('state', { state });
  if (state === 'connected') connected = true;
  if (state === 'disconnected' || state === 'failed') failedState = failedState ?? state;
});

const baseSsrc = Math.floor(Math.random() * 0xfffffff0) >>> 0;
const mediaStreamId = randomId(16);
const cname = randomId(16);

function configureTrack(kind) {
  const audio = kind === 'audio';
  const ssrc = audio ? baseSsrc : baseSsrc + 1;
  const description = audio
    ? new nodeDataChannel.Audio(AUDIO_MID, 'SendOnly')
    : new nodeDataChannel.Video(VIDEO_MID, 'SendOnly');
  if (audio) description.addOpusCodec(AUDIO_PT);
  else description.addH264Codec(VIDEO_PT);
  description.addSSRC(ssrc, cname, mediaStreamId, `${mediaStreamId}-${kind}`);
  const track = pc.addTrack(description);
  const config = new nodeDataChannel.RtpPacketizationConfig(
    ssrc,
    cname,
    audio ? AUDIO_PT : VIDEO_PT,
    audio ? 48000 : 90000,
  );
  // node-datachannel has no Opus packetizer class; libdatachannel's OpusRtpPacketizer is its
  // plain RtpPacketizer (one packet per frame), which is what this is.
  const packetizer = audio
    ? new nodeDataChannel.RtpPacketizer(config)
    : new nodeDataChannel.H264RtpPacketizer('StartSequence', config, MAX_VIDEO_FRAGMENT_SIZE);
  const reporter = new nodeDataChannel.RtcpSrReporter(config);
  packetizer.addToChain(reporter);
  packetizer.addToChain(
    audio ? new nodeDataChannel.RtcpNackResponder() : new nodeDataChannel.RtcpNackResponder(VIDEO_NACK_BUFFER_SIZE),
  );
  track.setMediaHandler(packetizer);
  return { track, config, lastDtsUs: 0, sent: 0 };
}

const tracks = { audio: configureTrack('audio'), video: configureTrack('video') };

const offer = await new Promise((resolve) => {
  pc.onLocalDescription((sdp) => resolve(sdp));
  pc.setLocalDescription();
});
let offerSdp = offer;
if (args.candidates === 'in-offer') {
  await new Promise((resolve) => {
    if (pc.gatheringState() === 'complete') resolve();
    else pc.onGatheringStateChange((state) => state === 'complete' && resolve());
  });
  offerSdp = pc.localDescription().sdp;
} else {
  offerSdp = offer
    .split(/\r?\n/)
    .filter((line) => !line.startsWith('a=candidate:') && line !== 'a=end-of-candidates')
    .join('\r\n');
}

// -- Connect(): POST the offer, read the answer and the session URL -----------------------------

function authHeaders() {
  return args.token ? { Authorization: `Bearer ${args.token}` } : {};
}

const response = await fetch(args.url, {
  method: 'POST',
  headers: { 'Content-Type': 'application/sdp', 'User-Agent': 'Mozilla/5.0 (OBS-Studio interop)', ...authHeaders() },
  body: offerSdp,
  redirect: 'follow',
  signal: AbortSignal.timeout(8000),
});
const body = await response.text();
if (response.status !== 201 || !body) {
  emit('done', { ok: false, error: `WHIP answered ${response.status}: ${body.slice(0, 300)}` });
  pc.close();
  process.exit(1);
}
const location = response.headers.get('location');
if (!location) {
  emit('done', { ok: false, error: 'WHIP server did not provide a resource URL via the Location header' });
  pc.close();
  process.exit(1);
}
const resourceUrl = new URL(location, response.url).toString();
const answer = body.slice(body.indexOf('v=0'));
pc.setRemoteDescription(answer, 'answer');
emit('answered', { resource_url: resourceUrl, video_codec: /H264\/90000/.test(answer) ? 'h264' : 'other' });

// -- Data(): send encoded frames in real time ---------------------------------------------------

function send(record, dtsUs) {
  const entry = tracks[record.kind];
  if (!entry.track.isOpen()) return;
  const elapsedUs = dtsUs - entry.lastDtsUs;
  entry.lastDtsUs = dtsUs;
  const clockRate = entry.config.clockRate;
  const elapsed = Math.round((elapsedUs / 1e6) * clockRate);
  entry.config.timestamp = (entry.config.timestamp + elapsed) >>> 0;
  try {
    entry.track.sendMessageBinary(record.payload);
    entry.sent += 1;
  } catch (error) {
    emit('send_error', { kind: record.kind, error: String(error) });
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const durationUs = Number(args.seconds) * 1e6;
const startMs = performance.now();
let loop = 0;
let index = 0;
let lastProgressMs = startMs;
for (;;) {
  const record = records[index];
  const dtsUs = loop * clipUs + record.dtsUs;
  if (dtsUs >= durationUs || failedState) break;
  const waitMs = startMs + dtsUs / 1000 - performance.now();
  if (waitMs > 1) await sleep(waitMs);
  send(record, dtsUs);
  index += 1;
  if (index === records.length) {
    index = 0;
    loop += 1;
  }
  if (performance.now() - lastProgressMs >= 5000) {
    lastProgressMs = performance.now();
    emit('progress', { video_frames: tracks.video.sent, audio_frames: tracks.audio.sent, state: pc.state() });
  }
}

// -- Stop(): close the peer connection, then DELETE the session ---------------------------------

const stateAtEnd = pc.state();
pc.close();
let deleteStatus = 0;
try {
  const resp = await fetch(resourceUrl, {
    method: 'DELETE',
    headers: { 'User-Agent': 'Mozilla/5.0 (OBS-Studio interop)', ...authHeaders() },
    signal: AbortSignal.timeout(8000),
  });
  deleteStatus = resp.status;
} catch (error) {
  emit('delete_error', { error: String(error) });
}
const ok = connected && !failedState && stateAtEnd === 'connected' && deleteStatus === 200;
emit('done', {
  ok,
  connected,
  failed_state: failedState,
  state_at_end: stateAtEnd,
  delete_status: deleteStatus,
  video_frames: tracks.video.sent,
  audio_frames: tracks.audio.sent,
  seconds: (performance.now() - startMs) / 1000,
  library: nodeDataChannel.getLibraryVersion(),
});
nodeDataChannel.cleanup();
process.exit(ok ? 0 : 1);
