// The host's control panel: products and stock, pin, flash deals, live numbers, moderation.

import { api, normalizeDeal } from './api.js';
import { currentSession, signIn } from './auth.js';
import { ChatView } from './chat.js';
import { LiveEvents } from './events.js';
import { h, $, clear, setText, countdown, formatMoney, formatCount, parseMoney, examplePrice, toast, newId, friendlyError } from './ui.js';

const streamId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
let session = currentSession('host');
let stream = null;
let products = [];
let pinnedSku = null;
let deals = [];
let live = null;

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
    if (!product.missing) select.append(h('option', { value: product.sku }, `${product.title} (${product.sku})`));
  }
  showDealPriceHint();
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

function updateProductStock(raw) {
  const product = products.find((p) => p.sku === raw.sku);
  if (!product || raw.deal_id) return;
  const left = raw.sold_out ? 0 : raw.left ?? raw.stock_left ?? raw.available;
  if (left !== undefined) {
    product.stock = left;
    renderProducts();
  }
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

function upsertDeal(deal) {
  if (!deal || !deal.id) return;
  const index = deals.findIndex((d) => d.id === deal.id);
  if (index >= 0) deals[index] = { ...deals[index], ...Object.fromEntries(Object.entries(deal).filter(([, v]) => v !== null && v !== undefined)) };
  else deals.push(deal);
  renderDeals();
}

function renderDeals() {
  const list = clear($('#deal-list'));
  for (const deal of deals.filter((d) => d.state === 'active')) {
    const clock = h('span', { class: 'countdown' });
    list.append(h('li', { class: 'deal-row', dataset: { deal: deal.id } },
      h('div', {},
        h('p', { class: 'deal-row-title' }, '⚡ ', deal.title || deal.sku, ' · ', formatMoney(deal.amountMinor, deal.currency)),
        h('p', { class: 'muted small' }, deal.left !== null ? `${deal.left} of ${deal.quantity ?? '?'} left` : '', ' · ends in ', clock)),
      h('button', { class: 'btn btn-small btn-danger', type: 'button', onclick: () => endDeal(deal.id) }, 'End')));
    if (deal.endsAtMs) countdown(clock, deal.endsAtMs, () => { deal.state = 'ended'; renderDeals(); });
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

async function loadDeals() {
  try {
    deals = await api.listDeals(streamId, session.token);
    renderDeals();
    const pin = await api.getPin(streamId);
    if (pin && pinnedSku === null) {
      pinnedSku = pin.sku;
      renderProducts();
    }
  } catch { /* inventory not on this server: the form reports errors when used */ }
}

// --- numbers -------------------------------------------------------------------------------------

// Numbers from GET /stats or a pushed 'stats' event; a field the payload lacks keeps its
// last value (different sources may report different subsets).
function showStats(raw) {
  const s = raw.stats || raw;
  const show = (selector, value, format) => {
    if (value !== undefined && value !== null) setText(selector, format(value));
  };
  show('#stat-viewers', s.viewers_now ?? s.viewers, formatCount);
  show('#stat-peak', s.viewers_peak ?? s.peak_viewers, (n) => `peak ${formatCount(n)}`);
  show('#stat-likes', s.likes, formatCount);
  show('#stat-carts', s.add_to_carts, formatCount);
  show('#stat-orders', s.orders, formatCount);
  // GMV is a list, one amount per currency sold in.
  show('#stat-gmv', s.gmv, (gmv) => {
    const amounts = Array.isArray(gmv) ? gmv : [gmv];
    const currency = (products.find((p) => !p.missing) || {}).currency || null;
    return (amounts.length ? amounts.map((m) => formatMoney(m.amount_minor, m.currency)).join(' + ') : formatMoney(0, currency)) || '–';
  });
  show('#stat-conversion', s.conversion, (c) => `${(c * 100).toFixed(1)}%`);
  setText('#numbers-updated', `updated ${new Date().toLocaleTimeString()}`);
}

async function pollStats() {
  try {
    showStats(await api.getStats(streamId, session.token));
  } catch (err) {
    if (err.status === 404) setText('#numbers-updated', 'numbers are not available on this server yet');
  }
}

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
  if (seconds === undefined || seconds === null) return;
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
  if (live && live.sendChat(text, newId())) $('#chat-input').value = '';
  else toast('Chat is reconnecting. Try again in a moment.', 'error');
});

function startEvents() {
  live = new LiveEvents(streamId, { token: session.token });
  live.addEventListener('status', (event) => {
    $('#events-status').dataset.status = event.detail;
    setText('#events-status', event.detail === 'open' ? '' : `${event.detail}…`);
  });
  live.addEventListener('hello', (event) => {
    const snap = event.detail;
    if (!snap.recovered) chat.reset(snap.chat || snap.history || snap.messages || []);
    showSlowMode(snap.slow_mode_s);
    if (snap.stream && snap.stream.state && stream.state !== snap.stream.state) { stream.state = snap.stream.state; showStream(); }
    const pinned = snap.pinned || snap.pin;
    if (pinned) pinnedSku = pinned.sku || (pinned.product && pinned.product.sku);
    for (const raw of snap.deals || []) upsertDeal(normalizeDeal(raw));
    renderProducts();
  });
  live.addEventListener('chat.message', (event) => chat.add(event.detail));
  live.addEventListener('chat.settings', (event) => showSlowMode(event.detail.slow_mode_s));
  live.addEventListener('chat.deleted', (event) => chat.remove(event.detail));
  live.addEventListener('pin.set', (event) => { pinnedSku = event.detail.sku || (event.detail.product && event.detail.product.sku); renderProducts(); });
  live.addEventListener('pin.cleared', () => { pinnedSku = null; renderProducts(); });
  live.addEventListener('deal.started', (event) => upsertDeal({ ...normalizeDeal(event.detail), state: 'active' }));
  live.addEventListener('deal.updated', (event) => upsertDeal(normalizeDeal(event.detail)));
  live.addEventListener('deal.ended', (event) => {
    const deal = deals.find((d) => d.id === (event.detail.id || event.detail.deal_id));
    if (deal) { deal.state = 'ended'; renderDeals(); }
  });
  live.addEventListener('stock', (event) => updateProductStock(event.detail));
  live.addEventListener('stats', (event) => showStats(event.detail));
  live.addEventListener('stream.state', (event) => { stream.state = event.detail.state; showStream(); });
  live.start();
}

// --- start ---------------------------------------------------------------------------------------

async function main() {
  if (!session) session = await signIn('host', 'The control panel needs a host or seller token for this stream.');
  if (!session) return;
  try {
    stream = await api.getStream(streamId, session.token);
  } catch (err) {
    setText('#title', err.status === 404 ? 'Stream not found' : friendlyError(err));
    return;
  }
  showStream();
  await loadProducts();
  loadDeals();
  startEvents();
  pollStats();
  setInterval(pollStats, 3000);
  document.body.dataset.ready = 'true';
}

main();
