// The live-events WebSocket (GET /ws/streams/{id}, subprotocol livecast.v1.json).
//
// Server frames are {type, data, offset?}; each is re-dispatched as a DOM event named by
// its type with the data as detail ('chat.message', 'pin.set', 'likes', ...). The last
// offset seen is sent back on reconnect so the server replays the chat that was missed;
// a fresh 'hello' snapshot replaces local state when it cannot. Reconnects forever with
// capped, jittered backoff; 'status' events say 'connecting' | 'open' | 'reconnecting'.

const SUBPROTOCOL = 'livecast.v1.json';

export class LiveEvents extends EventTarget {
  constructor(streamId, { token = null } = {}) {
    super();
    this.streamId = streamId;
    this.token = token;
    this.lastOffset = null;
    this.status = 'idle';
    this.socket = null;
    this.attempt = 0;
    this.stopped = true;
    this.pingTimer = null;
    this.retryTimer = null;
    this.lastHeard = 0;
    this.onOnline = () => { if (this.status === 'reconnecting') this.reconnectNow(); };
    // The device lost its network: the socket is dead even if the browser has not noticed.
    this.onOffline = () => {
      const socket = this.socket;
      this.socket = null;
      if (socket) socket.close(4000, 'offline');
      clearInterval(this.pingTimer);
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
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.socket) this.socket.close(1000);
    this.setStatus('closed');
  }

  setToken(token) {
    this.token = token;
    if (!this.stopped) this.reconnectNow();
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const params = new URLSearchParams();
    if (this.token) params.set('token', this.token);
    if (this.lastOffset !== null) params.set('since', this.lastOffset);
    const query = params.toString();
    return `${scheme}//${location.host}/ws/streams/${encodeURIComponent(this.streamId)}${query ? `?${query}` : ''}`;
  }

  connect() {
    this.setStatus(this.attempt ? 'reconnecting' : 'connecting');
    let socket;
    try {
      socket = new WebSocket(this.url(), SUBPROTOCOL);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.attempt = 0;
      this.setStatus('open');
      clearInterval(this.pingTimer);
      this.lastHeard = Date.now();
      // Ping to keep middleboxes from idling the socket out; a socket that has said
      // nothing for a minute (not even to pings) is dead, so start again.
      this.pingTimer = setInterval(() => {
        if (Date.now() - this.lastHeard > 60000) this.reconnectNow();
        else this.send('ping', {});
      }, 20000);
    });
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => {
      clearInterval(this.pingTimer);
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (event.code === 4401 || event.code === 4403) {
        this.dispatchEvent(new CustomEvent('error', { detail: { code: 'unauthorized', message: event.reason || 'Not allowed' } }));
      }
      this.scheduleRetry();
    });
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000);
    this.connect();
  }

  scheduleRetry() {
    this.setStatus('reconnecting');
    const delay = Math.min(10000, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
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
    if (!frame || typeof frame.type !== 'string') return;
    const data = frame.data ?? {};
    const offset = frame.offset ?? data.offset;
    if (offset !== undefined && offset !== null) this.lastOffset = offset;
    if (frame.type === 'hello' && data.offset !== undefined) this.lastOffset = data.offset;
    this.dispatchEvent(new CustomEvent(frame.type, { detail: data }));
  }

  // Send a client frame; false when not connected (the caller tells the user).
  send(type, data) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify({ type, ...data }));
    return true;
  }

  sendChat(text, clientId) {
    return this.send('chat.send', { text, client_id: clientId });
  }

  sendLikes(count) {
    return this.send('like', { count });
  }
}

// One shape for a chat message, whatever the hub names its fields.
export function normalizeChat(raw) {
  const user = raw.user || raw.author || {};
  return {
    id: raw.id ?? raw.message_id ?? raw.offset,
    offset: raw.offset,
    text: String(raw.text ?? ''),
    name: user.name || raw.name || raw.user_name || 'Someone',
    sub: user.id || user.sub || raw.sub || raw.user_id || '',
    role: user.role || raw.role || 'viewer',
    clientId: raw.client_id,
  };
}
