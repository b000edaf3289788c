// Small DOM helpers shared by the pages. Text from users is only ever set as textContent:
// h() turns every string child into a Text node and has no way to set innerHTML.

import { MINOR_DIGITS } from './currencies.js';

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function setText(selector, value, root = document) {
  const node = typeof selector === 'string' ? $(selector, root) : selector;
  if (node) node.textContent = value;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

// Money is integer minor units plus an ISO 4217 code; the digits are ISO's (JPY 0, EUR 2,
// KWD 3), never assumed. An amount without a known currency shows as nothing ('').
export function minorDigits(currency) {
  return Object.hasOwn(MINOR_DIGITS, currency || '') ? MINOR_DIGITS[currency] : null;
}

const moneyFormats = new Map();
export function formatMoney(amountMinor, currency) {
  if (amountMinor === null || amountMinor === undefined || !Number.isInteger(Number(amountMinor))) return '';
  const digits = minorDigits(currency);
  if (digits === null) return '';
  let format = moneyFormats.get(currency);
  if (!format) {
    format = new Intl.NumberFormat(undefined, {
      style: 'currency', currency, minimumFractionDigits: digits, maximumFractionDigits: digits,
    });
    moneyFormats.set(currency, format);
  }
  // The amount as an exact decimal string ("1999" in EUR is "19.99"), never divided as a float.
  const minor = Number(amountMinor);
  const units = String(Math.abs(minor)).padStart(digits + 1, '0');
  const decimal = digits ? `${units.slice(0, -digits)}.${units.slice(-digits)}` : units;
  return format.format(`${minor < 0 ? '-' : ''}${decimal}`);
}

// Parse "12.50" into minor units of a currency, or null (also for an unknown currency, or
// more decimals than the currency has).
export function parseMoney(text, currency) {
  const digits = minorDigits(currency);
  const match = /^\s*(\d+)(?:[.,](\d+))?\s*$/.exec(text || '');
  if (!match || digits === null) return null;
  const fraction = (match[2] || '').padEnd(digits, '0');
  if (fraction.length > digits) return null;
  return Number(match[1]) * 10 ** digits + Number(fraction || 0);
}

// An example price in a currency's digits, for hints: "19.99", "1999" (JPY), "19.990" (KWD).
export function examplePrice(currency) {
  const digits = minorDigits(currency) ?? 2;
  return digits ? `19.${'99'.padEnd(digits, '0')}` : '1999';
}

export function formatCount(n) {
  if (n === null || n === undefined) return '–';
  return new Intl.NumberFormat(undefined, { notation: n >= 10000 ? 'compact' : 'standard' }).format(n);
}

// The viewer count on a page (watch, studio): the hello's `viewers`, then `viewers` events.
export function setViewers(count) {
  setText('#viewer-count .n', formatCount(count));
}

export function formatClock(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return minutes >= 60 ? `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}

export function formatWhen(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const options = { weekday: 'short', month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' };
  if (date.getFullYear() !== new Date().getFullYear()) options.year = 'numeric';
  return new Intl.DateTimeFormat(undefined, options).format(date);
}

// One timer for every countdown on the page: elements with data-ends-at (epoch ms).
const countdowns = new Set();
let ticking = null;
export function countdown(node, endsAtMs, onDone) {
  node.dataset.endsAt = String(endsAtMs);
  countdowns.add({ node, onDone });
  tick();
  if (!ticking) ticking = setInterval(tick, 250);
}
function tick() {
  const now = Date.now();
  for (const entry of countdowns) {
    if (!entry.node.isConnected && entry.node.dataset.started) { countdowns.delete(entry); continue; }
    entry.node.dataset.started = '1';
    const left = Number(entry.node.dataset.endsAt) - now;
    entry.node.textContent = formatClock(left);
    if (left <= 0) {
      countdowns.delete(entry);
      if (entry.onDone) entry.onDone();
    }
  }
  if (!countdowns.size && ticking) { clearInterval(ticking); ticking = null; }
}

let toastTimer = null;
export function toast(message, kind = 'info') {
  let node = $('#toast');
  if (!node) {
    node = h('div', { id: 'toast', role: 'status', 'aria-live': 'polite' });
    document.body.append(node);
  }
  node.textContent = message;
  node.dataset.kind = kind;
  node.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => node.classList.remove('show'), 3500);
}

export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

export function initials(name) {
  return (name || '?').trim().split(/\s+/).slice(0, 2).map((w) => w[0]).join('').toUpperCase() || '?';
}

// Friendly words for error codes a viewer may meet: registered codes (livecast/error_codes.py,
// checked by tests/test_error_codes.py), and `network` for a request that got no answer.
const KIND_ERRORS = {
  bid_too_low: 'Someone bid first: the price moved. Try the new step.',
  own_auction: 'Hosts cannot bid on their own auction.',
  auction_ended: 'The auction has ended.',
  auction_has_bids: 'Someone has bid: the auction runs to its end.',
  rate_limited: 'Easy there! You are sending messages too fast.',
  slow_mode: 'Slow mode is on. Wait a moment before your next message.',
  banned: 'You can no longer chat in this stream.',
  timed_out: 'You are timed out for a little while.',
  sold_out: 'Sold out! Someone was faster this time.',
  hold_expired: 'Your hold expired and the item went back on sale.',
  over_limit: 'You already have as many of these as one buyer may get.',
  insufficient_stock: 'Not enough left for that many. Try fewer.',
  deal_ended: 'This deal has just ended.',
  deal_not_started: 'This deal has not started yet.',
  cart_full: 'Your cart is full. Check out or remove something first.',
  stream_not_live: 'You can shop while the stream is live.',
  network: 'Connection trouble. Trying again…',
  too_long: 'That message is too long.',
  links_not_allowed: 'Only the host can post links.',
  word_filtered: 'That message contains a word this chat does not allow.',
  empty: 'Type a message first.',
  unauthorized: 'Sign in to do that.',
  stream_ended: 'The stream has ended, so the chat is closed.',
  token_expired: 'Your sign-in has expired.',
};
export function friendlyError(err) {
  return KIND_ERRORS[err && err.code] || (err && err.message) || 'Something went wrong.';
}
