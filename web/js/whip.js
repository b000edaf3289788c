// WHIP publishing (POST /whip/{stream_id} with a host/seller Bearer token, RFC 9725).
//
// A WhipPublisher sends a MediaStream; if the connection fails it posts a new offer with
// the same tracks (the server keeps viewers connected across a publisher's return).
// 'state' events: 'connecting' | 'live' | 'reconnecting' | 'stopped' | 'error' (detail in
// .lastError). stats() reads the outgoing video bitrate, resolution, frame rate and frames
// encoded so far.

export function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener('icegatheringstatechange', check); clearTimeout(timer); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

// Link: <stun:stun.example.net>; rel="ice-server", <turn:...>; rel="ice-server"; username="u"; credential="p"
export function iceServersFrom(header) {
  if (!header) return [];
  const servers = [];
  for (const part of header.split(/,(?=\s*<)/)) {
    const match = /<([^>]+)>(.*)/.exec(part.trim());
    if (!match || !/rel="?ice-server"?/.test(match[2])) continue;
    const server = { urls: match[1] };
    const user = /username="([^"]*)"/.exec(match[2]);
    const credential = /credential="([^"]*)"/.exec(match[2]);
    if (user) server.username = user[1];
    if (credential) server.credential = credential[1];
    servers.push(server);
  }
  return servers;
}

export class WhipPublisher extends EventTarget {
  constructor(streamId, token) {
    super();
    this.endpoint = `/whip/${encodeURIComponent(streamId)}`;
    this.token = token;
    this.media = null;
    this.pc = null;
    this.location = null;
    this.state = 'idle';
    this.lastError = null;
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
    this.lastSample = null;
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  async start(media) {
    this.media = media;
    this.stopped = false;
    this.attempt = 0;
    return this.connect();
  }

  // Swap a track (camera or mic change) without renegotiating.
  async replaceTrack(kind, track) {
    if (!this.pc) return;
    const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === kind);
    if (sender) await sender.replaceTrack(track);
  }

  async connect() {
    await this.teardown(false);
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    const pc = new RTCPeerConnection();
    this.pc = pc;
    for (const track of this.media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [this.media] });
    pc.addEventListener('connectionstatechange', () => {
      if (this.pc !== pc) return;
      if (pc.connectionState === 'connected') {
        this.attempt = 0;
        this.setState('live');
      } else if (pc.connectionState === 'failed') {
        this.retry();
      } else if (pc.connectionState === 'disconnected') {
        setTimeout(() => { if (this.pc === pc && pc.connectionState === 'disconnected') this.retry(); }, 3000);
      }
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc, 2000);
      const response = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${this.token}` },
        body: pc.localDescription.sdp,
        // A node that does not hold the stream's broadcast answers 307 to the one that does
        // (RFC 9725 4.5). Following it would send the offer cross-origin without the token,
        // so the page is told instead ('moved') and opens the studio on that node.
        redirect: 'manual',
      });
      if (this.pc !== pc) return false;
      if (response.type === 'opaqueredirect') {
        await this.teardown(false);
        this.stopped = true;
        this.setState('moved');
        return false;
      }
      if (response.status !== 201) {
        let message = `The server refused to publish (${response.status}).`;
        let code = null;
        try {
          const error = (await response.json()).error;
          message = error.message;
          code = error.code;
        } catch { /* keep the status */ }
        this.lastError = { status: response.status, message };
        // publisher_active: most often our own previous session (a closed or crashed tab)
        // that the server has not yet seen go; keep trying while it times out.
        if (response.status >= 500 || code === 'publisher_active') {
          this.retry();
        } else {
          await this.teardown(false);
          this.stopped = true;
          this.setState('error');
        }
        return false;
      }
      this.location = new URL(response.headers.get('Location'), location.href).toString();
      const iceServers = iceServersFrom(response.headers.get('Link'));
      if (iceServers.length) pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
      await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
      return true;
    } catch (err) {
      this.lastError = { status: 0, message: String(err && err.message ? err.message : err) };
      if (this.pc === pc) this.retry();
      return false;
    }
  }

  retry() {
    if (this.stopped) return;
    const wait = Math.min(8000, 1000 * 2 ** this.attempt);
    this.attempt += 1;
    this.setState('reconnecting');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  async teardown(sendDelete) {
    const pc = this.pc;
    const location = this.location;
    this.pc = null;
    this.location = null;
    this.lastSample = null;
    if (pc) pc.close();
    if (location && sendDelete) {
      await fetch(location, { method: 'DELETE', headers: { Authorization: `Bearer ${this.token}` } }).catch(() => {});
    }
  }

  // For pagehide: end the session even as the page goes away, so a return is instant.
  endOnUnload() {
    if (this.location) {
      fetch(this.location, { method: 'DELETE', keepalive: true, headers: { Authorization: `Bearer ${this.token}` } }).catch(() => {});
    }
  }

  async stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.teardown(true);
    this.setState('stopped');
  }

  // {bitrateKbps, width, height, fps} of the outgoing video, or null.
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    let outbound = null;
    report.forEach((entry) => {
      if (entry.type === 'outbound-rtp' && entry.kind === 'video' && (!outbound || entry.bytesSent > outbound.bytesSent)) outbound = entry;
    });
    if (!outbound) return null;
    const sample = { bytes: outbound.bytesSent, at: outbound.timestamp };
    let bitrateKbps = null;
    if (this.lastSample && sample.at > this.lastSample.at) {
      bitrateKbps = Math.round(((sample.bytes - this.lastSample.bytes) * 8) / (sample.at - this.lastSample.at));
    }
    this.lastSample = sample;
    return {
      bitrateKbps, width: outbound.frameWidth || null, height: outbound.frameHeight || null,
      fps: outbound.framesPerSecond || null, framesEncoded: outbound.framesEncoded || 0, at: outbound.timestamp,
    };
  }
}
