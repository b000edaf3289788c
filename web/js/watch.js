// The viewer's page: video (WHEP, or LL-HLS when WebRTC is refused, cannot connect, or the
// page is opened with ?hls=1), chat, likes, pinned product, flash deal, cart, checkout.

import { api } from './api.js';
import { chatter, currentSession, signInProblem, hadExpiredSession, showLiveState, signIn } from './auth.js';
import { AuctionPanel } from './auction.js';
import { GroupBuyPanel } from './groupbuy.js';
import { KnockdownPanel } from './knockdown.js';
import { ChatView } from './chat.js';
import { GiveawayPanel } from './giveaway.js';
import { PollPanel } from './poll.js';
import { LiveEvents } from './events.js';
import { HlsPlayer } from './hlsplayer.js';
import { TimedCards, timedHooks } from './timeline.js';
import { WhepPlayer } from './whep.js';
import { h, $, clear, setText, countdown, formatMoney, formatCount, setViewers, initials, toast, newId, friendlyError } from './ui.js';
import { toCart, toOrder } from './wire.js';

const streamId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
let session = currentSession('viewer');
const video = $('#video');
const chat = new ChatView($('#chat'), { self: chatter(session) });
const live = new LiveEvents(streamId, {
  token: session && session.token,
  source: new URLSearchParams(location.search).has('clip') ? 'clip' : null,
});
const MODE_LABELS = { webrtc: 'Live (real-time)', hls: 'Live (HLS, a few seconds behind)' };
let player = null;
const state = { stream: null, media: null, pin: null, deal: null, likes: 0, pendingLikes: 0, cart: null };

// --- identity --------------------------------------------------------------------------------

async function requireSession(reason) {
  if (session) return session;
  const signedIn = await signIn('viewer', reason);
  if (signedIn) {
    useSession(signedIn);
    live.setToken(signedIn.token);
  }
  return signedIn;
}

function useSession(signedIn) {
  session = signedIn;
  chat.self = chatter(session);
  if (player) player.token = session.token;
  refreshCart();
}

// --- stream header and stage -----------------------------------------------------------------

function showStream(stream) {
  state.stream = stream;
  document.title = `${stream.title} · livecast`;
  setText('#title', stream.title);
  setText('#seller-name', stream.seller_name);
  setText('#seller-avatar', initials(stream.seller_name));
  showState(stream.state);
}

function showState(streamState) {
  if (state.stream) state.stream.state = streamState;
  $('#live-badge').hidden = streamState !== 'live';
  document.body.dataset.state = streamState;
  if (streamState === 'ended' && player && !player.stopped) player.stop();
  updateStage();
}

function updateStage() {
  const streamState = state.stream ? state.stream.state : 'unknown';
  let text = '';
  if (streamState === 'ended') text = state.replay ? '' : 'This stream has ended. Thanks for watching!';
  else if (streamState === 'scheduled') text = 'The stream has not started yet. Stay here: it will start playing by itself.';
  else if (streamState === 'not_found') text = 'This stream does not exist.';
  else if (state.media === 'reconnecting') text = 'The host is reconnecting…';
  else if (player && player.state === 'reconnecting') text = 'Reconnecting…';
  else if (!player || player.state !== 'playing') text = 'Connecting…';
  else if (videoStalled) text = 'Waiting for the host’s video…';
  $('#stage-message').hidden = !text;
  $('#unmute').hidden = Boolean(text) || !video.muted || unmuted;
  setText('#stage-text', text);
}

// Connected but no new frames for a few seconds: the host's video is not arriving.
let videoStalled = false;
let lastFrames = 0;
let lastFramesAt = Date.now();
function checkFrames() {
  const frames = player ? player.decodedFrames() : 0;
  if (frames !== lastFrames) {
    lastFrames = frames;
    lastFramesAt = Date.now();
  }
  const stalled = Boolean(player) && player.state === 'playing' && (frames === 0 || Date.now() - lastFramesAt > 3000);
  if (stalled !== videoStalled) {
    videoStalled = stalled;
    document.body.dataset.stalled = String(stalled);
    updateStage();
  }
}
setInterval(checkFrames, 1000);
// Frames arriving again clear the "waiting" message at once, not on the next tick.
video.addEventListener('timeupdate', () => { if (videoStalled) checkFrames(); });

function onPlayerState(event) {
  document.body.dataset.video = event.detail;
  checkFrames();
  updateStage();
}

// 'webrtc' or 'hls'; the page says which, and a viewer once on HLS stays on it.
function play(mode) {
  const Player = mode === 'hls' ? HlsPlayer : WhepPlayer;
  const signed = Boolean(state.stream && state.stream.public === false);
  player = new Player(video, streamId, { token: session && session.token, signed });
  player.addEventListener('state', onPlayerState);
  player.addEventListener('fallback', () => play('hls'));
  document.body.dataset.mode = mode;
  setText('#play-mode', MODE_LABELS[mode]);
  $('#play-mode').hidden = false;
  player.start();
}
let unmuted = false;
$('#unmute').addEventListener('click', () => {
  unmuted = true;
  video.muted = false;
  video.play().catch(() => {});
  $('#unmute').hidden = true;
});

// --- live events -----------------------------------------------------------------------------

// On LL-HLS a pin, an unpin or a deal's start or end shows when the picture reaches the
// moment the host acted (web/js/timeline.js); on WebRTC, at once, as it arrives.
const cards = new TimedCards(() => {
  if (document.body.dataset.mode !== 'hls' || !player || player.stopped) return Number.POSITIVE_INFINITY;
  return player.playingDateMs();
});

/** @param {CustomEvent<import('./wire.js').Hello>} event */
live.addEventListener('hello', (event) => {
  const hello = event.detail;
  cards.flush(); // what the hello says is newer than anything still waiting
  showState(hello.stream.state);
  if (!hello.recovered) chat.reset(hello.chat);
  setViewers(hello.viewers);
  setLikes(hello.likes);
  showSlowMode(hello.slowModeS);
  setDeal(hello.deals.find((deal) => deal.state === 'active') || null);
  setPin(hello.pin);
});
chat.follow(live, $('#chat-input'));
live.addEventListener('chat.settings', (event) => showSlowMode(event.detail.slowModeS));
live.addEventListener('likes', (event) => setLikes(event.detail.total));
live.addEventListener('viewers', (event) => setViewers(event.detail.count));
live.addEventListener('stream.state', (event) => showState(event.detail.state));
live.addEventListener('media.state', (event) => { state.media = event.detail.state; updateStage(); });
live.addEventListener('pin.set', (event) => cards.at(event.detail.mediaTimeMs, event.detail, setPin));
live.addEventListener('pin.cleared', (event) => cards.at(event.detail.mediaTimeMs, event.detail, () => setPin(null)));
live.addEventListener('deal.started', (event) => cards.at(event.detail.mediaTimeMs, event.detail, (deal) => { if (deal.state === 'active') setDeal(deal); }));
live.addEventListener('deal.updated', (event) => updateDeal(event.detail));
live.addEventListener('deal.ended', (event) => cards.at(event.detail.mediaTimeMs, event.detail, (deal) => { if (state.deal && state.deal.id === deal.id) setDeal(null); }));
live.addEventListener('stock', (event) => updateStock(event.detail));
const auctionPanel = new AuctionPanel($('#auction-panel'), {
  session: () => session,
  requireSession,
  won: async () => { await refreshCart(); openCart(); },
});
auctionPanel.follow(live);
const timed = timedHooks(cards); // the formats' cards wait for the picture too
new PollPanel($('#poll-panel'), { session: () => session, requireSession, timed }).follow(live);
new GiveawayPanel($('#giveaway-panel'), { session: () => session, requireSession, won: () => {}, timed }).follow(live);
const showCart = async () => { await refreshCart(); openCart(); };
new GroupBuyPanel($('#groupbuy-panel'), { session: () => session, requireSession, paid: () => {}, timed }).follow(live);
new KnockdownPanel($('#knockdown-panel'), { session: () => session, requireSession, bought: showCart, timed }).follow(live);
live.addEventListener('error', (event) => toast(friendlyError(event.detail), 'error'));
showLiveState(live, 'viewer', useSession);
// Refused: watching goes on anonymously; chatting or shopping asks for a new sign-in.
live.addEventListener('stopped', (event) => {
  if (event.detail.status !== 'refused') return;
  session = null;
  if (player) player.token = null;
});

function showSlowMode(seconds) {
  $('#chat-input').placeholder = seconds > 0 ? `Slow mode: one message every ${seconds} s` : 'Say something…';
}

function setLikes(total) {
  state.likes = Math.max(total, 0);
  setText('#like-count', formatCount(state.likes + state.pendingLikes));
}

// --- pinned product ----------------------------------------------------------------------------

/** @param {import('./wire.js').Pin | null} pin */
function setPin(pin) {
  const card = $('#product-card');
  state.pin = pin;
  if (!state.pin) {
    card.hidden = true;
    return;
  }
  const p = state.pin;
  const img = $('.product-img', card);
  img.hidden = !p.imageUrl;
  if (p.imageUrl) img.src = p.imageUrl;
  setText($('.product-title', card), p.title);
  $('.product-title', card).title = p.title;
  setText($('.product-price', card), formatMoney(p.amountMinor, p.currency));
  renderPinStock();
  if (p.deal && p.deal.state === 'active' && !state.deal) setDeal(p.deal);
  card.hidden = false;
  card.classList.remove('pop');
  void card.offsetWidth;
  card.classList.add('pop');
}

function renderPinStock() {
  const card = $('#product-card');
  if (!state.pin) return;
  const left = state.pin.stock;
  const soldOut = left === 0;
  card.classList.toggle('sold-out', soldOut);
  setText($('.product-stock', card), soldOut ? 'Sold out' : left <= 10 ? `Only ${left} left!` : `${left} in stock`);
  $('.add-to-cart', card).disabled = soldOut;
  setText($('.add-to-cart', card), soldOut ? 'Sold out' : 'Add to cart');
}

$('#product-card .add-to-cart').addEventListener('click', () => {
  if (state.pin) addToCart({ sku: state.pin.sku });
});

// --- flash deal --------------------------------------------------------------------------------

/** @param {import('./wire.js').Deal | null} deal */
function setDeal(deal) {
  const banner = $('#deal-banner');
  state.deal = deal;
  if (!deal) {
    banner.hidden = true;
    return;
  }
  setText($('.deal-title', banner), deal.title || deal.sku);
  setText($('.now', banner), formatMoney(deal.amountMinor, deal.currency));
  setText($('.was', banner), deal.listMinor ? formatMoney(deal.listMinor, deal.currency) : '');
  if (deal.endsAtMs) countdown($('.countdown', banner), deal.endsAtMs, () => { if (state.deal === deal) setDeal(null); });
  renderDealLeft();
  banner.hidden = false;
}

/** @param {import('./wire.js').DealUpdate} update */
function updateDeal(update) {
  for (const waiting of cards.waiting()) if (waiting.id === update.id && 'left' in waiting) waiting.left = update.left;
  if (!state.deal || update.id !== state.deal.id) return;
  state.deal.left = update.left;
  renderDealLeft();
}

function renderDealLeft() {
  const banner = $('#deal-banner');
  const left = state.deal.left;
  const soldOut = left === 0;
  banner.classList.toggle('sold-out', soldOut);
  setText($('.left', banner), soldOut ? 'SOLD OUT' : `${left} left`);
  $('.deal-buy', banner).disabled = soldOut;
  setText($('.deal-buy', banner), soldOut ? 'Sold out' : 'Grab it');
}

// Regular stock of a SKU; a deal's own quantity arrives as deal.updated.
/** @param {import('./wire.js').Stock} stock */
function updateStock(stock) {
  for (const waiting of cards.waiting()) if (waiting.sku === stock.sku && 'stock' in waiting) waiting.stock = stock.soldOut ? 0 : stock.left;
  if (state.pin && stock.sku === state.pin.sku) {
    state.pin.stock = stock.soldOut ? 0 : stock.left;
    renderPinStock();
  }
}

$('#deal-banner .deal-buy').addEventListener('click', () => {
  if (state.deal) addToCart({ sku: state.deal.sku, dealId: state.deal.id });
});

// --- likes -------------------------------------------------------------------------------------

let likeTimer = null;
$('#like').addEventListener('click', async () => {
  floatHeart();
  state.pendingLikes += 1;
  setText('#like-count', formatCount(state.likes + state.pendingLikes));
  if (!likeTimer) likeTimer = setTimeout(flushLikes, 300);
});

function flushLikes() {
  likeTimer = null;
  if (!state.pendingLikes) return;
  if (live.sendLikes(state.pendingLikes)) {
    state.likes += state.pendingLikes;
    state.pendingLikes = 0;
  } else {
    likeTimer = setTimeout(flushLikes, 1000);
  }
}

const HEART_COLOURS = ['#ff2d55', '#ff8a00', '#ff5fa2', '#ffd60a', '#bf5af2'];
function floatHeart() {
  const heart = h('span', { class: 'heart' }, '♥');
  heart.style.setProperty('--drift', `${Math.round(Math.random() * 60 - 30)}px`);
  heart.style.color = HEART_COLOURS[Math.floor(Math.random() * HEART_COLOURS.length)];
  $('#hearts').append(heart);
  heart.addEventListener('animationend', () => heart.remove());
}

// --- chat --------------------------------------------------------------------------------------

$('#chat-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('#chat-input');
  const text = input.value.trim();
  if (!text) return;
  if (!(await requireSession('Pick a name to chat.'))) return;
  if (live.sendChat(text)) input.value = '';
  else toast('Chat is not connected. Reload the page to chat.', 'error');
});

// --- cart and checkout -------------------------------------------------------------------------

async function addToCart({ sku, dealId, source, positionS }) {
  if (!(await requireSession('Sign in to shop without leaving the stream.'))) return;
  try {
    await api.addToCart(session.token, { streamId, sku, quantity: 1, dealId, source, positionS });
    toast('Added to your cart and held for you.', 'ok');
    await refreshCart();
    openCart();
  } catch (err) {
    toast(err.code === 'over_limit' ? overLimitMessage(dealId) : friendlyError(err), 'error');
  }
}

// A buyer at a deal's per-buyer limit is told the limit, not just refused.
function overLimitMessage(dealId) {
  const deal = state.deal && state.deal.id === dealId ? state.deal : null;
  const limit = deal && deal.perBuyerLimit;
  if (!limit) return friendlyError({ code: 'over_limit' });
  return `This deal is limited to ${limit} per buyer, and you already have ${limit === 1 ? 'yours' : 'your ' + limit}.`;
}

async function refreshCart() {
  if (!session) return;
  try {
    state.cart = toCart(await api.getCart(session.token));
    for (const title of state.cart.expired) toast(`Your hold on ${title} expired and went back on sale.`, 'error');
  } catch (err) {
    if (err.status !== 404) toast(friendlyError(err), 'error');
    return;
  }
  renderCart();
}

function renderCart() {
  const cart = state.cart || { items: [], totals: [], expired: [] };
  const lines = clear($('#cart-lines'));
  for (const item of cart.items) {
    const timer = h('span', { class: 'hold-timer' });
    lines.append(h('li', { class: 'cart-line', dataset: { hold: item.holdId } },
      h('span', { class: 'line-thumb' }, initials(item.title)),
      h('div', { class: 'line-info' },
        h('p', { class: 'line-title' }, item.title),
        h('p', { class: 'line-meta' }, `${item.quantity} × ${formatMoney(item.unitMinor, item.currency)}`, item.dealId ? h('span', { class: 'chip deal' }, 'Deal') : null),
        h('p', { class: 'line-hold' }, 'Held for ', timer)),
      h('button', { class: 'icon-btn', type: 'button', 'aria-label': `Remove ${item.title}`, onclick: () => removeLine(item.holdId) }, '×')));
    countdown(timer, item.expiresAtMs, () => refreshCart());
  }
  $('#cart-empty').hidden = cart.items.length > 0;
  setText('#cart-total', cart.totals.map((t) => formatMoney(t.amountMinor, t.currency)).join(' + ') || '–');
  $('#checkout').disabled = cart.items.length === 0;
  const count = cart.items.reduce((n, i) => n + i.quantity, 0);
  $('#cart-count').hidden = count === 0;
  setText('#cart-count', String(count));
}

async function removeLine(holdId) {
  try {
    await api.removeFromCart(session.token, holdId);
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
  refreshCart();
}

function openCart() {
  $('#order-done').hidden = true;
  $('#cart-body').hidden = false;
  $('#cart-foot').hidden = false;
  $('#cart-drawer').hidden = false;
  document.body.classList.add('cart-open');
}

function closeCart() {
  $('#cart-drawer').hidden = true;
  document.body.classList.remove('cart-open');
}

$('#cart-button').addEventListener('click', async () => {
  if (!(await requireSession('Sign in to see your cart.'))) return;
  openCart();
  refreshCart();
});
$('#cart-close').addEventListener('click', closeCart);
$('#order-continue').addEventListener('click', closeCart);

// The order's video receipt: the stream around the moment it was bought, once its replay exists.
async function showReceipt(order) {
  let slot = $('#order-receipt');
  if (!slot) {
    slot = h('p', { id: 'order-receipt', class: 'muted' });
    $('#order-summary').after(slot);
  }
  slot.replaceChildren();
  if (!order.receiptUrl) return;
  // a live stream has no replay yet: nothing to ask for
  const ended = state.stream && state.stream.state === 'ended';
  const ready = ended && await fetch(order.receiptUrl).then((r) => r.ok).catch(() => false);
  slot.dataset.ready = String(ready);
  if (ready) slot.append(h('a', { href: order.watchUrl }, 'Watch the moment you bought it'));
  else slot.textContent = 'Your video receipt will be ready when the stream’s replay is.';
}

let checkoutKey = null;
$('#checkout').addEventListener('click', async () => {
  const button = $('#checkout');
  button.disabled = true;
  setText(button, 'Paying…');
  checkoutKey = checkoutKey || newId();
  try {
    const order = toOrder(await api.checkout(session.token, checkoutKey));
    checkoutKey = null;
    setText('#order-summary', `Order ${order.id} · ${formatMoney(order.total.amountMinor, order.total.currency)}. We will email you when it ships.`);
    $('#cart-body').hidden = true;
    $('#cart-foot').hidden = true;
    $('#order-done').hidden = false;
    showReceipt(order);
    state.cart = { items: [], totals: [], expired: [] };
    renderCart();
  } catch (err) {
    // The same key is reused on retry so a lost response never pays twice.
    if (err.status && err.status < 500 && err.code !== 'network') checkoutKey = null;
    toast(friendlyError(err), 'error');
    refreshCart();
  } finally {
    setText(button, 'Checkout');
    button.disabled = !(state.cart && state.cart.items.length);
  }
});

// --- start -------------------------------------------------------------------------------------

async function main() {
  try {
    showStream(await api.getStream(streamId));
  } catch (err) {
    if (err.status === 404) {
      state.stream = { state: 'not_found' };
      setText('#title', 'Stream not found');
      updateStage();
      return;
    }
    toast(friendlyError(err), 'error');
  }
  if (hadExpiredSession()) toast(signInProblem('viewer'), 'error');
  live.start();
  if (!state.stream || state.stream.state !== 'ended') {
    play(new URLSearchParams(location.search).get('hls') === '1' ? 'hls' : 'webrtc');
  } else if (state.stream) {
    const { startReplay } = await import('./replay.js');
    const params = new URLSearchParams(location.search);
    state.replay = await startReplay({
      video, streamId, token: session && session.token, addToCart,
      clipId: params.get('clip'), receiptId: params.get('receipt'),
    });
    updateStage();
  }
  refreshCart();
  document.body.dataset.ready = 'true';
}

main();
