// The live-events client every page uses: GET /ws/streams/{id}, subprotocol livecast.v1.json,
// the token as ?token=.
//
// Each server event is dispatched as a DOM event named by its type, with the typed object
// of web/js/wire.js as detail ('hello', 'chat.message', 'pin.set', ...). The last chat
// offset seen goes back as ?since= on reconnect, so the server replays exactly the chat
// that was missed (a hello with recovered: true), or sends a fresh snapshot.
//
// How a connection ends decides what happens next (livecast/chat/socket.py, the README's
// "Live events"):
//   * the token is refused: the upgrade answers 401 (a browser only sees the socket fail,
//     so the client asks the same URL over plain HTTP what it answers), the socket closes
//     with 1008, or an `error` says token_expired. Final: status 'refused', a 'stopped'
//     event with the reason; the page asks for a new token (setToken starts again).
//   * 1002, 1003, 1009: this client sent what the server cannot take. Final: 'failed'.
//   * 1000: the socket was closed on purpose (the server only echoes a close). Final: 'closed'.
//   * the stream does not exist (404 on the upgrade). Final: 'failed'.
//   * anything else (1001 shutdown, 1012 restart, 1013 too far behind, 1011, a network
//     drop): reconnect with capped, jittered backoff.
//
// Chat goes out with sendChat(text): the message is 'pending' until its chat.ack ('sent'),
// or 'failed' with the error that refused it. Pending messages are sent again on the next
// connection with the same client id, so the server never posts one twice.
// 'chat.outgoing' events carry each change of an OutgoingChat.

import { tokenExpired } from './auth.js';
import { EVENT_READERS, readMediaTime, toError } from './wire.js';

const SUBPROTOCOL = 'livecast.v1.json';
/**
 * Close codes after which reconnecting cannot help: the registry's codes with reconnect false
 * (livecast/error_codes.py CloseCode; tests/test_error_codes.py checks this table against it).
 * @type {Record<number, 'closed' | 'refused' | 'failed'>}
 */
const FINAL_CLOSES = { 1000: 'closed', 1002: 'failed', 1003: 'failed', 1008: 'refused', 1009: 'failed' };
const PING_EVERY_MS = 20000;
const SILENT_FOR_MS = 60000;
const MAX_BACKOFF_MS = 10000;

/**
 * @typedef {'connecting' | 'open' | 'reconnecting' | 'refused' | 'failed' | 'closed'} Status
 *
 * @typedef {object} OutgoingChat  a message this page sent
 * @property {string} clientId
 * @property {string} text
 * @property {'pending' | 'sent' | 'failed'} state
 * @property {string | null} offset                 its chat offset once sent
 * @property {import('./wire.js').LiveError | null} error  why it failed
 */

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

export class LiveEvents extends EventTarget {
  constructor(streamId, { token = null, source = null } = {}) {
    super();
    this.streamId = streamId;
    this.token = token;
    // where the page watches (`clip`), for the stats' views by source; the server counts
    // a socket to an ended stream as `replay` otherwise
    this.source = source;
    /** @type {string | null} */
    this.lastOffset = null;
    /** @type {Status} */
    this.status = 'closed';
    this.socket = null;
    this.attempt = 0;
    this.stopped = true;
    this.pingTimer = null;
    this.retryTimer = null;
    this.lastHeard = 0;
    /** @type {OutgoingChat[]} in the order sent; each leaves on its ack or refusal */
    this.outbox = [];
    /** @type {Map<OutgoingChat, WebSocket>} the socket each pending message last went out on */
    this.sentOn = new Map();
    this.onOnline = () => { if (this.status === 'reconnecting') this.reconnectNow(); };
    // The device lost its network: the socket is dead even if the browser has not noticed.
    this.onOffline = () => {
      if (this.stopped) return;
      this.dropSocket();
      clearTimeout(this.retryTimer);
      this.setStatus('reconnecting');
    };
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.connect();
    return this;
  }

  stop() {
    this.halt('closed', null);
  }

  // A new token (after a refusal, or a sign-in): connect again with it.
  setToken(token) {
    this.token = token;
    if (this.stopped) this.start();
    else this.reconnectNow();
  }

  url(scheme = location.protocol === 'https:' ? 'wss:' : 'ws:') {
    const params = new URLSearchParams();
    if (this.token) params.set('token', this.token);
    if (this.lastOffset !== null) params.set('since', this.lastOffset);
    if (this.source) params.set('source', this.source);
    const query = params.toString();
    return `${scheme}//${location.host}/ws/streams/${encodeURIComponent(this.streamId)}${query ? `?${query}` : ''}`;
  }

  connect() {
    if (this.stopped) return;
    if (this.token && tokenExpired(this.token)) {
      this.halt('refused', { code: 'token_expired', message: 'token has expired', retryAfterMs: null });
      return;
    }
    this.setStatus(this.attempt ? 'reconnecting' : 'connecting');
    const socket = new WebSocket(this.url(), SUBPROTOCOL);
    let opened = false;
    this.socket = socket;
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      opened = true;
      this.lastHeard = Date.now();
      clearInterval(this.pingTimer);
      // Ping so middleboxes do not idle the socket out; one that has said nothing for a
      // minute (not even to pings) is dead, so start again.
      this.pingTimer = setInterval(() => {
        if (Date.now() - this.lastHeard > SILENT_FOR_MS) this.reconnectNow();
        else this.sendFrame({ type: 'ping' });
      }, PING_EVERY_MS);
    });
    socket.addEventListener('message', (event) => { if (this.socket === socket) this.receive(event.data); });
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket) return;
      this.dropSocket();
      if (this.stopped) return;
      const final = FINAL_CLOSES[event.code];
      if (final === 'closed') {
        this.halt('closed', null);
      } else if (final) {
        const code = final === 'refused' ? 'token_refused' : 'client_error';
        this.halt(final, { code, message: event.reason || `closed with ${event.code}`, retryAfterMs: null });
      } else if (!opened) {
        this.askWhyRefused();
      } else {
        this.scheduleRetry();
      }
    });
  }

  // The upgrade failed, and a browser does not say why: ask the same URL over HTTP, which
  // answers what the upgrade did (401 for a refused token, 404 for no such stream).
  async askWhyRefused() {
    const token = this.token;
    let response = null;
    try {
      response = await fetch(this.url(location.protocol), { headers: { Accept: 'application/json' } });
    } catch { /* the network: retry */ }
    if (this.stopped || this.socket || token !== this.token) return;
    if (response && (response.status === 401 || response.status === 404)) {
      const body = await response.json().catch(() => null);
      const error = body && body.error ? toError(body.error) : { code: `http_${response.status}`, message: response.statusText, retryAfterMs: null };
      this.halt(response.status === 401 ? 'refused' : 'failed', error);
      return;
    }
    this.scheduleRetry();
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.dropSocket();
    this.connect();
  }

  dropSocket() {
    const socket = this.socket;
    this.socket = null;
    clearInterval(this.pingTimer);
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000);
  }

  scheduleRetry() {
    this.setStatus('reconnecting');
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.5 + Math.random());
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // Stop for good: 'closed' by the page, or 'refused' / 'failed' with the reason, told to
  // the page as a 'stopped' event. Messages still pending fail with that reason.
  halt(status, error) {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    clearTimeout(this.retryTimer);
    this.dropSocket();
    this.attempt = 0;
    this.setStatus(status);
    if (error) {
      for (const message of [...this.outbox]) this.settle(message, 'failed', { error });
      this.dispatchEvent(new CustomEvent('stopped', { detail: { status, error } }));
    }
  }

  setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this.dispatchEvent(new CustomEvent('status', { detail: status }));
  }

  receive(text) {
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    const read = EVENT_READERS[frame.type];
    if (!read) return;
    const detail = read(frame.data);
    // commerce events also say where on the video they happened (a detail's mediaTimeMs)
    if ('media_time_ms' in frame && detail && typeof detail === 'object') detail.mediaTimeMs = readMediaTime(frame);
    if (frame.offset) this.lastOffset = frame.offset;
    if (frame.type === 'hello') {
      this.lastOffset = detail.offset;
      this.attempt = 0;
      this.setStatus('open');
      for (const message of this.outbox) this.sendChatFrame(message);
    } else if (frame.type === 'chat.ack') {
      const message = this.outbox.find((m) => m.clientId === detail.clientId);
      if (message) this.settle(message, 'sent', { offset: detail.offset });
    } else if (frame.type === 'error') {
      // The server handles one frame at a time, so an error while a message is on its way
      // on this socket is that message's refusal.
      const message = this.outbox.find((m) => this.sentOn.get(m) === this.socket);
      if (message) this.settle(message, 'failed', { error: detail });
      if (detail.code === 'token_expired') {
        this.halt('refused', detail);
        return;
      }
      if (message) return;
    }
    this.dispatchEvent(new CustomEvent(frame.type, { detail }));
  }

  settle(message, state, { offset = null, error = null }) {
    this.outbox = this.outbox.filter((m) => m !== message);
    this.sentOn.delete(message);
    Object.assign(message, { state, offset, error });
    this.dispatchEvent(new CustomEvent('chat.outgoing', { detail: message }));
  }

  sendFrame(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  sendChatFrame(message) {
    if (this.status !== 'open') return;
    if (this.sendFrame({ type: 'chat.send', text: message.text, client_id: message.clientId })) {
      this.sentOn.set(message, this.socket);
    }
  }

  /**
   * Post a chat message: 'pending' now, sent as soon as the socket is open (again).
   * @returns {OutgoingChat | null} null when the client has stopped
   */
  sendChat(text) {
    if (this.stopped) return null;
    /** @type {OutgoingChat} */
    const message = { clientId: newClientId(), text, state: 'pending', offset: null, error: null };
    this.outbox.push(message);
    this.dispatchEvent(new CustomEvent('chat.outgoing', { detail: message }));
    this.sendChatFrame(message);
    return message;
  }

  // Like taps, counted by the page; false when not connected (the page keeps them).
  sendLikes(count) {
    return this.status === 'open' && this.sendFrame({ type: 'like', count });
  }
}
