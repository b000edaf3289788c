// Price knock-downs on the pages: the readers of their events and REST bodies (each server
// field named here once), their REST calls, the viewer's panel on the watch page (tap to
// knock the price down, buy now at the current price) and the host's card in the control
// panel.
//
// Taps are coalesced like likes: the page counts them and sends the count a few times a
// second at most; the server counts them atomically and steps the price exactly once per
// step. The clock (time mode, and the deadline) is in server time (serverMs).

import { request } from './api.js';
import { EVENT_READERS, toMoney } from './wire.js';
import { $, h, clear, setText, countdown, formatMoney, parseMoney, toast, newId, friendlyError } from './ui.js';
import { AT_ONCE } from './timeline.js';

/**
 * @typedef {object} Knockdown  a knock-down (selling/knockdown_types.py Knockdown)
 * @property {string} id
 * @property {string} sku
 * @property {string} title
 * @property {'running' | 'sold_out' | 'ended'} state
 * @property {'taps' | 'time'} mode
 * @property {string} currency
 * @property {number} priceMinor       what a buy pays now
 * @property {number | null} nextMinor the price after the next step (null: at the floor)
 * @property {number} floorMinor
 * @property {number} taps
 * @property {number} tapsToNext
 * @property {number | null} nextStepAtMs
 * @property {number} left
 * @property {number | null} priceLeft
 * @property {number} sold
 * @property {number} endsAtMs
 * @property {number} serverMs
 */

/** knockdown.started/ended, the hello's state.knockdown, or the REST API. @returns {Knockdown} */
export function toKnockdown(raw) {
  return {
    id: raw.id,
    sku: raw.sku,
    title: raw.title,
    state: raw.state,
    mode: raw.mode,
    currency: raw.price.currency,
    priceMinor: raw.price.amount_minor,
    nextMinor: raw.next_price ? raw.next_price.amount_minor : null,
    floorMinor: raw.floor.amount_minor,
    taps: raw.taps,
    tapsToNext: raw.taps_to_next,
    nextStepAtMs: raw.next_step_at_ms,
    left: raw.left,
    priceLeft: raw.price_left,
    sold: raw.sold,
    endsAtMs: raw.ends_at_ms,
    serverMs: raw.server_ms,
  };
}

/** knockdown.updated: the price, taps and units now. */
export function toKnockdownProgress(raw) {
  return {
    id: raw.id,
    priceMinor: raw.price.amount_minor,
    nextMinor: raw.next_price ? raw.next_price.amount_minor : null,
    taps: raw.taps,
    tapsToNext: raw.taps_to_next,
    nextStepAtMs: raw.next_step_at_ms,
    left: raw.left,
    priceLeft: raw.price_left,
    sold: raw.sold,
    serverMs: raw.server_ms,
  };
}

Object.assign(EVENT_READERS, {
  'knockdown.started': toKnockdown,
  'knockdown.updated': toKnockdownProgress,
  'knockdown.ended': toKnockdown,
});

const enc = encodeURIComponent;

export const knockdownApi = {
  start: (streamId, token, k) => {
    const money = (amountMinor) => ({ amount_minor: amountMinor, currency: k.currency });
    return request('POST', `/api/streams/${enc(streamId)}/knockdowns`, {
      token,
      body: {
        sku: k.sku,
        start_price: money(k.startMinor),
        step: money(k.stepMinor),
        floor: money(k.floorMinor),
        quantity: k.quantity,
        per_price: k.perPrice,
        mode: k.mode,
        taps_per_step: k.tapsPerStep,
        step_every_s: k.stepEveryS,
        duration_s: k.durationS,
      },
    }).then(toKnockdown);
  },
  current: (streamId) => request('GET', `/api/streams/${enc(streamId)}/knockdown`)
    .then((d) => (d.knockdown ? toKnockdown(d.knockdown) : null)),
  tap: (id, token, count) => request('POST', `/api/knockdowns/${enc(id)}/taps`, { token, body: { count } })
    .then((r) => ({ priceMinor: r.price.amount_minor, taps: r.taps, tapsToNext: r.taps_to_next })),
  buy: (id, token) => request('POST', `/api/knockdowns/${enc(id)}/buy`, { token, body: { key: newId() } })
    .then((r) => ({ holdId: r.hold_id, price: toMoney(r.price), left: r.left })),
  end: (id, token) => request('POST', `/api/knockdowns/${enc(id)}/end`, { token }).then(toKnockdown),
  stats: (streamId, token) => request('GET', `/api/streams/${enc(streamId)}/knockdown-stats`, { token })
    .then((s) => ({ runs: s.runs, taps: s.taps, steps: s.steps, units: s.units, gmv: s.gmv.map(toMoney) })),
};

const price = (k, minor = k.priceMinor) => formatMoney(minor, k.currency);

function nextText(k) {
  if (k.nextMinor === null) return 'Lowest price';
  if (k.mode === 'taps') return `${k.tapsToNext} tap${k.tapsToNext === 1 ? '' : 's'} to ${price(k, k.nextMinor)}`;
  return `${price(k, k.nextMinor)} next`;
}

// --- the viewer's panel (watch page) --------------------------------------------------------

/** A knock-down's live numbers from a knockdown.updated; whether they changed. */
function progress(k, update) {
  // Taps only ever grow: an older update arriving late changes nothing.
  if (update.taps < k.taps && update.priceMinor >= k.priceMinor && update.sold <= k.sold) return false;
  Object.assign(k, update);
  return true;
}

export class KnockdownPanel {
  /**
   * @param {HTMLElement} panel  #knockdown-panel
   * @param {{session: () => any, requireSession: (why: string) => Promise<boolean>, bought: () => void}} hooks
   */
  constructor(panel, hooks) {
    this.panel = panel;
    this.hooks = hooks;
    /** @type {Knockdown | null} */
    this.knock = null;
    this.offsetMs = 0;
    this.pendingTaps = 0;
    this.flushing = null;
    $('.knockdown-tap', panel).addEventListener('click', () => this.tap());
    $('.knockdown-buy', panel).addEventListener('click', () => this.buy());
  }

  follow(live) {
    live.addEventListener('hello', (event) => {
      knockdownApi.current(event.detail.stream.id).then((k) => this.show(k), () => {});
    });
    // On LL-HLS the start and the end show when the picture reaches them (hooks.timed);
    // the price, taps and units are live counters.
    const timed = this.hooks.timed || AT_ONCE;
    live.addEventListener('knockdown.started', (event) => timed.at(event.detail, (k) => this.show(k)));
    live.addEventListener('knockdown.updated', (event) => {
      for (const waiting of timed.waiting(event.detail.id)) progress(waiting, event.detail);
      this.onUpdate(event.detail);
    });
    live.addEventListener('knockdown.ended', (event) => timed.at(event.detail, (k) => this.onEnded(k)));
  }

  /** @param {Knockdown | null} k */
  show(k) {
    if (!k || k.state !== 'running') { if (!this.knock || !k || this.knock.id !== k.id) this.hide(); return; }
    this.knock = k;
    this.offsetMs = k.serverMs - Date.now();
    this.panel.dataset.knockdown = k.id;
    this.panel.dataset.state = 'running';
    setText($('.knockdown-title', this.panel), k.title || k.sku);
    setText($('.knockdown-result', this.panel), '');
    this.render();
    this.panel.hidden = false;
  }

  hide() {
    this.knock = null;
    this.panel.hidden = true;
    delete this.panel.dataset.knockdown;
  }

  render() {
    const k = this.knock;
    if (!k) return;
    const running = k.state === 'running';
    setText($('.knockdown-price', this.panel), price(k));
    setText($('.knockdown-next', this.panel), nextText(k));
    const left = k.priceLeft === null ? `${k.left} left` : `${Math.min(k.left, k.priceLeft)} left at this price`;
    setText($('.knockdown-left', this.panel), left);
    const tap = $('.knockdown-tap', this.panel);
    tap.hidden = k.mode !== 'taps' || k.nextMinor === null;
    tap.disabled = !running;
    const buy = $('.knockdown-buy', this.panel);
    buy.disabled = !running || k.left < 1 || k.priceLeft === 0;
    setText(buy, `Buy now · ${price(k)}`);
    const clock = $('.knockdown-clock', this.panel);
    clock.dataset.endsAtServer = String(k.endsAtMs);
    countdown(clock, k.endsAtMs - this.offsetMs);
  }

  onUpdate(update) {
    const k = this.knock;
    if (!k || k.id !== update.id) return;
    this.offsetMs = update.serverMs - Date.now();
    if (progress(k, update)) this.render();
  }

  /** @param {Knockdown} k */
  onEnded(k) {
    if (!this.knock || this.knock.id !== k.id) return;
    this.knock = k;
    this.panel.dataset.state = k.state;
    $('.knockdown-tap', this.panel).disabled = true;
    $('.knockdown-buy', this.panel).disabled = true;
    setText($('.knockdown-result', this.panel), k.state === 'sold_out' ? 'Sold out!' : 'The knock-down is over.');
    setText($('.knockdown-clock', this.panel), '0:00');
    setTimeout(() => { if (this.knock === k) this.hide(); }, 15000);
  }

  async tap() {
    if (!(await this.hooks.requireSession('Sign in to knock the price down.'))) return;
    this.pendingTaps += 1;
    const k = this.knock;
    if (k && k.mode === 'taps' && k.tapsToNext > 1) { k.tapsToNext -= 1; this.render(); }
    if (!this.flushing) this.flushing = setTimeout(() => this.flushTaps(), 250);
  }

  async flushTaps() {
    this.flushing = null;
    const k = this.knock;
    const count = Math.min(this.pendingTaps, 50);
    this.pendingTaps -= count;
    if (!k || !count) return;
    try {
      const result = await knockdownApi.tap(k.id, this.hooks.session().token, count);
      if (this.knock === k && result.priceMinor <= k.priceMinor) {
        Object.assign(k, { priceMinor: result.priceMinor, taps: Math.max(k.taps, result.taps), tapsToNext: result.tapsToNext });
        this.render();
      }
    } catch (err) {
      this.pendingTaps = 0;
      toast(friendlyError(err), 'error');
    }
    if (this.pendingTaps && !this.flushing) this.flushing = setTimeout(() => this.flushTaps(), 250);
  }

  async buy() {
    if (!(await this.hooks.requireSession('Sign in to buy.'))) return;
    const k = this.knock;
    if (!k) return;
    try {
      const result = await knockdownApi.buy(k.id, this.hooks.session().token);
      toast(`Yours at ${formatMoney(result.price.amountMinor, result.price.currency)}! It is in your cart.`, 'ok');
      this.hooks.bought();
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }
}

// --- the host's card (control panel) --------------------------------------------------------

export class KnockdownHost {
  /**
   * @param {HTMLElement} card  the control panel's knock-down card
   * @param {{streamId: string, session: () => any, products: () => any[], changed: () => void}} hooks
   */
  constructor(card, hooks) {
    this.card = card;
    this.hooks = hooks;
    /** @type {Knockdown | null} */
    this.knock = null;
    this.offsetMs = 0;
    $('#knockdown-form', card).addEventListener('submit', (event) => { event.preventDefault(); this.start(); });
    $('#knockdown-end', card).addEventListener('click', () => this.end());
    $('#knockdown-mode', card).addEventListener('change', () => this.showMode());
    this.showMode();
  }

  showMode() {
    const taps = $('#knockdown-mode', this.card).value === 'taps';
    $('#knockdown-every-taps', this.card).closest('label').hidden = !taps;
    $('#knockdown-every-s', this.card).closest('label').hidden = taps;
  }

  renderProducts() {
    const select = $('#knockdown-sku', this.card);
    const chosen = select.value;
    clear(select);
    for (const p of this.hooks.products()) {
      if (!p.missing) select.append(h('option', { value: p.sku, selected: p.sku === chosen }, `${p.title} (${p.sku})`));
    }
  }

  follow(live) {
    live.addEventListener('hello', () => knockdownApi.current(this.hooks.streamId).then((k) => this.show(k), () => {}));
    live.addEventListener('knockdown.started', (event) => { this.show(event.detail); this.hooks.changed(); });
    live.addEventListener('knockdown.updated', (event) => {
      const k = this.knock;
      if (!k || k.id !== event.detail.id) return;
      Object.assign(k, event.detail);
      this.render();
    });
    live.addEventListener('knockdown.ended', (event) => { this.show(event.detail); this.hooks.changed(); });
  }

  async start() {
    const sku = $('#knockdown-sku', this.card).value;
    const product = this.hooks.products().find((p) => p.sku === sku);
    if (!product) { toast('Pick a product to knock down.', 'error'); return; }
    const money = (id) => parseMoney($(id, this.card).value, product.currency);
    const [startMinor, stepMinor, floorMinor] = [money('#knockdown-start'), money('#knockdown-step'), money('#knockdown-floor')];
    if (startMinor === null || stepMinor === null || floorMinor === null) {
      toast('Give the start price, the step and the floor.', 'error');
      return;
    }
    try {
      this.show(await knockdownApi.start(this.hooks.streamId, this.hooks.session().token, {
        sku, currency: product.currency, startMinor, stepMinor, floorMinor,
        quantity: Number($('#knockdown-quantity', this.card).value),
        perPrice: Number($('#knockdown-per-price', this.card).value) || 0,
        mode: $('#knockdown-mode', this.card).value,
        tapsPerStep: Number($('#knockdown-every-taps', this.card).value),
        stepEveryS: Number($('#knockdown-every-s', this.card).value),
        durationS: Number($('#knockdown-duration', this.card).value),
      }));
      toast('The knock-down is live!', 'ok');
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }

  async end() {
    if (!this.knock) return;
    try {
      this.show(await knockdownApi.end(this.knock.id, this.hooks.session().token));
      this.hooks.changed();
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }

  /** @param {Knockdown | null} k */
  show(k) {
    if (!k) { this.knock = null; $('#knockdown-status', this.card).hidden = true; return; }
    this.knock = k;
    this.offsetMs = k.serverMs - Date.now();
    this.render();
  }

  render() {
    const k = this.knock;
    const box = $('#knockdown-status', this.card);
    if (!k) return;
    box.hidden = false;
    box.dataset.knockdown = k.id;
    box.dataset.state = k.state;
    setText($('.row-knockdown-title', box), k.title || k.sku);
    setText($('.row-knockdown-price', box), price(k));
    setText($('.row-knockdown-progress', box), `${k.taps} taps · ${k.sold} sold · ${k.left} left · ${nextText(k)}`);
    setText($('.row-knockdown-result', box), { sold_out: 'Sold out', ended: 'Ended' }[k.state] || '');
    $('#knockdown-end', this.card).hidden = k.state !== 'running';
    const clock = $('.row-knockdown-clock', box);
    if (k.state === 'running') countdown(clock, k.endsAtMs - this.offsetMs);
    else setText(clock, '0:00');
  }

  async pollStats() {
    try {
      const s = await knockdownApi.stats(this.hooks.streamId, this.hooks.session().token);
      const gmv = s.gmv.map((m) => formatMoney(m.amountMinor, m.currency)).join(' + ');
      setText('#stat-knockdowns', `${s.units} units`);
      setText('#stat-knockdown-taps', `${s.runs} runs · ${s.taps} taps · ${s.steps} drops${gmv ? ` · ${gmv}` : ''}`);
    } catch {
      // The sales numbers say what went wrong.
    }
  }
}
