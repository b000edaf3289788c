// Group buys on the pages: the readers of their events and REST bodies (each server field
// named here once), their REST calls, the viewer's panel on the watch page (join with the
// tier progress, leave, the outcome) and the host's card in the control panel.
//
// The clock is in server time: every group buy event and answer carries the server's
// clock (serverMs); the offset between it and this device's clock turns the server's end
// time into a local one.

import { request } from './api.js';
import { EVENT_READERS, toMoney } from './wire.js';
import { $, h, clear, setText, countdown, formatMoney, parseMoney, toast, newId, friendlyError } from './ui.js';
import { AT_ONCE } from './timeline.js';

/**
 * @typedef {{minBuyers: number, amountMinor: number}} Tier
 *
 * @typedef {object} GroupBuy  a group buy (selling/groupbuy_types.py GroupBuy)
 * @property {string} id
 * @property {string} sku
 * @property {string} title
 * @property {'running' | 'capturing' | 'voiding' | 'succeeded' | 'failed'} state
 * @property {string} currency
 * @property {Tier[]} tiers
 * @property {number} minBuyers
 * @property {number} cap
 * @property {number} members
 * @property {number} priceMinor       what everyone pays now (final once closed)
 * @property {Tier | null} nextTier
 * @property {number} needed           more members the next tier needs
 * @property {number} joins
 * @property {number} captured
 * @property {number} endsAtMs
 * @property {number} serverMs
 */

const toTier = (raw) => ({ minBuyers: raw.min_buyers, amountMinor: raw.price.amount_minor });

/** groupbuy.started/ended, the hello's state.groupbuy, or the REST API. @returns {GroupBuy} */
export function toGroupBuy(raw) {
  return {
    id: raw.id,
    sku: raw.sku,
    title: raw.title,
    state: raw.state,
    currency: raw.price.currency,
    tiers: raw.tiers.map(toTier),
    minBuyers: raw.min_buyers,
    cap: raw.cap,
    members: raw.members,
    priceMinor: raw.price.amount_minor,
    nextTier: raw.next_tier ? toTier(raw.next_tier) : null,
    needed: raw.needed,
    joins: raw.joins,
    captured: raw.captured,
    endsAtMs: raw.ends_at_ms,
    serverMs: raw.server_ms,
  };
}

/** groupbuy.updated: members joined or left. */
export function toGroupBuyProgress(raw) {
  return {
    id: raw.id,
    members: raw.members,
    priceMinor: raw.price.amount_minor,
    nextTier: raw.next_tier ? toTier(raw.next_tier) : null,
    needed: raw.needed,
    endsAtMs: raw.ends_at_ms,
    serverMs: raw.server_ms,
  };
}

Object.assign(EVENT_READERS, {
  'groupbuy.started': toGroupBuy,
  'groupbuy.updated': toGroupBuyProgress,
  'groupbuy.ended': toGroupBuy,
});

const enc = encodeURIComponent;

export const groupBuyApi = {
  start: (streamId, token, g) => request('POST', `/api/streams/${enc(streamId)}/groupbuys`, {
    token,
    body: {
      sku: g.sku,
      tiers: g.tiers.map((t) => ({ min_buyers: t.minBuyers, price: { amount_minor: t.amountMinor, currency: g.currency } })),
      cap: g.cap,
      duration_s: g.durationS,
      ...(g.minBuyers ? { min_buyers: g.minBuyers } : {}),
    },
  }).then(toGroupBuy),
  current: (streamId) => request('GET', `/api/streams/${enc(streamId)}/groupbuy`)
    .then((d) => (d.groupbuy ? toGroupBuy(d.groupbuy) : null)),
  get: (id) => request('GET', `/api/groupbuys/${enc(id)}`).then(toGroupBuy),
  join: (id, token) => request('POST', `/api/groupbuys/${enc(id)}/join`, { token, body: { key: newId() } })
    .then((r) => ({ state: r.state, members: r.members, priceMinor: r.price.amount_minor, authorized: toMoney(r.authorized), orderId: r.order_id })),
  leave: (id, token) => request('POST', `/api/groupbuys/${enc(id)}/leave`, { token }).then(toGroupBuy),
  end: (id, token) => request('POST', `/api/groupbuys/${enc(id)}/end`, { token }).then(toGroupBuy),
  stats: (streamId, token) => request('GET', `/api/streams/${enc(streamId)}/groupbuy-stats`, { token })
    .then((s) => ({ runs: s.runs, succeeded: s.succeeded, joins: s.joins, units: s.units, gmv: s.gmv.map(toMoney) })),
};

const price = (g, minor = g.priceMinor) => formatMoney(minor, g.currency);

function progressText(g) {
  const joined = `${g.members} joined`;
  if (!g.nextTier) return `${joined} · lowest price reached`;
  return `${joined} · ${g.needed} more for ${price(g, g.nextTier.amountMinor)}`;
}

// --- the viewer's panel (watch page) --------------------------------------------------------

/** A group buy's live numbers from a groupbuy.updated. */
function progress(g, update) {
  Object.assign(g, { members: update.members, priceMinor: update.priceMinor, nextTier: update.nextTier, needed: update.needed });
}

export class GroupBuyPanel {
  /**
   * @param {HTMLElement} panel  #groupbuy-panel
   * @param {{session: () => any, requireSession: (why: string) => Promise<boolean>, paid: () => void}} hooks
   */
  constructor(panel, hooks) {
    this.panel = panel;
    this.hooks = hooks;
    /** @type {GroupBuy | null} */
    this.group = null;
    this.joined = false;
    this.offsetMs = 0;
    $('.groupbuy-join', panel).addEventListener('click', () => this.join());
    $('.groupbuy-leave', panel).addEventListener('click', () => this.leave());
  }

  follow(live) {
    // The hello's snapshot may be a moment old: read the group buy (and the clock) now.
    live.addEventListener('hello', (event) => {
      groupBuyApi.current(event.detail.stream.id).then((g) => this.show(g), () => {});
    });
    // On LL-HLS the start and the close show when the picture reaches them (hooks.timed);
    // members and the price are live counters.
    const timed = this.hooks.timed || AT_ONCE;
    live.addEventListener('groupbuy.started', (event) => timed.at(event.detail, (g) => this.show(g)));
    live.addEventListener('groupbuy.updated', (event) => {
      for (const waiting of timed.waiting(event.detail.id)) progress(waiting, event.detail);
      this.onUpdate(event.detail);
    });
    live.addEventListener('groupbuy.ended', (event) => timed.at(event.detail, (g) => this.onEnded(g)));
  }

  /** @param {GroupBuy | null} g */
  show(g) {
    if (!g || g.state !== 'running') { if (!this.group || !g || this.group.id !== g.id) this.hide(); return; }
    if (!this.group || this.group.id !== g.id) this.joined = false;
    this.group = g;
    this.offsetMs = g.serverMs - Date.now();
    this.panel.dataset.groupbuy = g.id;
    this.panel.dataset.state = 'running';
    setText($('.groupbuy-title', this.panel), g.title || g.sku);
    setText($('.groupbuy-result', this.panel), '');
    const tiers = clear($('.groupbuy-tiers', this.panel));
    for (const tier of g.tiers) tiers.append(h('li', { dataset: { min: String(tier.minBuyers) } }, `${tier.minBuyers}+ · ${price(g, tier.amountMinor)}`));
    this.render();
    this.panel.hidden = false;
  }

  hide() {
    this.group = null;
    this.panel.hidden = true;
    delete this.panel.dataset.groupbuy;
  }

  render() {
    const g = this.group;
    if (!g) return;
    setText($('.groupbuy-price', this.panel), price(g));
    setText($('.groupbuy-progress', this.panel), progressText(g));
    const bar = $('.groupbuy-bar', this.panel);
    const goal = g.nextTier ? g.nextTier.minBuyers : Math.max(g.members, 1);
    bar.max = goal;
    bar.value = Math.min(g.members, goal);
    for (const item of $('.groupbuy-tiers', this.panel).children) {
      item.classList.toggle('reached', g.members >= Number(item.dataset.min));
    }
    const running = g.state === 'running';
    const join = $('.groupbuy-join', this.panel);
    join.hidden = this.joined;
    join.disabled = !running || g.members >= g.cap;
    setText(join, `Join · pay at most ${price(g, g.tiers[0].amountMinor)}`);
    $('.groupbuy-leave', this.panel).hidden = !this.joined || !running;
    this.panel.classList.toggle('leading', this.joined);
    const clock = $('.groupbuy-clock', this.panel);
    clock.dataset.endsAtServer = String(g.endsAtMs);
    countdown(clock, g.endsAtMs - this.offsetMs);
  }

  onUpdate(update) {
    const g = this.group;
    if (!g || g.id !== update.id) return;
    this.offsetMs = update.serverMs - Date.now();
    progress(g, update);
    this.render();
  }

  /** @param {GroupBuy} g */
  onEnded(g) {
    if (!this.group || this.group.id !== g.id) return;
    const joined = this.joined;
    this.group = g;
    this.panel.dataset.state = g.state;
    $('.groupbuy-join', this.panel).disabled = true;
    $('.groupbuy-leave', this.panel).hidden = true;
    const won = g.state === 'capturing' || g.state === 'succeeded';
    let text = won ? `The group made it at ${price(g)}!` : 'The group did not fill: nobody pays.';
    if (joined) text = won ? `You got it at ${price(g)}: see your orders.` : 'The group did not fill: your card was not charged.';
    setText($('.groupbuy-result', this.panel), text);
    setText($('.groupbuy-clock', this.panel), '0:00');
    if (joined && won) this.hooks.paid();
    setTimeout(() => { if (this.group === g) this.hide(); }, 15000);
  }

  async join() {
    if (!(await this.hooks.requireSession('Sign in to join the group.'))) return;
    const g = this.group;
    if (!g) return;
    try {
      const result = await groupBuyApi.join(g.id, this.hooks.session().token);
      this.joined = true;
      toast(`You are in! ${formatMoney(result.authorized.amountMinor, result.authorized.currency)} is held on your card; you pay the final price.`, 'ok');
      if (result.members >= g.members) Object.assign(g, { members: result.members, priceMinor: result.priceMinor });
      this.render();
    } catch (err) {
      if (err.code === 'already_joined') { this.joined = true; this.render(); return; }
      toast(friendlyError(err), 'error');
    }
  }

  async leave() {
    const g = this.group;
    if (!g || !this.hooks.session()) return;
    try {
      this.show(await groupBuyApi.leave(g.id, this.hooks.session().token));
      this.joined = false;
      this.render();
      toast('You left the group; nothing is held on your card.', 'ok');
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }
}

// --- the host's card (control panel) --------------------------------------------------------

// "1:20.00, 10:17.00, 25:15.00" -> tiers, in the product's currency; null if malformed.
export function parseTiers(text, currency) {
  const tiers = [];
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const match = /^(\d+)\s*\+?\s*[:=]\s*(.+)$/.exec(part);
    if (!match) return null;
    const amountMinor = parseMoney(match[2], currency);
    if (amountMinor === null) return null;
    tiers.push({ minBuyers: Number(match[1]), amountMinor });
  }
  return tiers.length ? tiers : null;
}

export class GroupBuyHost {
  /**
   * @param {HTMLElement} card  the control panel's group buy card
   * @param {{streamId: string, session: () => any, products: () => any[], changed: () => void}} hooks
   */
  constructor(card, hooks) {
    this.card = card;
    this.hooks = hooks;
    /** @type {GroupBuy | null} */
    this.group = null;
    this.offsetMs = 0;
    $('#groupbuy-form', card).addEventListener('submit', (event) => { event.preventDefault(); this.start(); });
    $('#groupbuy-end', card).addEventListener('click', () => this.end());
  }

  renderProducts() {
    const select = $('#groupbuy-sku', this.card);
    const chosen = select.value;
    clear(select);
    for (const p of this.hooks.products()) {
      if (!p.missing) select.append(h('option', { value: p.sku, selected: p.sku === chosen }, `${p.title} (${p.sku})`));
    }
  }

  follow(live) {
    live.addEventListener('hello', () => groupBuyApi.current(this.hooks.streamId).then((g) => this.show(g), () => {}));
    live.addEventListener('groupbuy.started', (event) => this.show(event.detail));
    live.addEventListener('groupbuy.updated', (event) => {
      const g = this.group;
      if (!g || g.id !== event.detail.id) return;
      Object.assign(g, event.detail);
      this.render();
      this.hooks.changed();
    });
    live.addEventListener('groupbuy.ended', (event) => { this.show(event.detail); this.hooks.changed(); });
  }

  async start() {
    const sku = $('#groupbuy-sku', this.card).value;
    const product = this.hooks.products().find((p) => p.sku === sku);
    if (!product) { toast('Pick a product for the group buy.', 'error'); return; }
    const tiers = parseTiers($('#groupbuy-tiers', this.card).value, product.currency);
    if (!tiers) { toast('Write the tiers as buyers:price, e.g. 1:20.00, 10:17.00.', 'error'); return; }
    try {
      this.show(await groupBuyApi.start(this.hooks.streamId, this.hooks.session().token, {
        sku, currency: product.currency, tiers,
        cap: Number($('#groupbuy-cap', this.card).value),
        durationS: Number($('#groupbuy-duration', this.card).value),
        minBuyers: Number($('#groupbuy-min', this.card).value) || null,
      }));
      toast('The group buy is live!', 'ok');
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }

  async end() {
    if (!this.group) return;
    try {
      this.show(await groupBuyApi.end(this.group.id, this.hooks.session().token));
      this.hooks.changed();
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }

  /** @param {GroupBuy | null} g */
  show(g) {
    if (!g) { this.group = null; $('#groupbuy-status', this.card).hidden = true; return; }
    this.group = g;
    this.offsetMs = g.serverMs - Date.now();
    this.render();
  }

  render() {
    const g = this.group;
    const box = $('#groupbuy-status', this.card);
    if (!g) return;
    box.hidden = false;
    box.dataset.groupbuy = g.id;
    box.dataset.state = g.state;
    setText($('.row-groupbuy-title', box), g.title || g.sku);
    setText($('.row-groupbuy-price', box), price(g));
    setText($('.row-groupbuy-progress', box), progressText(g));
    const results = {
      capturing: `Made it: charging ${g.members} at ${price(g)}`,
      succeeded: `Sold ${g.captured} at ${price(g)}`,
      voiding: 'Did not fill: releasing the cards',
      failed: 'Did not fill: nobody was charged',
    };
    setText($('.row-groupbuy-result', box), results[g.state] || '');
    $('#groupbuy-end', this.card).hidden = g.state !== 'running';
    const clock = $('.row-groupbuy-clock', box);
    if (g.state === 'running') countdown(clock, g.endsAtMs - this.offsetMs);
    else setText(clock, '0:00');
  }

  async pollStats() {
    try {
      const s = await groupBuyApi.stats(this.hooks.streamId, this.hooks.session().token);
      const gmv = s.gmv.map((m) => formatMoney(m.amountMinor, m.currency)).join(' + ');
      setText('#stat-groupbuys', `${s.succeeded} of ${s.runs}`);
      setText('#stat-groupbuy-joins', `${s.joins} joins · ${s.units} units${gmv ? ` · ${gmv}` : ''}`);
    } catch {
      // The sales numbers say what went wrong.
    }
  }
}
