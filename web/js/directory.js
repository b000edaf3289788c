// The stream directory: the signed-in buyer's orders (each with its video receipt), live now,
// upcoming, moments (published product clips, newest first), recent (replays first, with
// their poster and length).

import { api } from './api.js';
import { currentSession, signIn, signOut } from './auth.js';
import { h, $, clear, formatClock, formatCount, formatMoney, formatWhen, initials, friendlyError } from './ui.js';

let session = currentSession('viewer');

function renderAccount() {
  const slot = clear($('#account'));
  if (session) {
    slot.append(h('span', { class: 'avatar', title: session.name }, initials(session.name)),
      h('span', { class: 'account-name' }, session.name),
      h('button', { class: 'btn btn-ghost', type: 'button', onclick: () => { signOut('viewer'); session = null; renderAccount(); load(); } }, 'Sign out'));
  } else {
    slot.append(h('button', { class: 'btn', type: 'button', id: 'signin-button', onclick: async () => { session = (await signIn('viewer')) || session; renderAccount(); load(); } }, 'Sign in'));
  }
}

function card(stream, kind) {
  const meta = kind === 'live'
    ? h('span', { class: 'viewers', dataset: { stream: stream.id } }, typeof stream.viewers === 'number' ? `${formatCount(stream.viewers)} watching` : 'Live now')
    : kind === 'upcoming'
      ? h('time', { datetime: stream.scheduled_start || '' }, stream.scheduled_start ? formatWhen(stream.scheduled_start) : 'Soon')
      : h('span', {}, stream.ended_at ? `Ended ${formatWhen(stream.ended_at)}` : 'Ended');
  const replay = stream.replay;
  const thumb = h('div', { class: `thumb hue-${hue(stream.id)}` },
    kind === 'live' ? h('span', { class: 'badge live' }, 'LIVE') : null,
    kind === 'upcoming' ? h('span', { class: 'badge soon' }, 'UPCOMING') : null,
    replay ? h('span', { class: 'badge soon' }, 'REPLAY') : null,
    replay ? h('span', { class: 'duration' }, formatClock(replay.duration_s * 1000)) : null,
    replay && replay.poster_url ? null : h('span', { class: 'thumb-initials', 'aria-hidden': 'true' }, initials(stream.seller_name)));
  if (replay && replay.poster_url) thumb.style.backgroundImage = `url("${encodeURI(replay.poster_url)}")`;
  return h('li', { class: `stream-card ${kind}${replay ? ' replay' : ''}`, dataset: replay ? { replay: stream.id } : {} },
    h('a', { href: `/watch/${encodeURIComponent(stream.id)}`, class: 'stream-link' },
      thumb,
      h('div', { class: 'stream-info' },
        h('h3', { class: 'stream-title' }, stream.title),
        h('p', { class: 'stream-seller' }, stream.seller_name),
        h('p', { class: 'stream-meta' }, meta))));
}

function hue(id) {
  let n = 0;
  for (const ch of id) n = (n * 31 + ch.charCodeAt(0)) % 6;
  return n;
}

function section(id, streams, kind, emptyText) {
  const list = clear($(`#${id} .stream-grid`));
  if (!streams.length) list.append(h('li', { class: 'empty' }, emptyText));
  for (const stream of streams) list.append(card(stream, kind));
}

// Replays first, the most recently ended first, then ended streams that have none.
function recent(streams, replays) {
  const ended = streams.filter((s) => s.state === 'ended');
  const byId = new Map(ended.map((s) => [s.id, s]));
  const withReplay = replays.map((r) => ({
    ...(byId.get(r.stream_id) || { id: r.stream_id, title: r.title, seller_name: r.seller_name, ended_at: r.ended_at }),
    replay: r,
  }));
  const replayed = new Set(replays.map((r) => r.stream_id));
  return [...withReplay, ...ended.filter((s) => !replayed.has(s.id))].slice(0, 12);
}

// A product clip: the product, the stream it is from, its length; it plays on the watch page.
function clipCard(clip) {
  const thumb = h('div', { class: `thumb hue-${hue(clip.stream_id)}` },
    h('span', { class: 'badge soon' }, 'CLIP'),
    h('span', { class: 'duration' }, formatClock((clip.end_s - clip.start_s) * 1000)),
    clip.image_url ? null : h('span', { class: 'thumb-initials', 'aria-hidden': 'true' }, initials(clip.title)));
  if (clip.image_url) thumb.style.backgroundImage = `url("${encodeURI(clip.image_url)}")`;
  return h('li', { class: 'stream-card clip', dataset: { clip: clip.id } },
    h('a', { href: clip.watch_url, class: 'stream-link' },
      thumb,
      h('div', { class: 'stream-info' },
        h('h3', { class: 'stream-title' }, clip.title),
        h('p', { class: 'stream-seller' }, `${clip.seller_name} · ${clip.stream_title}`),
        h('p', { class: 'stream-meta' }, formatMoney(clip.price.amount_minor, clip.price.currency)))));
}

function moments(clips) {
  const list = clear($('#moments .stream-grid'));
  $('#moments').hidden = !clips.length;
  for (const clip of clips.slice(0, 12)) list.append(clipCard(clip));
}

// The buyer's orders, newest first: what, when, how much, and the moment it was bought.
function orderItem(order) {
  const what = order.lines.map((line) => (line.quantity > 1 ? `${line.title} ×${line.quantity}` : line.title)).join(', ');
  return h('li', { class: 'order-item', dataset: { order: order.id } },
    h('div', { class: 'order-what' },
      h('p', { class: 'order-title' }, what),
      h('p', { class: 'order-meta' }, `${formatWhen(order.createdAt)} · ${formatMoney(order.total.amountMinor, order.total.currency)}`)),
    order.receiptUrl ? h('a', { class: 'btn btn-small order-receipt', href: order.watchUrl }, '▶ Watch the moment') : null);
}

function orders(list) {
  const slot = clear($('#orders .order-list'));
  $('#orders').hidden = !list.length;
  for (const order of list.slice(0, 12)) slot.append(orderItem(order));
}

async function load() {
  try {
    const token = session && session.token;
    const [streams, replays, clips, bought] = await Promise.all([
      api.directory(token), api.listReplays(token).catch(() => []), api.listClips(token).catch(() => []),
      token ? api.listOrders(token).catch(() => []) : []]);
    orders(bought);
    moments(clips);
    section('live', streams.filter((s) => s.state === 'live'), 'live', 'Nobody is live right now. Check the schedule below.');
    section('upcoming', streams.filter((s) => s.state === 'scheduled'), 'upcoming', 'No streams scheduled yet.');
    section('recent', recent(streams, replays), 'recent', 'No past streams.');
    document.body.dataset.loaded = 'true';
  } catch (err) {
    $('#status').textContent = friendlyError(err);
  }
}

renderAccount();
load();
setInterval(load, 15000);
