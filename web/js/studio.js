// The seller's page: pick camera and microphone, preview, go live over WHIP, watch the chat.

import { api } from './api.js';
import { chatter, currentSession, signInProblem, hadExpiredSession, showLiveState, signIn } from './auth.js';
import { ChatView } from './chat.js';
import { LiveEvents } from './events.js';
import { WhipPublisher } from './whip.js';
import { h, $, clear, setText, setViewers, toast, friendlyError } from './ui.js';

const streamId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
let session = currentSession('host');
const resume = takeResumeFlag(); // arrived from another node's studio after pressing Go live
const preview = $('#preview');
let media = null;
let stream = null;
let publisher = null;
let statsTimer = null;

const STATE_LABELS = {
  offline: 'Offline', connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…',
  stopped: 'Stopped', error: 'Error', ended: 'Ended', moved: 'Moving…',
};

function showState(name) {
  const pill = $('#state-pill');
  pill.dataset.state = name;
  setText(pill, STATE_LABELS[name] || name);
  setText('#stat-connection', STATE_LABELS[name] || name);
  $('#preview-live').hidden = name !== 'live';
  const ended = stream && stream.state === 'ended';
  $('#go-live').hidden = ['connecting', 'live', 'reconnecting', 'moved'].includes(name) || ended;
  $('#end-stream').hidden = !['connecting', 'live', 'reconnecting'].includes(name) && !(stream && stream.state === 'live');
  $('#go-live').disabled = !media || ended;
  document.body.dataset.publish = name;
}

async function openMedia(videoId, audioId) {
  const constraints = {
    video: videoId ? { deviceId: { exact: videoId }, width: { ideal: 1280 }, height: { ideal: 720 } } : { width: { ideal: 1280 }, height: { ideal: 720 } },
    audio: audioId ? { deviceId: { exact: audioId } } : true,
  };
  const next = await navigator.mediaDevices.getUserMedia(constraints);
  if (publisher && media) {
    await publisher.replaceTrack('video', next.getVideoTracks()[0]);
    await publisher.replaceTrack('audio', next.getAudioTracks()[0]);
  }
  if (media) for (const track of media.getTracks()) track.stop();
  media = next;
  if (publisher) publisher.media = media;
  preview.srcObject = media;
  $('#preview-message').hidden = true;
  await fillDevices();
}

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const current = {
    videoinput: media && media.getVideoTracks()[0] && media.getVideoTracks()[0].getSettings().deviceId,
    audioinput: media && media.getAudioTracks()[0] && media.getAudioTracks()[0].getSettings().deviceId,
  };
  for (const [kind, select] of [['videoinput', $('#camera')], ['audioinput', $('#microphone')]]) {
    clear(select);
    let n = 0;
    for (const device of devices.filter((d) => d.kind === kind)) {
      n += 1;
      const label = device.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${n}`;
      select.append(h('option', { value: device.deviceId, selected: device.deviceId === current[kind] }, label));
    }
  }
}

$('#camera').addEventListener('change', (event) => openMedia(event.target.value, $('#microphone').value).catch(mediaError));
$('#microphone').addEventListener('change', (event) => openMedia($('#camera').value, event.target.value).catch(mediaError));

function mediaError(err) {
  const text = err && err.name === 'NotAllowedError'
    ? 'Camera and microphone are blocked. Allow them in the browser to go live.'
    : `Cannot open the camera: ${err && err.message ? err.message : err}`;
  setText('#preview-text', text);
  $('#preview-message').hidden = false;
}

// --- publishing --------------------------------------------------------------------------------

$('#go-live').addEventListener('click', async () => {
  if (!media) return;
  publisher = new WhipPublisher(streamId, session.token);
  publisher.addEventListener('state', async (event) => {
    showState(event.detail);
    if (event.detail === 'error') toast(publisher.lastError ? publisher.lastError.message : 'Could not go live.', 'error');
    if (event.detail === 'moved') await moveToOrigin();
    // Publishing over WHIP made the scheduled stream live on the server: read that back.
    if (event.detail === 'live' && stream && stream.state === 'scheduled') {
      stream = await api.getStream(streamId, session.token).catch(() => stream);
    }
  });
  await publisher.start(media);
  window.addEventListener('pagehide', () => publisher && publisher.endOnUnload());
  clearInterval(statsTimer);
  statsTimer = setInterval(showStats, 1000);
});

// WHIP here answered 307: another node holds this stream's broadcast (the seller's previous
// session went through it and may come back). Broadcast through that node's studio instead.
async function moveToOrigin() {
  const status = await api.mediaStatus(streamId, session.token).catch(() => null);
  const origin = status && status.origin_url ? new URL(status.origin_url) : null;
  if (!origin || origin.origin === location.origin) {
    // No node holds it any more, or this one does now: publish here after a pause.
    publisher.stopped = false;
    publisher.retry();
    return;
  }
  const target = new URL(`${origin.pathname.replace(/\/$/, '')}/studio/${encodeURIComponent(streamId)}`, origin);
  target.hash = new URLSearchParams({ token: session.token, resume: 'live' }).toString();
  toast(`This stream is broadcast through ${origin.host}. Opening its studio there…`, 'ok');
  setTimeout(() => location.assign(target.toString()), 1200);
}

function takeResumeFlag() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get('resume') !== 'live') return false;
  params.delete('resume');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  return true;
}

// Live, but no new video frame encoded for this long: the camera's picture is not going out
// (a format no encoder takes, a frozen device). The seller is told, and the warning goes as
// soon as frames flow again.
const VIDEO_STALL_MS = 3000;
let lastEncoded = { frames: 0, at: 0 };

function watchVideoOut(stats) {
  if (stats.framesEncoded > lastEncoded.frames || publisher.state !== 'live' || !lastEncoded.at) {
    lastEncoded = { frames: stats.framesEncoded, at: stats.at };
  }
  const stalled = publisher.state === 'live' && stats.at - lastEncoded.at >= VIDEO_STALL_MS;
  $('#video-warning').hidden = !stalled;
  document.body.dataset.videoOut = stalled ? 'stalled' : 'ok';
}

async function showStats() {
  if (!publisher) return;
  const stats = await publisher.stats().catch(() => null);
  if (!stats) return;
  watchVideoOut(stats);
  if (stats.bitrateKbps !== null) setText('#stat-bitrate', stats.bitrateKbps >= 1000 ? `${(stats.bitrateKbps / 1000).toFixed(1)} Mbit/s` : `${stats.bitrateKbps} kbit/s`);
  if (stats.width) setText('#stat-resolution', `${stats.width}×${stats.height}`);
  if (stats.fps) setText('#stat-fps', `${Math.round(stats.fps)} fps`);
}

$('#end-stream').addEventListener('click', async () => {
  if (!window.confirm('End the stream for everyone? This cannot be undone.')) return;
  if (publisher) await publisher.stop();
  clearInterval(statsTimer);
  try {
    stream = await api.endStream(streamId, session.token);
  } catch (err) {
    if (err.code !== 'illegal_state') toast(friendlyError(err), 'error');
  }
  showState('ended');
  toast('The stream has ended.', 'ok');
});

// --- chat --------------------------------------------------------------------------------------

const chat = new ChatView($('#chat'));
let live = null;

function startEvents() {
  chat.self = chatter(session);
  live = new LiveEvents(streamId, { token: session.token });
  showLiveState(live, 'host', (signedIn) => { session = signedIn; chat.self = chatter(session); });
  /** @param {CustomEvent<import('./wire.js').Hello>} event */
  live.addEventListener('hello', (event) => {
    if (!event.detail.recovered) chat.reset(event.detail.chat);
    setViewers(event.detail.viewers);
  });
  chat.follow(live, $('#chat-input'));
  live.addEventListener('viewers', (event) => setViewers(event.detail.count));
  live.addEventListener('error', (event) => toast(friendlyError(event.detail), 'error'));
  live.start();
}

$('#chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('#chat-input').value.trim();
  if (!text) return;
  if (live && live.sendChat(text)) $('#chat-input').value = '';
  else toast('Chat is not connected. Reload the page to chat.', 'error');
});

// --- start -------------------------------------------------------------------------------------

async function main() {
  $('#watch-link').href = `/watch/${encodeURIComponent(streamId)}`;
  $('#control-link').href = `/control/${encodeURIComponent(streamId)}`;
  if (!session) session = await signIn('host', hadExpiredSession() ? signInProblem('host') : 'The studio needs the host token printed by `livecast demo` or `livecast token --role seller`.');
  if (!session) {
    setText('#preview-text', 'Sign in with a host token to go live.');
    return;
  }
  try {
    stream = await api.getStream(streamId, session.token);
    setText('#title', stream.title);
    document.title = `${stream.title} · Studio`;
  } catch (err) {
    setText('#preview-text', err.status === 404 ? 'This stream does not exist.' : friendlyError(err));
    return;
  }
  showState(stream.state === 'ended' ? 'ended' : 'offline');
  startEvents();
  if (stream.state === 'ended') {
    setText('#preview-text', 'This stream has ended.');
    return;
  }
  try {
    await openMedia();
  } catch (err) {
    mediaError(err);
  }
  showState(stream.state === 'ended' ? 'ended' : 'offline');
  document.body.dataset.ready = 'true';
  if (resume && media) $('#go-live').click();
}

main();
