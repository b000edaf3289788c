// Polls: the viewer's panel on the watch page (one button per option with its live
// percentage; tap another to change your vote) and the host's card in the control panel
// (ask, close, cancel, live totals, numbers).
//
// Live totals come coalesced in poll.totals; `votes` (votes cast) only grows, so the
// totals with the highest win whichever node's event arrives first. The hello carries the
// running poll (state.poll); a snapshot may be a moment old, so the poll is read again.

import { request } from './api.js';
import { $, h, clear, setText, countdown, toast, newId, friendlyError } from './ui.js';
import { EVENT_READERS } from './wire.js';
import { AT_ONCE } from './timeline.js';

/**
 * @typedef {object} Poll  a poll (selling/poll_types.py Poll); times are server ms
 * @property {string} id
 * @property {string} question
 * @property {string[]} options
 * @property {'running' | 'closed' | 'cancelled'} state
 * @property {number[]} counts
 * @property {number} voters
 * @property {number} votes
 * @property {number | null} endsAtMs
 * @property {number} serverMs
 */

/** @returns {Poll} */
export function toPoll(raw) {
  return {
    id: raw.id, question: raw.question, options: raw.options, state: raw.state,
    counts: raw.counts, voters: raw.voters, votes: raw.votes,
    endsAtMs: raw.ends_at_ms, serverMs: raw.server_ms,
  };
}

const toTotals = (raw) => ({ id: raw.id, counts: raw.counts, voters: raw.voters, votes: raw.votes });

// The poll events, and the hello's running poll, for every LiveEvents client.
Object.assign(EVENT_READERS, {
  'poll.started': toPoll,
  'poll.totals': toTotals,
  'poll.closed': toPoll,
  'poll.cancelled': toPoll,
});
const readHello = EVENT_READERS.hello;
EVENT_READERS.hello = (raw) => ({
  ...readHello(raw),
  poll: raw.state && raw.state.poll ? toPoll(raw.state.poll) : null,
});

const api = {
  start: (streamId, token, poll) => request('POST', `/api/streams/${encodeURIComponent(streamId)}/polls`, {
    token, body: { question: poll.question, options: poll.options, duration_s: poll.durationS, key: newId() },
  }).then(toPoll),
  get: (pollId) => request('GET', `/api/polls/${encodeURIComponent(pollId)}`).then(toPoll),
  myVote: (pollId, token) => request('GET', `/api/polls/${encodeURIComponent(pollId)}/vote`, { token }).then((r) => r.option),
  vote: (pollId, token, option) => request('PUT', `/api/polls/${encodeURIComponent(pollId)}/vote`, { token, body: { option } }),
  close: (pollId, token) => request('POST', `/api/polls/${encodeURIComponent(pollId)}/close`, { token }).then(toPoll),
  cancel: (pollId, token) => request('POST', `/api/polls/${encodeURIComponent(pollId)}/cancel`, { token }).then(toPoll),
  stats: (streamId, token) => request('GET', `/api/streams/${encodeURIComponent(streamId)}/poll-stats`, { token }),
};

function percent(count, total) {
  return total ? Math.round((count * 100) / total) : 0;
}

/** Keep the newest totals of the same poll. */
function applyTotals(poll, totals) {
  if (!poll || poll.id !== totals.id || totals.votes < poll.votes) return false;
  Object.assign(poll, { counts: totals.counts, voters: totals.voters, votes: totals.votes });
  return true;
}

/** A poll's options with bars and percentages; buttons when `onPick` is given. */
function renderOptions(list, poll, mine, onPick) {
  clear(list);
  const total = poll.counts.reduce((a, b) => a + b, 0);
  poll.options.forEach((text, index) => {
    const share = percent(poll.counts[index], total);
    const attrs = { class: `poll-option${mine === index ? ' mine' : ''}`, dataset: { index: String(index) } };
    const body = [h('span', { class: 'poll-text' }, text), h('span', { class: 'poll-share' }, `${share}%`)];
    if (onPick) {
      const button = h('button', { ...attrs, type: 'button', 'aria-pressed': String(mine === index) }, ...body);
      button.disabled = poll.state !== 'running';
      button.addEventListener('click', () => onPick(index));
      // Set through the CSSOM: the pages' CSP refuses style attributes.
      button.style.setProperty('--share', `${share}%`);
      list.append(h('li', {}, button));
    } else {
      const row = h('li', attrs, ...body, h('span', { class: 'poll-count' }, String(poll.counts[index])));
      row.style.setProperty('--share', `${share}%`);
      list.append(row);
    }
  });
}

export class PollPanel {
  /**
   * @param {HTMLElement} panel  #poll-panel
   * @param {{session: () => any, requireSession: (why: string) => Promise<any>}} hooks
   */
  constructor(panel, hooks) {
    this.panel = panel;
    this.hooks = hooks;
    /** @type {Poll | null} */
    this.poll = null;
    this.mine = null;
    this.hideTimer = null;
  }

  follow(live) {
    // On LL-HLS the start and the close show when the picture reaches them (hooks.timed).
    const timed = this.hooks.timed || AT_ONCE;
    live.addEventListener('hello', (event) => this.show(event.detail.poll, true));
    live.addEventListener('poll.started', (event) => timed.at(event.detail, (poll) => this.show(poll, false)));
    live.addEventListener('poll.totals', (event) => {
      for (const waiting of timed.waiting(event.detail.id)) applyTotals(waiting, event.detail);
      if (applyTotals(this.poll, event.detail)) this.render();
    });
    live.addEventListener('poll.closed', (event) => timed.at(event.detail, (poll) => this.onClosed(poll)));
    live.addEventListener('poll.cancelled', (event) => timed.at(event.detail, (poll) => { if (this.poll && this.poll.id === poll.id) this.hide(); }));
  }

  async show(poll, fromSnapshot) {
    if (!poll || poll.state !== 'running') {
      if (fromSnapshot || !poll) this.hide();
      return;
    }
    if (fromSnapshot) {
      try { poll = await api.get(poll.id); } catch { /* keep the snapshot */ }
      if (poll.state !== 'running') { this.hide(); return; }
    }
    clearTimeout(this.hideTimer);
    this.poll = poll;
    this.mine = null;
    const session = this.hooks.session();
    if (session) {
      try { this.mine = await api.myVote(poll.id, session.token); } catch { /* not voted */ }
    }
    this.panel.dataset.poll = poll.id;
    this.panel.dataset.state = 'running';
    setText($('.poll-question', this.panel), poll.question);
    setText($('.poll-result', this.panel), '');
    const clock = $('.poll-clock', this.panel);
    clock.hidden = !poll.endsAtMs;
    if (poll.endsAtMs) countdown(clock, poll.endsAtMs - (poll.serverMs - Date.now()));
    this.render();
    this.panel.hidden = false;
  }

  hide() {
    this.poll = null;
    this.panel.hidden = true;
    delete this.panel.dataset.poll;
  }

  render() {
    const poll = this.poll;
    if (!poll) return;
    renderOptions($('.poll-options', this.panel), poll, this.mine, (index) => this.vote(index));
    setText($('.poll-voters', this.panel), `${poll.voters} vote${poll.voters === 1 ? '' : 's'}`);
  }

  onClosed(poll) {
    if (!this.poll || this.poll.id !== poll.id) return;
    this.poll = poll;
    this.panel.dataset.state = 'closed';
    this.render();
    const best = Math.max(...poll.counts);
    const winners = poll.options.filter((_, i) => poll.counts[i] === best && best > 0);
    setText($('.poll-result', this.panel), winners.length ? `Result: ${winners.join(' / ')}` : 'Closed: no votes.');
    $('.poll-clock', this.panel).hidden = true;
    this.hideTimer = setTimeout(() => { if (this.poll === poll) this.hide(); }, 15000);
  }

  async vote(index) {
    if (!(await this.hooks.requireSession('Sign in to vote.'))) return;
    const poll = this.poll;
    if (!poll) return;
    try {
      const result = await api.vote(poll.id, this.hooks.session().token, index);
      this.mine = result.option;
      applyTotals(poll, { id: poll.id, counts: result.counts, voters: result.voters, votes: result.votes });
      this.render();
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }
}

export class PollHost {
  /**
   * @param {HTMLElement} card  #poll-card
   * @param {{streamId: string, session: () => any}} hooks
   */
  constructor(card, hooks) {
    this.card = card;
    this.hooks = hooks;
    /** @type {Poll | null} */
    this.poll = null;
    $('.poll-form', card).addEventListener('submit', (event) => { event.preventDefault(); this.start(); });
    $('.poll-close', card).addEventListener('click', () => this.end(false));
    $('.poll-cancel', card).addEventListener('click', () => this.end(true));
  }

  follow(live) {
    live.addEventListener('hello', (event) => {
      const poll = event.detail.poll;
      if (poll) api.get(poll.id).then((p) => this.show(p), () => this.show(poll));
    });
    live.addEventListener('poll.started', (event) => this.show(event.detail));
    live.addEventListener('poll.totals', (event) => { if (applyTotals(this.poll, event.detail)) this.render(); });
    live.addEventListener('poll.closed', (event) => this.show(event.detail));
    live.addEventListener('poll.cancelled', (event) => this.show(event.detail));
  }

  async start() {
    const question = $('.poll-question-input', this.card).value.trim();
    const options = $('.poll-options-input', this.card).value.split('\n').map((o) => o.trim()).filter(Boolean);
    if (options.length < 2 || options.length > 6) { toast('Give 2 to 6 options, one per line.', 'error'); return; }
    try {
      this.show(await api.start(this.hooks.streamId, this.hooks.session().token, {
        question, options, durationS: Number($('.poll-duration', this.card).value),
      }));
      toast('Poll is live!', 'ok');
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }

  async end(cancel) {
    if (!this.poll) return;
    try {
      const token = this.hooks.session().token;
      this.show(await (cancel ? api.cancel(this.poll.id, token) : api.close(this.poll.id, token)));
    } catch (err) {
      toast(friendlyError(err), 'error');
    }
  }

  show(poll) {
    if (this.poll && this.poll.id === poll.id && poll.state === 'running' && poll.votes < this.poll.votes) return;
    this.poll = poll;
    this.render();
  }

  render() {
    const box = $('.poll-status', this.card);
    const poll = this.poll;
    if (!poll) { box.hidden = true; return; }
    box.hidden = false;
    box.dataset.poll = poll.id;
    box.dataset.state = poll.state;
    setText($('.row-poll-question', box), poll.question);
    renderOptions($('.row-poll-options', box), poll, null, null);
    const label = { running: 'running', closed: 'closed', cancelled: 'cancelled' }[poll.state];
    setText($('.row-poll-meta', box), `${poll.voters} voter${poll.voters === 1 ? '' : 's'} · ${label}`);
    $('.poll-close', this.card).hidden = poll.state !== 'running';
    $('.poll-cancel', this.card).hidden = poll.state !== 'running';
  }

  /** The stream's polls in numbers, for a stats tile. */
  async stats() {
    return api.stats(this.hooks.streamId, this.hooks.session().token);
  }
}
