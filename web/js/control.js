// The host's control panel: products and stock, pin, flash deals, live numbers, moderation.

import { api } from './api.js';
import { chatter, currentSession, signInProblem, hadExpiredSession, showLiveState, signIn } from './auth.js';
import { ChatView } from './chat.js';
import { GiveawayHost } from './giveaway.js';
import { PollHost } from './poll.js';
import { LiveEvents } from './events.js';
import { GroupBuyHost } from './groupbuy.js';
import { KnockdownHost } from './knockdown.js';
import { h, $, clear, setText, countdown, formatMoney, formatCount, parseMoney, examplePrice, toast, friendlyError } from './ui.js';

const streamId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
let session = currentSession('host');
let stream = null;
let products = [];
let pinnedSku = null;
let deals = [];
let live = null;
let statsTimer = null;

// --- stream state --------------------------------------------------------------------------------

function showStream() {
  setText('#title', stream.title);
  document.title = `${stream.title} · Control panel`;
  const pill = $('#state-pill');
  pill.dataset.state = stream.state;
  setText(pill, { scheduled: 'Scheduled', live: 'Live', ended: 'Ended' }[stream.state] || stream.state);
  $('#end-stream').hidden = stream.state === 'ended';
  document.body.dataset.state = stream.state;
}

$('#end-stream').addEventListener('click', async () => {
  if (!window.confirm('End the stream for everyone? This cannot be undone.')) return;
  try {
    stream = await api.endStream(streamId, session.token);
    showStream();
    toast('The stream has ended.', 'ok');
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
});

// --- products and pins ---------------------------------------------------------------------------

async function loadProducts() {
  const skus = stream.featured_skus || [];
  const empty = $('#products-empty');
  if (!skus.length) {
    empty.hidden = false;
    setText(empty, 'No products are featured on this stream. Add SKUs to the stream’s featured_skus.');
    renderProducts();
    return;
  }
  const placeholder = (sku) => ({ sku, title: sku, amountMinor: null, currency: null, stock: null, imageUrl: '', missing: true });
  try {
    const found = new Map((await api.getProducts(skus, session.token)).map((p) => [p.sku, p]));
    // Featured SKUs the catalog does not know stay listed, so the host sees what is missing.
    products = skus.map((sku) => found.get(sku) || placeholder(sku));
    empty.hidden = true;
  } catch (err) {
    products = skus.map(placeholder);
    empty.hidden = false;
    setText(empty, err.status === 404 ? 'The catalog is not available on this server yet.' : friendlyError(err));
  }
  renderProducts();
}

function renderProducts() {
  const list = clear($('#product-list'));
  const select = clear($('#deal-sku'));
  const chosen = $('#auction-sku').value;
  const auctionSelect = clear($('#auction-sku'));
  for (const product of products) {
    const pinned = product.sku === pinnedSku;
    list.append(h('li', { class: `product-row${pinned ? ' pinned' : ''}`, dataset: { sku: product.sku } },
      product.imageUrl ? h('img', { src: product.imageUrl, alt: '', width: 44, height: 44 }) : h('span', { class: 'line-thumb' }, product.title.slice(0, 2)),
      h('div', { class: 'product-row-info' },
        h('p', { class: 'product-row-title' }, product.title),
        product.missing
          ? h('p', { class: 'product-row-meta' }, product.sku, ' · ', h('span', { class: 'stock out' }, 'not in the catalog'))
          : h('p', { class: 'product-row-meta' }, product.sku, ' · ', formatMoney(product.amountMinor, product.currency) || '–',
            ' · ', h('span', { class: `stock${product.stock === 0 ? ' out' : ''}` }, product.stock === null || product.stock === undefined ? 'stock –' : `${product.stock} in stock`))),
      product.missing ? null : pinned
        ? h('button', { class: 'btn btn-small', type: 'button', onclick: () => unpin() }, 'Unpin')
        : h('button', { class: 'btn btn-small btn-primary', type: 'button', onclick: () => pin(product.sku) }, 'Pin')));
    if (!product.missing) {
      select.append(h('option', { value: product.sku }, `${product.title} (${product.sku})`));
      auctionSelect.append(h('option', { value: product.sku, selected: product.sku === chosen }, `${product.title} (${product.sku})`));
    }
  }
  showDealPriceHint();
  giveawayHost.setProducts(products);
  for (const host of formatHosts) host.renderProducts();
}

// The deal price is typed in the product's currency, with that currency's digits.
function showDealPriceHint() {
  const product = products.find((p) => p.sku === $('#deal-sku').value);
  $('#deal-price').placeholder = examplePrice(product && product.currency);
}
$('#deal-sku').addEventListener('change', showDealPriceHint);

async function pin(sku) {
  try {
    await api.pin(streamId, session.token, sku);
    pinnedSku = sku;
    renderProducts();
    toast('Pinned for every viewer.', 'ok');
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
}

async function unpin() {
  try {
    await api.unpin(streamId, session.token);
    pinnedSku = null;
    renderProducts();
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
}

/** @param {import('./wire.js').Stock} stock */
function updateProductStock(stock) {
  const product = products.find((p) => p.sku === stock.sku);
  if (!product) return;
  product.stock = stock.soldOut ? 0 : stock.left;
  renderProducts();
}

// --- group buys and knock-downs (web/js/groupbuy.js, web/js/knockdown.js) ------------------------

const formatHooks = { streamId, session: () => session, products: () => products, changed: () => loadProducts() };
const formatHosts = [new GroupBuyHost($('#groupbuy-card'), formatHooks), new KnockdownHost($('#knockdown-card'), formatHooks)];

// --- auctions ------------------------------------------------------------------------------------
// The clock is in server time: every auction event carries the server's clock (serverMs).

let auction = null;
let auctionOffsetMs = 0;

$('#auction-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const sku = $('#auction-sku').value;
  const product = products.find((p) => p.sku === sku);
  const currency = (product && product.currency) || null;
  const startMinor = parseMoney($('#auction-price').value, currency);
  if (!sku) { toast('Pick a product to auction.', 'error'); return; }
  if (startMinor === null || startMinor <= 0) { toast(`Enter a price like ${examplePrice(currency)}.`, 'error'); return; }
  try {
    showAuction(await api.startAuction(streamId, session.token, {
      sku, startMinor, currency,
      durationS: Number($('#auction-duration').value),
      softCloseS: Number($('#auction-soft').value),
    }));
    toast('Auction is live!', 'ok');
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
});

$('#auction-cancel').addEventListener('click', async () => {
  if (!auction) return;
  try {
    showAuction(await api.cancelAuction(auction.id, session.token));
    toast('Auction cancelled; the unit is back in stock.', 'ok');
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
});

/** @param {import('./wire.js').Auction | null} next */
function showAuction(next) {
  const box = $('#auction-status');
  if (!next) { auction = null; box.hidden = true; return; }
  if (auction && auction.id === next.id && next.state === 'running' && next.bids < auction.bids) return;
  auction = next;
  auctionOffsetMs = next.serverMs - Date.now();
  renderAuction();
}

function renderAuction() {
  const box = $('#auction-status');
  const a = auction;
  box.hidden = false;
  box.dataset.state = a.state;
  box.dataset.auction = a.id;
  setText($('.row-auction-title', box), a.title || a.sku);
  setText($('.row-auction-price', box), a.priceMinor === null ? `from ${formatMoney(a.nextMinor, a.currency)}` : formatMoney(a.priceMinor, a.currency));
  setText($('.row-auction-leader', box), a.leaderName ? `${a.leaderName} leads` : 'no bids yet');
  setText($('.row-auction-bids', box), `${a.bids} bid${a.bids === 1 ? '' : 's'}`);
  const results = { sold: `Sold to ${a.leaderName} for ${a.priceMinor === null ? '' : formatMoney(a.priceMinor, a.currency)}`, unsold: 'Ended with no bids', cancelled: 'Cancelled' };
  setText($('.row-auction-result', box), results[a.state] || '');
  $('#auction-cancel').hidden = a.state !== 'running' || a.bids > 0;
  const clock = $('.row-auction-clock', box);
  if (a.state === 'running') countdown(clock, a.endsAtMs - auctionOffsetMs);
  else setText(clock, '0:00');
}

/** @param {import('./wire.js').AuctionBid} bid */
function onAuctionBid(bid) {
  if (!auction || auction.id !== bid.id || bid.bids < auction.bids) return;
  auctionOffsetMs = bid.serverMs - Date.now();
  Object.assign(auction, {
    priceMinor: bid.priceMinor, nextMinor: bid.nextMinor, leaderId: bid.leaderId,
    leaderName: bid.leaderName, bids: bid.bids, endsAtMs: bid.endsAtMs,
  });
  renderAuction();
}

// --- flash deals ---------------------------------------------------------------------------------

$('#deal-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const sku = $('#deal-sku').value;
  const product = products.find((p) => p.sku === sku);
  const currency = (product && product.currency) || null;
  const priceMinor = parseMoney($('#deal-price').value, currency);
  if (!sku) { toast('Pick a product for the deal.', 'error'); return; }
  if (priceMinor === null || priceMinor <= 0) { toast(`Enter a price like ${examplePrice(currency)}.`, 'error'); return; }
  try {
    const deal = await api.startDeal(streamId, session.token, {
      sku, priceMinor, currency,
      quantity: Number($('#deal-quantity').value),
      durationS: Number($('#deal-duration').value),
      perBuyerLimit: Number($('#deal-limit').value),
    });
    upsertDeal(deal);
    toast('Flash deal is live!', 'ok');
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
});

/** @param {import('./wire.js').Deal} deal */
function upsertDeal(deal) {
  const index = deals.findIndex((d) => d.id === deal.id);
  if (index >= 0) deals[index] = deal;
  else deals.push(deal);
  renderDeals();
}

/** @param {import('./wire.js').DealUpdate} update */
function updateDeal(update) {
  const deal = deals.find((d) => d.id === update.id);
  if (!deal) return;
  deal.left = update.left;
  renderDeals();
}

function renderDeals() {
  const list = clear($('#deal-list'));
  for (const deal of deals.filter((d) => d.state === 'active')) {
    const clock = h('span', { class: 'countdown' });
    list.append(h('li', { class: 'deal-row', dataset: { deal: deal.id } },
      h('div', {},
        h('p', { class: 'deal-row-title' }, '⚡ ', deal.title || deal.sku, ' · ', formatMoney(deal.amountMinor, deal.currency)),
        h('p', { class: 'muted small' }, `${deal.left} of ${deal.quantity} left`, ' · ends in ', clock)),
      h('button', { class: 'btn btn-small btn-danger', type: 'button', onclick: () => endDeal(deal.id) }, 'End')));
    countdown(clock, deal.endsAtMs, () => { deal.state = 'ended'; renderDeals(); });
  }
}

async function endDeal(id) {
  try {
    await api.endDeal(id, session.token);
    const deal = deals.find((d) => d.id === id);
    if (deal) deal.state = 'ended';
    renderDeals();
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
}

// --- numbers -------------------------------------------------------------------------------------

// Numbers from GET /stats or a pushed 'stats' event.
/** @param {import('./wire.js').Stats} stats */
function showStats(stats) {
  setText('#stat-viewers', formatCount(stats.viewersNow));
  setText('#stat-peak', `peak ${formatCount(stats.viewersPeak)}`);
  setText('#stat-likes', formatCount(stats.likes));
  setText('#stat-carts', formatCount(stats.addToCarts));
  setText('#stat-orders', formatCount(stats.orders));
  // GMV is a list, one amount per currency sold in.
  const currency = (products.find((p) => !p.missing) || {}).currency || null;
  setText('#stat-gmv', (stats.gmv.length
    ? stats.gmv.map((m) => formatMoney(m.amountMinor, m.currency)).join(' + ')
    : formatMoney(0, currency)) || '–');
  setText('#stat-conversion', `${(stats.conversion * 100).toFixed(1)}%`);
  setText('#numbers-updated', `updated ${new Date().toLocaleTimeString()}`);
}

async function pollStats() {
  try {
    showStats(await api.getStats(streamId, session.token));
  } catch (err) {
    if (err.status === 404) setText('#numbers-updated', 'numbers are not available on this server yet');
  }
  try {
    const numbers = await api.getAuctionStats(streamId, session.token);
    const won = numbers.gmv.map((m) => formatMoney(m.amountMinor, m.currency)).join(' + ');
    setText('#stat-auctions', `${numbers.sold} of ${numbers.auctions}`);
    setText('#stat-auction-bids', `${numbers.bids} bids · ${numbers.bidders} bidders${won ? ` · ${won}` : ''}`);
  } catch {
    // The sales numbers above say what went wrong.
  }
  try {
    const [polls, giveaways] = await Promise.all([pollHost.stats(), giveawayHost.stats()]);
    setText('#stat-polls', `${polls.polls}`);
    setText('#stat-poll-votes', `${polls.votes} votes · ${polls.voters} voters`);
    setText('#stat-giveaways', `${giveaways.winners} of ${giveaways.giveaways}`);
    setText('#stat-giveaway-entries', `${giveaways.entries} entries · ${giveaways.prize_units} given`);
  } catch {
    // As above.
  }
  for (const host of formatHosts) host.pollStats();
}

const pollHost = new PollHost($('#poll-card'), { streamId, session: () => session });
const giveawayHost = new GiveawayHost($('#giveaway-card'), { streamId, session: () => session, changed: () => loadProducts() });

// --- chat and moderation -------------------------------------------------------------------------

const chat = new ChatView($('#chat'), {
  actions: [
    { label: 'Delete', title: 'Delete this message for everyone', run: (m) => moderate(() => api.deleteMessage(streamId, session.token, m.id), 'Message deleted.') },
    { label: 'Time out', title: 'Mute this person for 10 minutes', run: (m) => moderate(() => api.restrictUser(streamId, session.token, m.sub, 600), `${m.name} is timed out for 10 minutes.`) },
    { label: 'Ban', title: 'Ban this person from the chat', run: (m) => moderate(() => api.restrictUser(streamId, session.token, m.sub, 0), `${m.name} is banned.`) },
  ],
});

async function moderate(action, done) {
  try {
    await action();
    toast(done, 'ok');
  } catch (err) {
    toast(friendlyError(err), 'error');
  }
}

function showSlowMode(seconds) {
  const select = $('#slow-mode');
  if (![...select.options].some((o) => o.value === String(seconds))) {
    select.append(h('option', { value: String(seconds) }, `${seconds} s`));
  }
  select.value = String(seconds);
}

$('#slow-mode').addEventListener('change', (event) => moderate(
  () => api.setSlowMode(streamId, session.token, Number(event.target.value)),
  Number(event.target.value) ? `Slow mode: ${event.target.value} s between messages.` : 'Slow mode is off.'));

$('#chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('#chat-input').value.trim();
  if (!text) return;
  if (live && live.sendChat(text)) $('#chat-input').value = '';
  else toast('Chat is not connected. Reload the page to chat.', 'error');
});

function startEvents() {
  live = new LiveEvents(streamId, { token: session.token });
  showLiveState(live, 'host', (signedIn) => {
    session = signedIn;
    chat.self = chatter(session);
    pollStats();
    statsTimer = setInterval(pollStats, 3000);
  });
  // A refused token is refused by the REST API too: stop asking for numbers with it.
  live.addEventListener('stopped', (event) => { if (event.detail.status === 'refused') clearInterval(statsTimer); });
  /** @param {CustomEvent<import('./wire.js').Hello>} event */
  live.addEventListener('hello', (event) => {
    const hello = event.detail;
    if (!hello.recovered) chat.reset(hello.chat);
    showSlowMode(hello.slowModeS);
    if (stream.state !== hello.stream.state) { stream.state = hello.stream.state; showStream(); }
    pinnedSku = hello.pin ? hello.pin.sku : null;
    deals = hello.deals;
    renderDeals();
    // The snapshot may be a moment old: read the auction itself (and the server's clock).
    if (hello.auction) api.getAuction(hello.auction.id).then(showAuction, () => showAuction(hello.auction));
    renderProducts();
  });
  live.addEventListener('chat.settings', (event) => showSlowMode(event.detail.slowModeS));
  chat.follow(live, $('#chat-input'));
  live.addEventListener('pin.set', (event) => { pinnedSku = event.detail.sku; renderProducts(); });
  live.addEventListener('pin.cleared', () => { pinnedSku = null; renderProducts(); });
  live.addEventListener('deal.started', (event) => upsertDeal(event.detail));
  live.addEventListener('deal.updated', (event) => updateDeal(event.detail));
  live.addEventListener('deal.ended', (event) => upsertDeal(event.detail));
  live.addEventListener('stock', (event) => updateProductStock(event.detail));
  // An auction takes its unit out of stock when it starts and may give it back when it
  // ends: read the products' stock again then.
  live.addEventListener('auction.started', (event) => { showAuction(event.detail); loadProducts(); });
  live.addEventListener('auction.bid', (event) => onAuctionBid(event.detail));
  live.addEventListener('auction.ended', (event) => { showAuction(event.detail); loadProducts(); });
  live.addEventListener('auction.cancelled', (event) => { showAuction(event.detail); loadProducts(); });
  pollHost.follow(live);
  giveawayHost.follow(live);
  live.addEventListener('stats', (event) => showStats(event.detail));
  for (const host of formatHosts) host.follow(live);
  live.addEventListener('stream.state', (event) => { stream.state = event.detail.state; showStream(); });
  live.addEventListener('error', (event) => toast(friendlyError(event.detail), 'error'));
  live.start();
}

// --- start ---------------------------------------------------------------------------------------

async function main() {
  if (!session) session = await signIn('host', hadExpiredSession() ? signInProblem('host') : 'The control panel needs a host or seller token for this stream.');
  if (!session) return;
  try {
    stream = await api.getStream(streamId, session.token);
  } catch (err) {
    setText('#title', err.status === 404 ? 'Stream not found' : friendlyError(err));
    return;
  }
  showStream();
  chat.self = chatter(session);
  await loadProducts();
  startEvents();
  pollStats();
  statsTimer = setInterval(pollStats, 3000);
  document.body.dataset.ready = 'true';
}

// --- product clips of an ended stream ------------------------------------------------------------

function clipRow(clip) {
  const start = h('input', { type: 'number', step: '0.1', min: String(clip.span_start_s), max: String(clip.span_end_s), value: String(clip.start_s), class: 'clip-start', 'aria-label': 'Start (s)' });
  const end = h('input', { type: 'number', step: '0.1', min: String(clip.span_start_s), max: String(clip.span_end_s), value: String(clip.end_s), class: 'clip-end', 'aria-label': 'End (s)' });
  const save = async (body) => {
    try {
      await api.updateClip(clip.id, session.token, body);
      await loadClips();
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  };
  return h('li', { class: 'clip-row', dataset: { clip: clip.id, state: clip.state } },
    h('span', { class: 'product-title' }, clip.title),
    h('span', { class: 'clip-state' }, clip.state),
    start, end,
    h('button', { class: 'btn btn-small clip-trim', type: 'button', onclick: () => save({ start_s: Number(start.value), end_s: Number(end.value) }) }, 'Trim'),
    clip.state === 'published'
      ? h('button', { class: 'btn btn-small clip-hide', type: 'button', onclick: () => save({ state: 'hidden' }) }, 'Hide')
      : h('button', { class: 'btn btn-small clip-publish', type: 'button', onclick: () => save({ state: 'published' }) }, 'Publish'),
    h('a', { href: clip.watch_url, target: '_blank', rel: 'noopener' }, 'Watch'));
}

async function loadClips() {
  if (!stream || stream.state !== 'ended') return;
  const clips = await api.streamClips(streamId, session.token);
  $('#clips-card').hidden = false;
  const list = clear($('#clip-list'));
  if (!clips.length) list.append(h('li', { class: 'muted' }, 'No clips yet: they are made once the replay is ready.'));
  for (const clip of clips) list.append(clipRow(clip));
}

main().then(() => loadClips().catch(() => {}));
