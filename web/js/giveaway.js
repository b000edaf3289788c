// Giveaways: the viewer's panel on the watch page (Enter, "You're in", the winner's banner;
// Follow first when the giveaway is for followers) and the host's card in the control panel
// (start, draw, cancel, live entry count, numbers).
//
// The entry count comes coalesced in giveaway.entries and only grows. The hello carries the
// running giveaway (state.giveaway); a snapshot may be a moment old, so it is read again.

import { request } from './api.js';
import { $, setText, countdown, toast, friendlyError } from './ui.js';
import { EVENT_READERS } from './wire.js';
import { AT_ONCE } from './timeline.js';

/**
 * @typedef {object} Giveaway  a giveaway (selling/giveaway_types.py Giveaway); times are server ms
 * @property {string} id
 * @property {string} sellerId
 * @property {string} sku
 * @property {string} title
 * @property {'running' | 'drawn' | 'no_entries' | 'cancelled'} state
 * @property {'everyone' | 'followers' | 'buyers'} eligibility
 * @property {number} entries
 * @property {string} seedSha256
 * @property {string | null} seed
 * @property {string | null} winnerId
 * @property {string | null} winnerName
 * @property {string | null} orderId
 * @property {number | null} endsAtMs
 * @property {number} serverMs
 */

/** @returns {Giveaway} */
export function toGiveaway(raw) {
  return {
    id: raw.id, sellerId: raw.seller_id, sku: raw.sku, title: raw.title, state: raw.state,
    eligibility: raw.eligibility, entries: raw.entries, seedSha256: raw.seed_sha256, seed: raw.seed,
    winnerId: raw.winner_id, winnerName: raw.winner_name, orderId: raw.order_id,
    endsAtMs: raw.ends_at_ms, serverMs: raw.server_ms,
  };
}

Object.assign(EVENT_READERS, {
  'giveaway.started': toGiveaway,
  'giveaway.entries': (raw) => ({ id: raw.id, entries: raw.entries }),
  'giveaway.drawn': toGiveaway,
  'giveaway.cancelled': toGiveaway,
});
const readHello = EVENT_READERS.hello;
EVENT_READERS.hello = (raw) => ({
  ...readHello(raw),
  giveaway: raw.state && raw.state.giveaway ? toGiveaway(raw.state.giveaway) : null,
});

const path = (id) => `/api/giveaways/${encodeURIComponent(id)}`;
const api = {
  start: (streamId, token, body) => request('POST', `/api/streams/${encodeURIComponent(streamId)}/giveaways`, { token, body }).then(toGiveaway),
  get: (id) => request('GET', path(id)).then(toGiveaway),
  entered: (id, token) => request('GET', `${path(id)}/entry`, { token }).then((r) => r.entered),
  enter: (id, token) => request('PUT', `${path(id)}/entry`, { token }),
  draw: (id, token) => request('POST', `${path(id)}/draw`, { token }).then(toGiveaway),
  cancel: (id, token) => request('POST', `${path(id)}/cancel`, { token }).then(toGiveaway),
  follow: (sellerId, token) => request('PUT', `/api/sellers/${encodeURIComponent(sellerId)}/follow`, { token }),
  stats: (streamId, token) => request('GET', `/api/streams/${encodeURIComponent(streamId)}/giveaway-stats`, { token }),
};

const FOR = { everyone: 'Everyone signed in', followers: 'Followers only', buyers: 'Buyers of this stream only' };
const ERRORS = {
  not_eligible: 'This giveaway is not open to you.',
  own_giveaway: 'Hosts cannot enter their own giveaway.',
  giveaway_ended: 'The draw has happened.',
};

function explain(err) {
  return ERRORS[err && err.code] || friendlyError(err);
}

export class GiveawayPanel {
  /**
   * @param {HTMLElement} panel  #giveaway-panel
   * @param {{session: () => any, requireSession: (why: string) => Promise<any>, won: () => void}} hooks
   */
  constructor(panel, hooks) {
    this.panel = panel;
    this.hooks = hooks;
    /** @type {Giveaway | null} */
    this.giveaway = null;
    this.entered = false;
    this.hideTimer = null;
    $('.giveaway-enter', panel).addEventListener('click', () => this.enter());
    $('.giveaway-follow', panel).addEventListener('click', () => this.followSeller());
  }

  follow(live) {
    // On LL-HLS the start and the draw show when the picture reaches them (hooks.timed).
    const timed = this.hooks.timed || AT_ONCE;
    live.addEventListener('hello', (event) => this.show(event.detail.giveaway, true));
    live.addEventListener('giveaway.started', (event) => timed.at(event.detail, (g) => this.show(g, false)));
    live.addEventListener('giveaway.entries', (event) => {
      for (const waiting of timed.waiting(event.detail.id)) waiting.entries = Math.max(waiting.entries, event.detail.entries);
      this.onEntries(event.detail);
    });
    live.addEventListener('giveaway.drawn', (event) => timed.at(event.detail, (g) => this.onDrawn(g)));
    live.addEventListener('giveaway.cancelled', (event) => timed.at(event.detail, (g) => { if (this.giveaway && this.giveaway.id === g.id) this.hide(); }));
  }

  async show(giveaway, fromSnapshot) {
    if (!giveaway || giveaway.state !== 'running') {
      if (fromSnapshot || !giveaway) this.hide();
      return;
    }
    if (fromSnapshot) {
      try { giveaway = await api.get(giveaway.id); } catch { /* keep the snapshot */ }
      if (giveaway.state !== 'running') { this.hide(); return; }
    }
    clearTimeout(this.hideTimer);
    this.giveaway = giveaway;
    this.entered = false;
    const session = this.hooks.session();
    if (session) {
      try { this.entered = await api.entered(giveaway.id, session.token); } catch { /* not entered */ }
    }
    this.panel.dataset.giveaway = giveaway.id;
    this.panel.dataset.state = 'running';
    setText($('.giveaway-title', this.panel), giveaway.title || giveaway.sku);
    setText($('.giveaway-for', this.panel), FOR[giveaway.eligibility] || '');
    setText($('.giveaway-result', this.panel), '');
    this.panel.classList.remove('won');
    const clock = $('.giveaway-clock', this.panel);
    clock.hidden = !giveaway.endsAtMs;
    if (giveaway.endsAtMs) countdown(clock, giveaway.endsAtMs - (giveaway.serverMs - Date.now()));
    this.render();
    this.panel.hidden = false;
  }

  hide() {
    this.giveaway = null;
    this.panel.hidden = true;
    delete this.panel.dataset.giveaway;
  }

  render() {
    const g = this.giveaway;
    if (!g) return;
    const running = g.state === 'running';
    const enter = $('.giveaway-enter', this.panel);
    enter.hidden = !running;
    enter.disabled = this.entered;
    setText(enter, this.entered ? 'You’re in ✓' : 'Enter giveaway');
    this.panel.dataset.entered = String(this.entered);
    $('.giveaway-follow', this.panel).hidden = !running || this.entered || g.eligibility !== 'followers';
    setText($('.giveaway-entries', this.panel), `${g.entries} entr${g.entries === 1 ? 'y' : 'ies'}`);
  }

  onEntries(update) {
    const g = this.giveaway;
    if (!g || g.id !== update.id || update.entries < g.entries) return;
    g.entries = update.entries;
    this.render();
  }

  onDrawn(giveaway) {
    if (!this.giveaway || this.giveaway.id !== giveaway.id) return;
    this.giveaway = giveaway;
    this.panel.dataset.state = giveaway.state;
    $('.giveaway-clock', this.panel).hidden = true;
    const me = this.hooks.session();
    let text = 'Nobody entered this time.';
    if (giveaway.state === 'drawn') {
      const mine = me && giveaway.winnerId === me.sub;
      this.panel.classList.toggle('won', Boolean(mine));
      text = mine ? `🎉 You won ${giveaway.title}! It is in your orders.` : `🎉 ${giveaway.winnerName} won!`;
      if (mine) this.hooks.won();
    }
    this.render();
    setText($('.giveaway-result', this.panel), text);
    this.hideTimer = setTimeout(() => { if (this.giveaway === giveaway) this.hide(); }, 20000);
  }

  async enter() {
    if (!(await this.hooks.requireSession('Sign in to enter the giveaway.'))) return;
    const g = this.giveaway;
    if (!g) return;
    try {
      const result = await api.enter(g.id, this.hooks.session().token);
      this.entered = true;
      if (result.entries > g.entries) g.entries = result.entries;
      this.render();
      toast('You’re in! Good luck.', 'ok');
    } catch (err) {
      toast(explain(err), 'error');
    }
  }

  async followSeller() {
    if (!(await this.hooks.requireSession('Sign in to follow.'))) return;
    const g = this.giveaway;
    if (!g) return;
    try {
      await api.follow(g.sellerId, this.hooks.session().token);
      toast('Following! You can enter now.', 'ok');
      $('.giveaway-follow', this.panel).hidden = true;
    } catch (err) {
      toast(explain(err), 'error');
    }
  }
}

export class GiveawayHost {
  /**
   * @param {HTMLElement} card  #giveaway-card
   * @param {{streamId: string, session: () => any, changed: () => void}} hooks  changed: stock moved
   */
  constructor(card, hooks) {
    this.card = card;
    this.hooks = hooks;
    /** @type {Giveaway | null} */
    this.giveaway = null;
    $('.giveaway-form', card).addEventListener('submit', (event) => { event.preventDefault(); this.start(); });
    $('.giveaway-draw', card).addEventListener('click', () => this.act('draw'));
    $('.giveaway-cancel', card).addEventListener('click', () => this.act('cancel'));
  }

  follow(live) {
    live.addEventListener('hello', (event) => {
      const g = event.detail.giveaway;
      if (g) api.get(g.id).then((fresh) => this.show(fresh), () => this.show(g));
    });
    live.addEventListener('giveaway.started', (event) => { this.show(event.detail); this.hooks.changed(); });
    live.addEventListener('giveaway.entries', (event) => {
      const g = this.giveaway;
      if (g && g.id === event.detail.id && event.detail.entries >= g.entries) { g.entries = event.detail.entries; this.render(); }
    });
    live.addEventListener('giveaway.drawn', (event) => { this.show(event.detail); this.hooks.changed(); });
    live.addEventListener('giveaway.cancelled', (event) => { this.show(event.detail); this.hooks.changed(); });
  }

  /** Fill the prize picker (products: the control panel's list). */
  setProducts(products) {
    const select = $('.giveaway-sku', this.card);
    const chosen = select.value;
    select.replaceChildren(...products.filter((p) => !p.missing).map((p) => {
      const option = document.createElement('option');
      option.value = p.sku;
      option.textContent = `${p.title} (${p.sku})`;
      option.selected = p.sku === chosen;
      return option;
    }));
  }

  async start() {
    const sku = $('.giveaway-sku', this.card).value;
    if (!sku) { toast('Pick a prize.', 'error'); return; }
    try {
      this.show(await api.start(this.hooks.streamId, this.hooks.session().token, {
        sku,
        eligibility: $('.giveaway-eligibility', this.card).value,
        duration_s: Number($('.giveaway-duration', this.card).value),
      }));
      toast('Giveaway is live!', 'ok');
    } catch (err) {
      toast(explain(err), 'error');
    }
  }

  async act(what) {
    const g = this.giveaway;
    if (!g) return;
    try {
      this.show(await api[what](g.id, this.hooks.session().token));
    } catch (err) {
      toast(explain(err), 'error');
    }
  }

  show(giveaway) {
    const g = this.giveaway;
    if (g && g.id === giveaway.id && giveaway.state === 'running' && giveaway.entries < g.entries) return;
    this.giveaway = giveaway;
    this.render();
  }

  render() {
    const box = $('.giveaway-status', this.card);
    const g = this.giveaway;
    if (!g) { box.hidden = true; return; }
    box.hidden = false;
    box.dataset.giveaway = g.id;
    box.dataset.state = g.state;
    setText($('.row-giveaway-title', box), g.title || g.sku);
    setText($('.row-giveaway-entries', box), `${g.entries} entr${g.entries === 1 ? 'y' : 'ies'} · ${FOR[g.eligibility]}`);
    const results = {
      running: '',
      drawn: `Winner: ${g.winnerName} (order ${g.orderId || 'being made'})`,
      no_entries: 'Nobody entered: the unit is back in stock.',
      cancelled: 'Cancelled: the unit is back in stock.',
    };
    setText($('.row-giveaway-result', box), results[g.state]);
    $('.giveaway-draw', this.card).hidden = g.state !== 'running';
    $('.giveaway-cancel', this.card).hidden = g.state !== 'running';
  }

  /** The stream's giveaways in numbers, for a stats tile. */
  async stats() {
    return api.stats(this.hooks.streamId, this.hooks.session().token);
  }
}
