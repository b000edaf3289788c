// The auction panel of the watch page: price, leader, a clock in server time, one-tap
// "bid the next step", and a maximum bid (the server bids for the buyer up to it).
//
// The clock: every auction event and answer carries the server's clock (serverMs); the
// offset between it and this device's clock turns the server's end time into a local
// one, so a phone whose clock is off still shows the right seconds.

import { api } from './api.js';
import { $, setText, countdown, formatMoney, parseMoney, toast, newId, friendlyError } from './ui.js';

export class AuctionPanel {
  /**
   * @param {HTMLElement} panel  #auction-panel
   * @param {{session: () => any, requireSession: (why: string) => Promise<boolean>, won: () => void}} hooks
   */
  constructor(panel, hooks) {
    this.panel = panel;
    this.hooks = hooks;
    /** @type {import('./wire.js').Auction | null} */
    this.auction = null;
    this.offsetMs = 0;
    $('.auction-bid', panel).addEventListener('click', () => this.bidNext());
    $('.auction-max-form', panel).addEventListener('submit', (event) => {
      event.preventDefault();
      this.bidMax();
    });
  }

  /** Follow the auction events of a LiveEvents client. */
  follow(live) {
    live.addEventListener('hello', (event) => this.show(event.detail.auction, true));
    live.addEventListener('auction.started', (event) => this.show(event.detail, false));
    live.addEventListener('auction.bid', (event) => this.onBid(event.detail));
    live.addEventListener('auction.extended', (event) => this.onExtended(event.detail));
    live.addEventListener('auction.ended', (event) => this.onEnded(event.detail));
    live.addEventListener('auction.cancelled', (event) => this.onCancelled(event.detail));
  }

  sync(serverMs) {
    this.offsetMs = serverMs - Date.now();
  }

  /** @param {import('./wire.js').Auction | null} auction */
  async show(auction, fromSnapshot) {
    if (!auction || auction.state !== 'running') {
      if (fromSnapshot || !auction) this.hide();
      return;
    }
    // A snapshot's serverMs is when it was last written: ask for the clock now.
    if (fromSnapshot) {
      try { auction = await api.getAuction(auction.id); } catch { /* keep the snapshot */ }
    }
    this.auction = auction;
    this.sync(auction.serverMs);
    this.panel.dataset.auction = auction.id;
    this.panel.dataset.state = 'running';
    setText($('.auction-title', this.panel), auction.title || auction.sku);
    setText($('.auction-format', this.panel), auction.softCloseS ? `Soft close ${auction.softCloseS}s` : 'Sudden death');
    setText($('.auction-result', this.panel), '');
    this.render();
    this.panel.hidden = false;
  }

  hide() {
    this.auction = null;
    this.panel.hidden = true;
    delete this.panel.dataset.auction;
  }

  render() {
    const a = this.auction;
    if (!a) return;
    const me = this.hooks.session();
    setText($('.auction-price', this.panel), a.priceMinor === null ? `Starts at ${formatMoney(a.nextMinor, a.currency)}` : formatMoney(a.priceMinor, a.currency));
    const leading = me && a.leaderId === me.sub;
    setText($('.auction-leader', this.panel), a.leaderName ? (leading ? 'You lead' : `${a.leaderName} leads`) : 'No bids yet');
    this.panel.classList.toggle('leading', Boolean(leading));
    setText($('.auction-bids', this.panel), `${a.bids} bid${a.bids === 1 ? '' : 's'}`);
    const button = $('.auction-bid', this.panel);
    button.disabled = a.state !== 'running';
    setText(button, `Bid ${formatMoney(a.nextMinor, a.currency)}`);
    const clock = $('.auction-clock', this.panel);
    clock.dataset.endsAtServer = String(a.endsAtMs);
    countdown(clock, a.endsAtMs - this.offsetMs);
  }

  /** @param {import('./wire.js').AuctionBid} bid */
  onBid(bid) {
    const a = this.auction;
    if (!a || a.id !== bid.id || bid.bids < a.bids) return;
    this.sync(bid.serverMs);
    Object.assign(a, {
      priceMinor: bid.priceMinor, nextMinor: bid.nextMinor, leaderId: bid.leaderId,
      leaderName: bid.leaderName, bids: bid.bids, endsAtMs: bid.endsAtMs,
    });
    this.render();
  }

  onExtended(extended) {
    const a = this.auction;
    if (!a || a.id !== extended.id) return;
    this.sync(extended.serverMs);
    a.endsAtMs = Math.max(a.endsAtMs, extended.endsAtMs);
    this.render();
    toast(`Late bid! +${Math.round(extended.extendedMs / 1000)}s on the clock`, 'info');
  }

  /** @param {import('./wire.js').Auction} auction */
  onEnded(auction) {
    if (this.auction && this.auction.id !== auction.id) return;
    this.auction = auction;
    this.panel.dataset.state = auction.state;
    $('.auction-bid', this.panel).disabled = true;
    const me = this.hooks.session();
    let text = 'No bids: not sold.';
    if (auction.state === 'sold') {
      const price = formatMoney(auction.priceMinor, auction.currency);
      text = me && auction.leaderId === me.sub ? `You won at ${price}! It is in your cart.` : `Sold to ${auction.leaderName} for ${price}`;
      if (me && auction.leaderId === me.sub) this.hooks.won();
    }
    setText($('.auction-result', this.panel), text);
    setText($('.auction-clock', this.panel), '0:00');
    setTimeout(() => { if (this.auction === auction) this.hide(); }, 15000);
  }

  onCancelled(auction) {
    if (this.auction && this.auction.id === auction.id) this.hide();
  }

  async bidNext() {
    const a = this.auction;
    if (a) await this.place(a.nextMinor);
  }

  async bidMax() {
    const a = this.auction;
    if (!a) return;
    const amount = parseMoney($('.auction-max', this.panel).value, a.currency);
    if (amount === null || amount < a.nextMinor) {
      toast(`Your maximum must be at least ${formatMoney(a.nextMinor, a.currency)}.`, 'error');
      return;
    }
    await this.place(amount);
  }

  async place(amountMinor) {
    if (!(await this.hooks.requireSession('Sign in to bid.'))) return;
    const a = this.auction;
    if (!a) return;
    try {
      const result = await api.bid(a.id, this.hooks.session().token, { amountMinor, currency: a.currency, key: newId() });
      this.sync(result.serverMs);
      const messages = {
        accepted: 'You lead!',
        outbid: 'Someone’s maximum is higher: you were outbid.',
        max_raised: 'Your maximum is raised.',
      };
      toast(messages[result.outcome], result.leading ? 'ok' : 'error');
      if (result.bids >= a.bids) {
        Object.assign(a, { priceMinor: result.priceMinor, nextMinor: result.nextMinor, bids: result.bids, endsAtMs: result.endsAtMs });
        this.render();
      }
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }
}
