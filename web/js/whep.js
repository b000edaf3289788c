// WHEP playback (POST /whep/{stream_id}, application/sdp offer -> 201 answer + Location).
//
// The player keeps trying: before the host goes live, after a network drop, or when the
// session fails it posts a new offer with capped backoff. 'state' events say 'connecting'
// | 'playing' | 'waiting' (no stream to play yet) | 'reconnecting' | 'stopped'.
//
// It gives up, stops and fires 'fallback' (detail 'full' or 'unreachable') when the server
// refuses the session (429 stream_full: the stream or the node has as many WebRTC viewers as
// it takes) or when a session it was given does not connect within CONNECT_TIMEOUT_MS (UDP
// blocked, ICE failed): the page then plays LL-HLS instead.

const CONNECT_TIMEOUT_MS = 5000;

import { iceServersFrom, waitForIceGathering } from './whip.js';

export class WhepPlayer extends EventTarget {
  constructor(video, streamId, { token = null } = {}) {
    super();
    this.video = video;
    this.endpoint = `/whep/${encodeURIComponent(streamId)}`;
    this.token = token;
    this.pc = null;
    this.location = null;
    this.state = 'idle';
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
    this.stallTimer = null;
    this.connectTimer = null;
    this.onOnline = () => { if (this.state !== 'playing') this.retry(0); };
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    this.connect();
    return this;
  }

  async stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.retryTimer);
    await this.teardown();
    this.setState('stopped');
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  async teardown() {
    clearTimeout(this.stallTimer);
    clearTimeout(this.connectTimer);
    const pc = this.pc;
    const location = this.location;
    this.pc = null;
    this.location = null;
    if (pc) pc.close();
    if (location) {
      fetch(location, { method: 'DELETE', headers: this.headers() }).catch(() => {});
    }
  }

  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : extra;
  }

  async connect() {
    if (this.stopped) return;
    await this.teardown();
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const media = new MediaStream();
    pc.addEventListener('track', (event) => {
      media.addTrack(event.track);
      if (this.video.srcObject !== media) this.video.srcObject = media;
      this.video.play().catch(() => {});
    });
    pc.addEventListener('connectionstatechange', () => {
      if (this.pc !== pc) return;
      const state = pc.connectionState;
      if (state === 'connected') {
        clearTimeout(this.stallTimer);
        clearTimeout(this.connectTimer);
        this.attempt = 0;
        this.setState('playing');
      } else if (state === 'failed' && this.state !== 'playing') {
        this.giveUp('unreachable');
      } else if (state === 'failed' || state === 'closed') {
        this.retry();
      } else if (state === 'disconnected') {
        clearTimeout(this.stallTimer);
        this.stallTimer = setTimeout(() => { if (this.pc === pc && pc.connectionState !== 'connected') this.retry(0); }, 3000);
      }
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc, 2000);
      const response = await fetch(this.endpoint, {
        method: 'POST',
        headers: this.headers({ 'Content-Type': 'application/sdp' }),
        body: pc.localDescription.sdp,
      });
      if (this.pc !== pc) return;
      if (response.status === 429) {
        this.giveUp('full');
        return;
      }
      if (response.status !== 201) {
        // 404/409: nothing to play yet (scheduled or ended); anything else: try later.
        this.setState(response.status === 404 || response.status === 409 ? 'waiting' : 'reconnecting');
        this.retry();
        return;
      }
      this.location = new URL(response.headers.get('Location'), location.href).toString();
      const iceServers = iceServersFrom(response.headers.get('Link'));
      if (iceServers.length) pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
      await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
      this.connectTimer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState !== 'connected') this.giveUp('unreachable');
      }, CONNECT_TIMEOUT_MS);
    } catch {
      if (this.pc === pc) this.retry();
    }
  }

  async giveUp(reason) {
    if (this.stopped) return;
    await this.stop();
    this.dispatchEvent(new CustomEvent('fallback', { detail: reason }));
  }

  retry(delay) {
    if (this.stopped) return;
    const wait = delay ?? Math.min(8000, 750 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    if (this.state === 'playing') this.setState('reconnecting');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  // Decoded frames so far (what tests and the stall detector look at).
  decodedFrames() {
    const quality = this.video.getVideoPlaybackQuality ? this.video.getVideoPlaybackQuality() : null;
    return quality ? quality.totalVideoFrames : 0;
  }
}
