// What the server sends, as the pages read it: one reader per event payload and REST body,
// each naming the server's fields exactly once. The events are described by the AsyncAPI
// document at /api/asyncapi.json, generated from their Structs (livecast/chat/events.py,
// livecast/inventory/, livecast/cart/stats.py, media.state in livecast/ingest/media.py; the
// list is livecast/asyncapi.py). A field the server renames is a one-line change here; no
// page reads a server field name itself.

/**
 * @typedef {{amountMinor: number, currency: string}} Money
 *
 * @typedef {object} Deal  a flash deal (inventory/deals.py Deal)
 * @property {string} id
 * @property {string} sku
 * @property {string} title
 * @property {string | null} imageUrl
 * @property {number} amountMinor     deal price
 * @property {string} currency
 * @property {number} listMinor       regular price, same currency
 * @property {number} quantity
 * @property {number} left
 * @property {number} sold
 * @property {number} perBuyerLimit
 * @property {'scheduled' | 'active' | 'ended'} state
 * @property {number} endsAtMs
 * @property {string | null} endedReason
 *
 * @typedef {object} DealUpdate  deal.updated: the numbers only
 * @property {string} id
 * @property {string} sku
 * @property {number} left
 * @property {number} sold
 * @property {boolean} soldOut
 *
 * @typedef {object} Pin  the pinned card (inventory/pins.py PinCard)
 * @property {string} sku
 * @property {string} title
 * @property {string | null} imageUrl
 * @property {number} amountMinor
 * @property {string} currency
 * @property {number} stock
 * @property {boolean} soldOut
 * @property {Deal | null} deal       the stream's running deal on this SKU
 *
 * @typedef {{sku: string, left: number, soldOut: boolean}} Stock
 *
 * @typedef {object} ChatMessage
 * @property {string} id              its chat offset
 * @property {string} text
 * @property {number} ts              server time, epoch ms
 * @property {string} clientId        the sender's client id
 * @property {string} sub             author's subject
 * @property {string} name            author's display name
 * @property {'viewer' | 'seller' | 'host' | 'admin'} role
 *
 * @typedef {{id: string}} ChatDeleted
 * @typedef {{slowModeS: number}} ChatSettings
 * @typedef {{total: number}} Likes
 * @typedef {{count: number}} Viewers
 * @typedef {{clientId: string, offset: string, duplicate: boolean}} ChatAck
 *
 * @typedef {object} StreamInfo
 * @property {string} id
 * @property {string} title
 * @property {string} sellerName
 * @property {'scheduled' | 'live' | 'ended'} state
 *
 * @typedef {object} StreamState  stream.state
 * @property {'scheduled' | 'live' | 'ended'} state
 * @property {'scheduled' | 'live' | 'ended'} previous
 *
 * @typedef {{state: 'idle' | 'live' | 'reconnecting' | 'ended', videoCodec: string | null}} MediaState
 *
 * @typedef {object} Stats  live numbers for hosts (cart/stats.py StreamStats)
 * @property {number} viewersNow
 * @property {number} viewersPeak
 * @property {number} likes
 * @property {number} addToCarts
 * @property {number} orders
 * @property {Money[]} gmv            one amount per currency sold in
 * @property {number} conversion      0..1
 *
 * @typedef {object} LiveError  an `error` event, or why the client stopped
 * @property {string} code
 * @property {string} message
 * @property {number | null} retryAfterMs
 *
 * @typedef {object} Hello  the snapshot sent first on every connection
 * @property {StreamInfo} stream
 * @property {{sub: string, name: string, role: string, moderator: boolean} | null} you
 * @property {Pin | null} pin
 * @property {Deal[]} deals           running deals
 * @property {number} likes
 * @property {number} viewers
 * @property {ChatMessage[]} chat     the last messages; empty when recovered
 * @property {number} slowModeS
 * @property {string} offset          newest chat offset it covers
 * @property {boolean} recovered      true: the missed chat events follow, chat is not reset
 * @property {Auction | null} auction the running auction
 *
 * @typedef {object} Auction  an auction (selling/auctions.py Auction); times are server ms
 * @property {string} id
 * @property {string} sku
 * @property {string} title
 * @property {'running' | 'sold' | 'unsold' | 'cancelled'} state
 * @property {string} currency
 * @property {number | null} priceMinor   the leading bid; null before the first
 * @property {number} nextMinor           the lowest bid accepted now
 * @property {string | null} leaderId
 * @property {string | null} leaderName
 * @property {number} bids
 * @property {number} softCloseS          0: sudden death
 * @property {number} endsAtMs            server clock
 * @property {number} serverMs            the server's clock when it was read or sent
 *
 * @typedef {object} AuctionBid  auction.bid: a bid moved the price
 * @property {string} id
 * @property {number} priceMinor
 * @property {number} nextMinor
 * @property {string} currency
 * @property {string} leaderId
 * @property {string} leaderName
 * @property {number} bids
 * @property {number} endsAtMs
 * @property {number} extendedMs
 * @property {number} serverMs
 */

/** @returns {Money} */
export function toMoney(raw) {
  return { amountMinor: raw.amount_minor, currency: raw.currency };
}

/**
 * A catalog product (inventory/catalog.py Product), from GET /api/products.
 * @returns {{sku: string, title: string, description: string, imageUrl: string | null,
 *   amountMinor: number, currency: string, stock: number}}
 */
export function toProduct(raw) {
  return {
    sku: raw.sku,
    title: raw.title,
    description: raw.description,
    imageUrl: raw.image_url,
    amountMinor: raw.price.amount_minor,
    currency: raw.price.currency,
    stock: raw.stock,
  };
}

/**
 * A cart line (cart/api.py CartLine). The hold's end is taken from seconds_left, measured by
 * the server's clock, so a skewed client clock does not matter.
 * @returns {{holdId: string, sku: string, title: string, quantity: number, unitMinor: number,
 *   currency: string, expiresAtMs: number, dealId: string | null}}
 */
export function toCartLine(raw) {
  return {
    holdId: raw.hold_id,
    sku: raw.sku,
    title: raw.title,
    quantity: raw.quantity,
    unitMinor: raw.unit_price.amount_minor,
    currency: raw.unit_price.currency,
    expiresAtMs: Date.now() + raw.seconds_left * 1000,
    dealId: raw.deal_id,
  };
}

/**
 * The buyer's cart (cart/api.py Cart), from GET /api/cart: its lines, one total per currency,
 * and the titles of lines whose hold expired (removed by this read).
 * @returns {{items: ReturnType<typeof toCartLine>[], totals: Money[], expired: string[]}}
 */
export function toCart(raw) {
  return {
    items: raw.lines.map(toCartLine),
    totals: raw.totals.map(toMoney),
    expired: raw.expired.map((line) => line.title),
  };
}

/**
 * A paid order (cart/orders.py Order), as POST /api/checkout, GET /api/orders and
 * GET /api/orders/{id} answer it. watchUrl: its video receipt played on the watch page.
 * @returns {{id: string, streamId: string, createdAt: string, total: Money, units: number,
 *   lines: {sku: string, title: string, quantity: number, unitPrice: Money}[],
 *   receiptUrl: string|null, watchUrl: string}}
 */
export function toOrder(raw) {
  return {
    id: raw.id,
    streamId: raw.stream_id,
    createdAt: raw.created_at,
    total: toMoney(raw.total),
    units: raw.units,
    lines: raw.lines.map((line) => ({
      sku: line.sku, title: line.title, quantity: line.quantity, unitPrice: toMoney(line.unit_price),
    })),
    receiptUrl: raw.receipt_url || null,
    watchUrl: `/watch/${encodeURIComponent(raw.stream_id)}?receipt=${encodeURIComponent(raw.id)}`,
  };
}

/** A Deal from deal.started / deal.ended, a hello, a pin, or the REST API. @returns {Deal} */
export function toDeal(raw) {
  return {
    id: raw.id,
    sku: raw.sku,
    title: raw.title,
    imageUrl: raw.image_url,
    amountMinor: raw.price.amount_minor,
    currency: raw.price.currency,
    listMinor: raw.regular_price.amount_minor,
    quantity: raw.quantity,
    left: raw.left,
    sold: raw.sold,
    perBuyerLimit: raw.per_buyer_limit,
    state: raw.state,
    endsAtMs: raw.ends_at_ms,
    endedReason: raw.ended_reason ?? null,
  };
}

/** @returns {DealUpdate} */
export function toDealUpdate(raw) {
  return { id: raw.id, sku: raw.sku, left: raw.left, sold: raw.sold, soldOut: raw.sold_out };
}

/** pin.set, the hello's `pinned`, or GET /api/streams/{id}/pin. @returns {Pin} */
export function toPin(raw) {
  return {
    sku: raw.sku,
    title: raw.title,
    imageUrl: raw.image_url,
    amountMinor: raw.price.amount_minor,
    currency: raw.price.currency,
    stock: raw.stock_left,
    soldOut: raw.sold_out,
    deal: raw.deal ? toDeal(raw.deal) : null,
  };
}

/** @returns {Stock} */
export function toStock(raw) {
  return { sku: raw.sku, left: raw.left, soldOut: raw.sold_out };
}

/** A chat.message event, or a message of the hello's history. @returns {ChatMessage} */
export function toChatMessage(raw) {
  return {
    id: raw.id,
    text: raw.text,
    ts: raw.ts,
    clientId: raw.client_id,
    sub: raw.user.id,
    name: raw.user.name,
    role: raw.user.role,
  };
}

/** @returns {Stats} */
export function toStats(raw) {
  return {
    viewersNow: raw.viewers_now,
    viewersPeak: raw.viewers_peak,
    likes: raw.likes,
    addToCarts: raw.add_to_carts,
    orders: raw.orders,
    gmv: raw.gmv.map(toMoney),
    conversion: raw.conversion,
  };
}

/** @returns {LiveError} */
export function toError(raw) {
  return { code: raw.code, message: raw.message, retryAfterMs: raw.retry_after_ms ?? null };
}

/** auction.started/ended/cancelled, the hello's state.auction, or the REST API. @returns {Auction} */
export function toAuction(raw) {
  return {
    id: raw.id,
    sku: raw.sku,
    title: raw.title,
    state: raw.state,
    currency: raw.start_price.currency,
    priceMinor: raw.price ? raw.price.amount_minor : null,
    nextMinor: raw.next_bid.amount_minor,
    leaderId: raw.leader_id,
    leaderName: raw.leader_name,
    bids: raw.bids,
    softCloseS: raw.soft_close_s,
    endsAtMs: raw.ends_at_ms,
    serverMs: raw.server_ms,
  };
}

/**
 * A stream's auctions in numbers (selling/auctions.py AuctionStats).
 * @returns {{auctions: number, sold: number, bids: number, bidders: number, gmv: Money[]}}
 */
export function toAuctionStats(raw) {
  return { auctions: raw.auctions, sold: raw.sold, bids: raw.bids, bidders: raw.bidders, gmv: raw.gmv.map(toMoney) };
}

/** @returns {AuctionBid} */
export function toAuctionBid(raw) {
  return {
    id: raw.id,
    priceMinor: raw.price.amount_minor,
    nextMinor: raw.next_bid.amount_minor,
    currency: raw.price.currency,
    leaderId: raw.leader_id,
    leaderName: raw.leader_name,
    bids: raw.bids,
    endsAtMs: raw.ends_at_ms,
    extendedMs: raw.extended_ms,
    serverMs: raw.server_ms,
  };
}

/**
 * A bid's answer (selling/auctions.py BidResult).
 * @returns {{outcome: 'accepted' | 'outbid' | 'max_raised', leading: boolean, priceMinor: number,
 *   nextMinor: number, bids: number, endsAtMs: number, serverMs: number}}
 */
export function toBidResult(raw) {
  return {
    outcome: raw.outcome,
    leading: raw.leading,
    priceMinor: raw.price.amount_minor,
    nextMinor: raw.next_bid.amount_minor,
    bids: raw.bids,
    endsAtMs: raw.ends_at_ms,
    serverMs: raw.server_ms,
  };
}

/** @returns {Hello} */
export function toHello(raw) {
  const you = raw.you;
  return {
    stream: {
      id: raw.stream.id,
      title: raw.stream.title,
      sellerName: raw.stream.seller_name,
      state: raw.stream.state,
    },
    you: you ? { sub: you.id, name: you.name, role: you.role, moderator: you.moderator } : null,
    pin: raw.pinned ? toPin(raw.pinned) : null,
    deals: raw.deals.map(toDeal),
    likes: raw.likes,
    viewers: raw.viewers,
    chat: raw.chat.map(toChatMessage),
    slowModeS: raw.slow_mode_s,
    offset: raw.offset,
    recovered: raw.recovered,
    auction: raw.state && raw.state.auction ? toAuction(raw.state.auction) : null,
  };
}

// Where on the video a commerce event happened: the program date time (Unix ms) of the
// picture live then, the clock of the LL-HLS playlist; null when the stream had no media.
/** @returns {number | null} */
export function readMediaTime(frame) {
  return typeof frame.media_time_ms === 'number' ? frame.media_time_ms : null;
}

// Each server event type and the reader of its `data`. A type not listed here is not
// dispatched to the pages.
export const EVENT_READERS = {
  hello: toHello,
  'chat.message': toChatMessage,
  'chat.deleted': (raw) => ({ id: raw.id }),
  'chat.settings': (raw) => ({ slowModeS: raw.slow_mode_s }),
  'chat.ack': (raw) => ({ clientId: raw.client_id, offset: raw.offset, duplicate: raw.duplicate }),
  likes: (raw) => ({ total: raw.total }),
  viewers: (raw) => ({ count: raw.count }),
  'pin.set': toPin,
  'pin.cleared': (raw) => ({ sku: raw.sku }),
  'deal.started': toDeal,
  'deal.updated': toDealUpdate,
  'deal.ended': toDeal,
  stock: toStock,
  'auction.started': toAuction,
  'auction.bid': toAuctionBid,
  'auction.extended': (raw) => ({ id: raw.id, endsAtMs: raw.ends_at_ms, extendedMs: raw.extended_ms, serverMs: raw.server_ms }),
  'auction.ended': toAuction,
  'auction.cancelled': toAuction,
  'stream.state': (raw) => ({ state: raw.state, previous: raw.previous }),
  'media.state': (raw) => ({ state: raw.state, videoCodec: raw.video_codec }),
  stats: toStats,
  error: toError,
  pong: () => ({}),
};
