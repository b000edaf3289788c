// Every REST call the pages make, in one place, so a changed path or field is a one-line fix.
// Errors come back as ApiError with the server's stable code and human message. Products,
// deals and stats are read by the readers in wire.js, which the live events share.

import { toAuction, toAuctionStats, toBidResult, toDeal, toOrder, toProduct, toStats } from './wire.js';

export class ApiError extends Error {
  // details: the error's other fields, such as {sku, have} for over_limit.
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// The selling formats' own modules (poll.js, giveaway.js, groupbuy.js, ...) call it too.
export async function request(method, path, { token, body, headers = {}, query } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      for (const item of [].concat(value)) if (item !== undefined && item !== null) params.append(key, item);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection.');
  }
  const type = response.headers.get('Content-Type') || '';
  const data = type.includes('application/json') ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const { code, message, ...details } = (data && data.error) || {};
    throw new ApiError(response.status, code || `http_${response.status}`,
      message || response.statusText || 'Request failed', details);
  }
  return data;
}

// --- the API ------------------------------------------------------------------------------

export const api = {
  // development conveniences
  devSettings: () => request('GET', '/api/dev'),
  mintDevToken: (name) => request('POST', '/api/dev/tokens', { body: { name } }),

  // streams
  directory: (token) => request('GET', '/api/directory', { token }).then((d) => d.streams),
  listStreams: (state, token) => request('GET', '/api/streams', { token, query: { state, limit: 50 } })
    .then((d) => d.streams),
  getStream: (id, token) => request('GET', `/api/streams/${encodeURIComponent(id)}`, { token }),
  // replays
  listReplays: (token) => request('GET', '/api/replays', { token }).then((d) => d.replays),
  getReplay: (id, token) => request('GET', `/api/streams/${encodeURIComponent(id)}/replay`, { token }),
  // product clips
  listClips: (token) => request('GET', '/api/clips', { token }).then((d) => d.clips),
  getClip: (id, token) => request('GET', `/api/clips/${encodeURIComponent(id)}`, { token }),
  streamClips: (id, token) => request('GET', `/api/streams/${encodeURIComponent(id)}/clips`, { token }).then((d) => d.clips),
  updateClip: (id, token, body) => request('PATCH', `/api/clips/${encodeURIComponent(id)}`, { token, body }),
  startStream: (id, token) => request('POST', `/api/streams/${encodeURIComponent(id)}/start`, { token }),
  endStream: (id, token) => request('POST', `/api/streams/${encodeURIComponent(id)}/end`, { token }),
  mediaStatus: (id, token) => request('GET', `/api/streams/${encodeURIComponent(id)}/media`, { token }),

  // catalog
  getProducts: async (skus, token) => {
    if (!skus.length) return [];
    const data = await request('GET', '/api/products', { token, query: { sku: skus } });
    return data.products.map(toProduct);
  },

  // deals and pins (what is pinned and running now comes with the live events' hello)
  startDeal: (streamId, token, deal) => request('POST', `/api/streams/${encodeURIComponent(streamId)}/deals`, {
    token,
    body: {
      sku: deal.sku,
      price: { amount_minor: deal.priceMinor, currency: deal.currency },
      quantity: deal.quantity,
      duration_s: deal.durationS,
      per_buyer_limit: deal.perBuyerLimit,
    },
  }).then(toDeal),
  endDeal: (dealId, token) => request('POST', `/api/deals/${encodeURIComponent(dealId)}/end`, { token }),
  startAuction: (streamId, token, auction) => request('POST', `/api/streams/${encodeURIComponent(streamId)}/auctions`, {
    token,
    body: {
      sku: auction.sku,
      start_price: { amount_minor: auction.startMinor, currency: auction.currency },
      duration_s: auction.durationS,
      soft_close_s: auction.softCloseS,
    },
  }).then(toAuction),
  cancelAuction: (auctionId, token) => request('POST', `/api/auctions/${encodeURIComponent(auctionId)}/cancel`, { token }).then(toAuction),
  getAuction: (auctionId) => request('GET', `/api/auctions/${encodeURIComponent(auctionId)}`).then(toAuction),
  bid: (auctionId, token, amount) => request('POST', `/api/auctions/${encodeURIComponent(auctionId)}/bids`, {
    token,
    body: { amount: { amount_minor: amount.amountMinor, currency: amount.currency }, key: amount.key },
  }).then(toBidResult),
  pin: (streamId, token, sku) => request('POST', `/api/streams/${encodeURIComponent(streamId)}/pin`, { token, body: { sku } }),
  unpin: (streamId, token) => request('DELETE', `/api/streams/${encodeURIComponent(streamId)}/pin`, { token }),

  // cart and checkout
  getCart: (token) => request('GET', '/api/cart', { token }),
  addToCart: (token, item) => request('POST', '/api/cart/items', {
    token,
    body: {
      stream_id: item.streamId, sku: item.sku, quantity: item.quantity || 1,
      ...(item.dealId ? { deal_id: item.dealId } : {}), ...(item.source ? { source: item.source } : {}),
      ...(typeof item.positionS === 'number' ? { position_s: Math.max(0, Math.round(item.positionS * 1000) / 1000) } : {}),
    },
  }),
  removeFromCart: (token, holdId) => request('DELETE', `/api/cart/items/${encodeURIComponent(holdId)}`, { token }),
  checkout: (token, idempotencyKey, body = {}) => request('POST', '/api/checkout', {
    token, body, headers: { 'Idempotency-Key': idempotencyKey },
  }),
  // the buyer's orders, newest first, and one of them
  listOrders: (token) => request('GET', '/api/orders', { token }).then((d) => d.orders.map(toOrder)),
  getOrder: (id, token) => request('GET', `/api/orders/${encodeURIComponent(id)}`, { token }).then(toOrder),

  // numbers for hosts
  getAuctionStats: (streamId, token) => request('GET', `/api/streams/${encodeURIComponent(streamId)}/auction-stats`, { token }).then(toAuctionStats),
  getStats: (streamId, token) => request('GET', `/api/streams/${encodeURIComponent(streamId)}/stats`, { token }).then(toStats),

  // chat moderation (hosts)
  // A message's id is its chat offset.
  deleteMessage: (streamId, token, messageId) => request('DELETE',
    `/api/streams/${encodeURIComponent(streamId)}/chat/${encodeURIComponent(messageId)}`, { token }),
  // seconds: a time-out; none: a ban for good.
  restrictUser: (streamId, token, userSub, seconds) => request('POST',
    `/api/streams/${encodeURIComponent(streamId)}/moderation/bans`, {
      token, body: seconds ? { user: userSub, seconds } : { user: userSub },
    }),
  setSlowMode: (streamId, token, seconds) => request('PUT',
    `/api/streams/${encodeURIComponent(streamId)}/moderation/slow-mode`, { token, body: { seconds } }),
};
