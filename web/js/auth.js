// Tokens for the pages: taken from the URL fragment (#token=...) and kept in localStorage,
// or obtained with the sign-in dialog (which mints a viewer identity when dev mode is on).
// The fragment never reaches the server; it is removed from the address bar once read.

import { api, ApiError } from './api.js';
import { h, $ } from './ui.js';

const STORAGE = { viewer: 'livecast.token', host: 'livecast.host-token' };

export function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

// Expired by this device's clock (the server may say so even when this says not).
export function tokenExpired(token) {
  const c = claims(token);
  return Boolean(c && c.exp && c.exp * 1000 <= Date.now());
}

// What a page says when the server (or this device's clock) finds its token expired
// (code token_expired) or refuses it (any other code).
export function signInProblem(kind, code = 'token_expired') {
  const what = code === 'token_expired' ? 'has expired' : 'was refused';
  return `Your sign-in ${what}: ${kind === 'host' ? 'paste a new token' : 'sign in again to chat and shop'}.`;
}

let droppedExpired = false;

// True when the token this page was opened with (or had stored) had expired: the page
// says so rather than silently going without it.
export function hadExpiredSession() {
  return droppedExpired;
}

function sessionFrom(token) {
  const c = claims(token);
  if (!c || !c.sub) return null;
  if (tokenExpired(token)) {
    droppedExpired = true;
    return null;
  }
  return { token, sub: c.sub, name: c.name || c.sub, role: c.role || 'viewer', streams: c.streams || [], expiresAt: (c.exp || 0) * 1000 };
}

// The session for this page: a fragment token wins over a stored one.
export function currentSession(kind = 'viewer') {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromUrl = params.get('token');
  if (fromUrl) {
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
    const session = sessionFrom(fromUrl);
    if (session) {
      localStorage.setItem(STORAGE[kind], fromUrl);
      return session;
    }
  }
  const stored = localStorage.getItem(STORAGE[kind]);
  const session = stored ? sessionFrom(stored) : null;
  if (stored && !session) localStorage.removeItem(STORAGE[kind]);
  return session;
}

export function signOut(kind = 'viewer') {
  localStorage.removeItem(STORAGE[kind]);
}

// Who a page chats as, for its chat list.
export function chatter(session) {
  return session ? { sub: session.sub, name: session.name, role: session.role } : null;
}

const STATUS_TEXT = { connecting: 'connecting…', reconnecting: 'reconnecting…', refused: 'stopped', failed: 'stopped' };

// How the page's live events are doing, in its #events-status; and when they stopped for
// good ('stopped' from LiveEvents), why, in its #live-stopped notice. A refused or expired
// token is forgotten and the notice offers a new sign-in; onSession(session) runs with the
// new one, and the events start again.
export function showLiveState(live, kind, onSession) {
  const status = $('#events-status');
  live.addEventListener('status', (event) => {
    status.dataset.status = event.detail;
    status.textContent = STATUS_TEXT[event.detail] || '';
  });
  const box = $('#live-stopped');
  const button = $('button', box);
  live.addEventListener('stopped', (event) => {
    const { status, error } = event.detail;
    const refused = status === 'refused';
    let text;
    if (refused) {
      text = signInProblem(kind, error.code);
      signOut(kind);
    } else if (error.code === 'stream_not_found') {
      text = 'This stream no longer exists.';
    } else {
      text = `Live updates stopped (${error.message}). Reload the page to start them again.`;
    }
    $('.text', box).textContent = text;
    button.hidden = !refused;
    box.hidden = false;
    box.dataset.code = error.code;
  });
  button.addEventListener('click', async () => {
    const session = await signIn(kind, $('.text', box).textContent);
    if (!session) return;
    box.hidden = true;
    onSession(session);
    live.setToken(session.token);
  });
}

// Show the sign-in dialog; resolves with a session, or null if dismissed.
export async function signIn(kind = 'viewer', reason = '') {
  let dev = { mint_viewer_tokens: false };
  try { dev = await api.devSettings(); } catch { /* the form still accepts a token */ }
  const old = $('#signin');
  if (old) old.remove();

  const error = h('p', { class: 'form-error', role: 'alert' });
  const nameInput = h('input', { name: 'name', autocomplete: 'nickname', maxlength: 64, placeholder: 'Your name' });
  const tokenInput = h('input', { name: 'token', autocomplete: 'off', placeholder: 'Paste a token', spellcheck: 'false' });
  const useName = dev.mint_viewer_tokens && kind === 'viewer';
  const form = h('form', { method: 'dialog', class: 'signin-form' },
    h('h2', {}, kind === 'host' ? 'Host sign-in' : 'Join the stream'),
    reason ? h('p', { class: 'muted' }, reason) : null,
    useName ? h('label', {}, h('span', {}, 'Display name'), nameInput) : null,
    useName ? h('button', { class: 'btn btn-primary', type: 'submit', value: 'name' }, 'Join') : null,
    useName ? h('p', { class: 'divider' }, 'or') : null,
    h('label', {}, h('span', {}, kind === 'host' ? 'Host token' : 'Token'), tokenInput),
    h('button', { class: useName ? 'btn' : 'btn btn-primary', type: 'submit', value: 'token' }, 'Use token'),
    error,
    h('button', { class: 'btn-close', type: 'button', 'aria-label': 'Close', value: 'cancel' }, '×'));
  const dialog = h('dialog', { id: 'signin', class: 'sheet' }, form);
  document.body.append(dialog);

  return new Promise((resolve) => {
    const finish = (session) => { dialog.close(); dialog.remove(); resolve(session); };
    form.querySelector('.btn-close').addEventListener('click', () => finish(null));
    dialog.addEventListener('cancel', (event) => { event.preventDefault(); finish(null); });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.textContent = '';
      const mode = event.submitter ? event.submitter.value : (useName ? 'name' : 'token');
      try {
        let token;
        if (mode === 'name') {
          const name = nameInput.value.trim();
          if (!name) { error.textContent = 'Enter a display name.'; return; }
          token = (await api.mintDevToken(name)).token;
        } else {
          token = tokenInput.value.trim();
        }
        const session = token ? sessionFrom(token) : null;
        if (!session) { error.textContent = 'That token is not valid or has expired.'; return; }
        localStorage.setItem(STORAGE[kind], token);
        finish(session);
      } catch (err) {
        error.textContent = err instanceof ApiError ? err.message : 'Could not sign in.';
      }
    });
    dialog.showModal();
    (useName ? nameInput : tokenInput).focus();
  });
}
