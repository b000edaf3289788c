// LL-HLS playback (GET /hls/{stream_id}/index.m3u8), the watch page's fallback when WebRTC
// is refused or cannot connect, or when the page is opened with ?hls=1.
//
// index.m3u8 is the multivariant playlist: it names the current run's media playlists, a
// video rendition and (when the stream has audio) an audio rendition, one CMAF track each;
// hls.js plays both in sync. A run's media playlists end (EXT-X-ENDLIST) when the stream
// ends or goes on in a new run (a returning publisher brought audio to a video-only
// stream): once what is buffered has played, the player reads index.m3u8 again, and plays
// the new run it names, or waits while it still names the ended one.
//
// hls.js (vendored, loaded only when this player starts) plays wherever Media Source
// Extensions can take the stream's H.264 + AAC, with lowLatencyMode for blocking playlist
// reload and parts; the browser's own HLS plays where there is no MSE (iOS Safari before
// 17.1). hls.js is preferred even where the browser also answers canPlayType for HLS (Safari,
// recent Chromium): one player, the one the suite tests, with the same latency everywhere.
//
// A private stream (`signed: true`) plays through a signed, expiring playback URL
// (GET /api/streams/{id}/playback) that a CDN can cache, for either player; past its expiry
// the playlist is 403, and the retry asks for a new one.
//
// Same face as WhepPlayer: start(), stop(), a `token`, decodedFrames(), and 'state' events
// 'connecting' | 'playing' | 'waiting' (no playlist yet: the stream is not live) |
// 'reconnecting' | 'stopped'.

const HLS_JS = '../vendor/hls.js/hls.min.mjs';
const MP4_CODECS = 'video/mp4; codecs="avc1.42e01f,mp4a.40.2"';

function mseCanPlay() {
  const source = window.ManagedMediaSource || window.MediaSource;
  return Boolean(source && source.isTypeSupported(MP4_CODECS));
}

export class HlsPlayer extends EventTarget {
  constructor(video, streamId, { token = null, signed = false } = {}) {
    super();
    this.video = video;
    this.streamId = streamId;
    this.signed = signed;
    this.url = new URL(`/hls/${encodeURIComponent(streamId)}/index.m3u8`, location.href).toString();
    this.token = token;
    this.hls = null;
    this.state = 'idle';
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
    this.engine = mseCanPlay() ? 'hls.js' : video.canPlayType('application/vnd.apple.mpegurl') ? 'native' : 'none';
    this.onPlaying = () => { this.attempt = 0; this.setState('playing'); };
    this.onNativeError = () => this.retry();
    this.endedRun = null; // the media playlist URL of the run that ended, once one has
    this.onEnded = () => { this.endedRun = this.endedRun || this.playing; this.connect(); };
    this.endTimer = null;
    this.playing = null; // the video media playlist URL being played
  }

  start() {
    this.stopped = false;
    this.video.srcObject = null;
    this.video.addEventListener('playing', this.onPlaying);
    this.video.addEventListener('ended', this.onEnded);
    this.connect();
    return this;
  }

  async stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.endTimer);
    this.video.removeEventListener('playing', this.onPlaying);
    this.video.removeEventListener('ended', this.onEnded);
    this.teardown();
    this.setState('stopped');
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  teardown() {
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    this.video.removeEventListener('error', this.onNativeError);
  }

  async connect() {
    if (this.stopped) return;
    clearTimeout(this.endTimer);
    this.teardown();
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    // Before the stream is live there is no playlist: wait here rather than in the player.
    let response;
    try {
      if (this.signed) await this.sign();
      response = await fetch(this.url, { headers: this.signed ? {} : this.headers() });
    } catch {
      this.retry();
      return;
    }
    if (this.stopped) return;
    if (response.status !== 200) {
      this.setState(response.status === 404 ? 'waiting' : 'reconnecting');
      this.retry();
      return;
    }
    // The video rendition the multivariant names: the run that ended means no new one yet.
    let text = '';
    try { text = await response.text(); } catch { /* retried below */ }
    if (this.stopped) return;
    const lines = text.split('\n');
    const streamInf = lines.findIndex((line) => line.startsWith('#EXT-X-STREAM-INF:'));
    if (streamInf < 0 || !lines[streamInf + 1]) {
      this.retry();
      return;
    }
    this.playing = new URL(lines[streamInf + 1].trim(), this.url).toString();
    if (this.playing === this.endedRun) {
      this.setState('waiting');
      this.retry();
      return;
    }
    if (this.engine === 'hls.js') await this.playWithHlsJs();
    else if (this.engine === 'native') this.playNatively();
    else this.setState('waiting');
  }

  async sign() {
    const response = await fetch(`/api/streams/${encodeURIComponent(this.streamId)}/playback`, { headers: this.headers() });
    if (!response.ok) throw new Error(`playback URL: ${response.status}`);
    this.url = new URL((await response.json()).url, location.href).toString();
  }

  async playWithHlsJs() {
    const { default: Hls } = await import(HLS_JS);
    if (this.stopped) return;
    // A signed URL needs no token, and a request without Authorization is one a CDN caches.
    const token = this.signed ? null : this.token;
    // No worker: the stream is already fMP4, so there is nothing to transmux off the page.
    // Latency: hls.js aims at the playlist's PART-HOLD-BACK behind the live edge, but by
    // default never plays faster than 1x, so wherever playback starts (up to a segment
    // early, from its keyframe) or falls back to after a stall is where it stays: seconds
    // more than the target. Up to 1.5x (pitch kept), it catches up to the target and
    // stays there.
    const hls = new Hls({
      lowLatencyMode: true,
      maxLiveSyncPlaybackRate: 1.5,
      enableWorker: false,
      xhrSetup: (xhr) => { if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`); },
    });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => this.video.play().catch(() => {}));
    // The run's playlists ended: what is buffered plays out ('ended'), then index.m3u8 again;
    // should the end not come (a stall on the way), index.m3u8 all the same a little later.
    hls.on(Hls.Events.LEVEL_UPDATED, (_event, data) => {
      if (this.hls !== hls || data.details.live || this.endedRun === this.playing) return;
      this.endedRun = this.playing;
      const { buffered, currentTime } = this.video;
      const left = buffered.length ? buffered.end(buffered.length - 1) - currentTime : 0;
      clearTimeout(this.endTimer);
      this.endTimer = setTimeout(() => { if (this.hls === hls) this.connect(); }, (Math.max(0, left) + 3) * 1000);
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (this.hls !== hls || !data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else this.retry();
    });
    hls.loadSource(this.url);
    hls.attachMedia(this.video);
  }

  playNatively() {
    // The browser's own player cannot send a header: a private stream plays signed.
    this.video.addEventListener('error', this.onNativeError);
    this.video.src = this.url;
    this.video.play().catch(() => {});
  }

  retry() {
    if (this.stopped) return;
    const wait = Math.min(8000, 750 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    if (this.state === 'playing') this.setState('reconnecting');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  // The program date time (Unix ms) of the picture on screen, null before one plays: where
  // on the stream's timeline this viewer is, whatever its delay (hls.js reads it from the
  // playlist's EXT-X-PROGRAM-DATE-TIME; the browser's own player from its start date).
  playingDateMs() {
    if (this.hls) {
      const date = this.hls.playingDate;
      return date ? date.getTime() : null;
    }
    if (this.engine === 'native' && this.video.getStartDate) {
      const start = this.video.getStartDate().getTime();
      return Number.isNaN(start) ? null : start + this.video.currentTime * 1000;
    }
    return null;
  }

  // Decoded frames so far (what tests and the stall detector look at).
  decodedFrames() {
    const quality = this.video.getVideoPlaybackQuality ? this.video.getVideoPlaybackQuality() : null;
    return quality ? quality.totalVideoFrames : 0;
  }
}
