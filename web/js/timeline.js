// Commerce events on the video timeline: on LL-HLS the picture runs seconds behind the live
// events, so a pin, an unpin or a deal's start and end is applied when the picture reaches
// the moment it happened (its mediaTimeMs), not when its event arrives. Numbers (stock, a
// deal's units left) are live counters and apply at once; on WebRTC everything does.

// How often the playing position is looked at while a card waits (besides every frame).
const CHECK_MS = 20;

export class TimedCards {
  // playingDateMs: () => the program date time (ms) of the picture on screen, or null.
  constructor(playingDateMs) {
    this.playingDateMs = playingDateMs;
    this.pending = []; // {atMs, apply, detail}, in order of arrival
    this.timer = null;
    this.frame = null;
    this.check = () => this.applyDue();
  }

  // Apply `apply(detail)` once the picture reaches `atMs` (at once when atMs is null).
  at(atMs, detail, apply) {
    if (atMs === null || atMs === undefined) {
      this.flush();
      apply(detail);
      return;
    }
    this.pending.push({ atMs, detail, apply });
    this.applyDue();
  }

  // The details still waiting (a live counter updates them as it updates what is shown).
  waiting() {
    return this.pending.map((item) => item.detail);
  }

  // Everything waiting applies now (the page leaves the delayed picture: WebRTC, a hello).
  flush() {
    const pending = this.pending;
    this.pending = [];
    for (const item of pending) item.apply(item.detail);
    this.stop();
  }

  applyDue() {
    const now = this.pending.length ? this.playingDateMs() : null;
    if (now !== null) {
      // in order of arrival: a later event never applies before an earlier one
      while (this.pending.length && this.pending[0].atMs <= now) {
        const item = this.pending.shift();
        item.apply(item.detail);
      }
    }
    if (this.pending.length) this.schedule();
    else this.stop();
  }

  schedule() {
    if (this.timer === null) this.timer = setTimeout(() => { this.timer = null; this.applyDue(); }, CHECK_MS);
    if (this.frame === null) this.frame = requestAnimationFrame(() => { this.frame = null; this.applyDue(); });
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
  }
}

// A selling format's viewer panel (poll, giveaway, group buy, knock-down) takes these as
// hooks.timed: its start and end cards wait for the picture like pins and deals (`at`),
// while its live counters (votes, entries, members, prices) apply at once, to the card on
// screen and to a start card still waiting (`waiting(id)`).
export function timedHooks(cards) {
  return {
    at: (detail, apply) => cards.at(detail.mediaTimeMs, detail, apply),
    waiting: (id) => cards.waiting().filter((detail) => detail && detail.id === id && detail.state === 'running'),
  };
}

// Without a delayed picture (the control panel, WebRTC): everything applies as it comes.
export const AT_ONCE = { at: (detail, apply) => apply(detail), waiting: () => [] };
