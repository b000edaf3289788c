// The watch page of an ended stream: its replay (GET /api/streams/{id}/replay), a VOD
// multivariant playlist (a video and an audio rendition) played by the vendored hls.js (its
// full build: the light one plays no alternate audio) wherever Media Source Extensions take
// H.264 + AAC, else by the browser's own HLS (iOS Safari). Beside it, the product timeline:
// each product at the moment it was on the stream (a tap seeks there), and a "shop this
// moment" card that follows playback. Buying from it is attributed to the stream as replay
// (source: 'replay'), at the product's price now (deals are over). Chat is read-only.
//
// startReplay() answers null when the stream has no replay (the page says it ended).
//
// With `clipId` (`/watch/{id}?clip={clip id}`), it plays that product clip instead: a slice of
// the replay, with its product's card; buying from it is attributed as source: 'clip'.

import { api } from './api.js';
import { h, $, clear, formatClock, formatMoney, toast, friendlyError } from './ui.js';

const HLS_JS = '../vendor/hls.js/hls.min.mjs';
const MP4_CODECS = 'video/mp4; codecs="avc1.42e01f,mp4a.40.2"';

function mseCanPlay() {
  const source = window.ManagedMediaSource || window.MediaSource;
  return Boolean(source && source.isTypeSupported(MP4_CODECS));
}

/**
 * The products on the replay's timeline, oldest first:
 * `{ sku, title, imageUrl, price, atS, untilS, kind }`. The one place the timeline comes from:
 * the replay's moments, which the server builds from the stream's stored timeline (each pin
 * at its media time until the next pin or unpin, each deal at its start, the stream's
 * featured products at 0), placed on the replay's clock by the segments' program date time.
 */
async function loadTimeline(info) {
  return info.moments.map((m) => ({
    sku: m.sku,
    title: m.title,
    imageUrl: m.image_url,
    price: m.price,
    atS: m.at_s,
    untilS: m.until_s ?? null,
    kind: m.kind,
  })).sort((a, b) => a.atS - b.atS);
}

async function attach(video, url) {
  const absolute = new URL(url, location.href).toString();
  if (mseCanPlay()) {
    const { default: Hls } = await import(HLS_JS);
    const hls = new Hls({ enableWorker: true });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal && data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else if (data.fatal) toast('The replay could not be played. Try reloading the page.', 'error');
    });
    hls.loadSource(absolute);
    hls.attachMedia(video);
    return 'hls.js';
  }
  if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = absolute;
    video.play().catch(() => {});
    return 'native';
  }
  toast('This browser cannot play the replay.', 'error');
  return 'none';
}

function momentAt(moments, seconds) {
  // the latest moment reached; a pinned span no longer counts once it is over
  let found = null;
  for (const moment of moments) {
    if (moment.atS > seconds + 0.25) continue;
    if (moment.untilS !== null && moment.untilS <= seconds) continue;
    found = moment;
  }
  return found || moments[0] || null;
}

async function loadClip(clipId, token) {
  const clip = await api.getClip(clipId, token);
  const moment = {
    sku: clip.sku, title: clip.title, imageUrl: clip.image_url, price: clip.price, atS: 0, untilS: null, kind: 'clip',
  };
  const info = { playlist_url: clip.playlist_url, poster_url: null, duration_s: clip.end_s - clip.start_s, clip };
  return { info, moments: [moment] };
}

// An order's video receipt: the stream around the moment it was bought, with what it bought.
// Its URL plays without a token (order ids are unguessable), so a receipt link shared with
// someone else plays too, without the order's lines.
async function loadReceipt(orderId, token) {
  const playlist = `/receipt/${encodeURIComponent(orderId)}/index.m3u8`;
  const ready = await fetch(playlist, { method: 'HEAD' }).then((r) => r.ok).catch(() => false);
  if (!ready) {
    const err = new Error('Your video receipt will be ready when the stream’s replay is.');
    err.status = 404;
    throw err;
  }
  const order = token ? await api.getOrder(orderId, token).catch(() => null) : null;
  const moments = order ? order.lines.map((line) => ({
    sku: line.sku, title: line.title, imageUrl: null, atS: 0, untilS: null, kind: 'receipt',
    price: { amount_minor: line.unitPrice.amountMinor, currency: line.unitPrice.currency },
  })) : [];
  return { info: { playlist_url: playlist, poster_url: null, duration_s: null, receipt: orderId }, moments };
}

export async function startReplay({ video, streamId, token, addToCart, clipId = null, receiptId = null }) {
  let info;
  let moments;
  try {
    if (clipId) ({ info, moments } = await loadClip(clipId, token));
    else if (receiptId) ({ info, moments } = await loadReceipt(receiptId, token));
    else info = await api.getReplay(streamId, token);
  } catch (err) {
    if (receiptId && err.status === 404) {
      // not (yet) playable: say so and play the replay, if there is one
      toast(err.message, 'error');
      return startReplay({ video, streamId, token, addToCart });
    }
    if (err.status !== 404) toast(friendlyError(err), 'error');
    return null;
  }
  if (!clipId && !receiptId) moments = await loadTimeline(info);
  const source = clipId ? 'clip' : 'replay';
  document.body.dataset.mode = 'replay';
  if (clipId) document.body.dataset.clip = clipId;
  if (receiptId) document.body.dataset.receipt = receiptId;
  const mode = $('#play-mode');
  const kind = clipId ? 'Clip' : receiptId ? 'Your video receipt' : 'Replay';
  mode.textContent = info.duration_s === null ? kind : `${kind} · ${formatClock(info.duration_s * 1000)}`;
  mode.hidden = false;
  if (info.poster_url) video.poster = info.poster_url;
  video.controls = true;
  video.addEventListener('playing', () => { document.body.dataset.replay = 'playing'; });

  // chat stays readable; nobody posts to a stream that ended
  for (const control of document.querySelectorAll('#chat-form input, #chat-form button')) control.disabled = true;
  $('#chat-input').placeholder = 'Chat is read-only on a replay';

  // the shop-this-moment card, on the picture
  const card = h('article', { id: 'replay-card', class: 'product-card replay-card', hidden: true },
    h('div', { class: 'product-info' },
      h('p', { class: 'replay-card-label' }, info.receipt ? 'You bought' : 'Shop this moment'),
      h('p', { class: 'product-title' }),
      h('p', { class: 'product-price' })),
    h('button', { class: 'btn btn-buy add-to-cart', type: 'button' }, info.receipt ? 'Buy again' : 'Add to cart'));
  $('.stage').append(card);
  let current = null;
  card.querySelector('button').addEventListener('click', () => {
    // where the buyer is on the replay: the moment of the order's video receipt
    const offset = info.clip ? info.clip.start_s : 0;
    // a receipt's picture is a slice, not the replay's timeline: it has no position to give
    const positionS = info.receipt ? undefined : offset + video.currentTime;
    if (current) addToCart({ sku: current.sku, source, positionS });
  });

  // the timeline, across the top of the picture
  const list = h('ol', { id: 'replay-timeline', class: 'replay-timeline' });
  const panel = h('section', { id: 'replay-panel', class: 'replay-panel', 'aria-label': 'Products in this replay' },
    h('h2', { class: 'panel-title' }, info.receipt ? 'In this order' : 'In this replay'), list);
  $('.stage').append(panel);
  const none = info.receipt ? 'Sign in to see what you bought.' : 'No products were shown in this stream.';
  if (!moments.length) list.append(h('li', { class: 'muted' }, none));
  const items = moments.map((moment) => {
    const item = h('li', { class: 'replay-moment', dataset: { sku: moment.sku, at: String(moment.atS), kind: moment.kind } },
      h('button', { type: 'button', class: 'replay-seek', 'aria-label': `Watch ${moment.title} at ${formatClock(moment.atS * 1000)}` },
        h('time', { class: 'replay-time' }, formatClock(moment.atS * 1000)),
        h('span', { class: 'replay-title' }, moment.title),
        h('span', { class: 'replay-price' }, formatMoney(moment.price.amount_minor, moment.price.currency))));
    item.querySelector('button').addEventListener('click', () => {
      video.currentTime = moment.atS;
      video.play().catch(() => {});
      follow();
    });
    list.append(item);
    return item;
  });

  function follow() {
    const moment = momentAt(moments, video.currentTime);
    items.forEach((item, index) => item.classList.toggle('active', moments[index] === moment));
    if (moment === current) return;
    current = moment;
    card.hidden = !moment;
    if (!moment) return;
    card.dataset.sku = moment.sku;
    card.querySelector('.product-title').textContent = moment.title;
    card.querySelector('.product-price').textContent = formatMoney(moment.price.amount_minor, moment.price.currency);
  }
  video.addEventListener('timeupdate', follow);
  video.addEventListener('seeked', follow);
  follow();

  const engine = await attach(video, info.playlist_url);
  document.body.dataset.replayEngine = engine;
  return { info, moments, engine };
}
