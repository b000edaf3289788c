// The chat list used by every page: messages are rendered with textContent only, deletions
// remove them, and the list keeps the newest few hundred and sticks to the bottom. What this
// page sends shows at once as "sending…" and turns into "sent" on its acknowledgement; the
// same message arriving from the server fills that line in rather than adding a second one.

import { h, clear, toast, friendlyError } from './ui.js';

const MAX_MESSAGES = 200;

export class ChatView {
  // actions: optional [{label, title, run(message)}] shown on each message (moderation).
  // self: who this page chats as ({sub, name, role}), or null.
  constructor(list, { actions = [], self = null } = {}) {
    this.list = list;
    this.actions = actions;
    this.self = self;
    this.seen = new Set();
  }

  // Keep this list in step with a page's live events: messages, deletions, and what the
  // page sends. A refused message is explained and goes back into the (empty) input box,
  // so it is not lost.
  follow(live, input) {
    live.addEventListener('chat.message', (event) => this.add(event.detail));
    live.addEventListener('chat.deleted', (event) => this.remove(event.detail));
    live.addEventListener('chat.outgoing', (event) => {
      const outgoing = event.detail;
      this.outgoing(outgoing);
      if (outgoing.state !== 'failed') return;
      toast(friendlyError(outgoing.error), 'error');
      if (!input.value) input.value = outgoing.text;
    });
  }

  /** @param {import('./wire.js').ChatMessage[]} messages a fresh history; lines still sending stay */
  reset(messages = []) {
    const sending = [...this.list.querySelectorAll('.chat-msg[data-state=pending]')];
    clear(this.list);
    this.seen.clear();
    for (const message of messages) this.add(message);
    // One whose acknowledgement was lost may be in the history already: that line stands.
    for (const line of sending) if (!this.lineOf(line.dataset.clientId)) this.list.append(line);
  }

  /** @param {import('./wire.js').ChatMessage} message */
  add(message) {
    if (this.seen.has(message.id)) return;
    this.seen.add(message.id);
    const own = this.self && message.sub === this.self.sub ? this.lineOf(message.clientId) : null;
    if (own) {
      this.markSent(own, message.id);
      return;
    }
    const item = this.line(message);
    if (item.dataset.clientId !== undefined) this.setState(item, 'sent');
    this.append(item, message);
  }

  /** Show, update or drop a line for a message this page sends. @param {import('./events.js').OutgoingChat} outgoing */
  outgoing(outgoing) {
    let item = this.lineOf(outgoing.clientId);
    if (outgoing.state === 'failed') {
      if (item) item.remove();
      return;
    }
    if (!item) {
      if (outgoing.state !== 'pending' || !this.self) return;
      item = this.line({ id: '', text: outgoing.text, ...this.self });
      item.dataset.clientId = outgoing.clientId;
      this.append(item, null);
      this.setState(item, 'pending');
    }
    if (outgoing.state === 'sent') {
      this.seen.add(outgoing.offset);
      this.markSent(item, outgoing.offset);
    }
  }

  lineOf(clientId) {
    if (!clientId) return null;
    return [...this.list.querySelectorAll('.chat-msg[data-client-id]')].find((li) => li.dataset.clientId === clientId) || null;
  }

  markSent(item, id) {
    item.dataset.id = id;
    this.setState(item, 'sent');
  }

  setState(item, state) {
    item.dataset.state = state;
    const label = item.querySelector('.chat-state');
    label.textContent = state === 'pending' ? 'sending…' : '✓';
    label.title = state === 'pending' ? 'Sending' : 'Sent';
    label.setAttribute('aria-label', label.title);
  }

  line(message) {
    const own = Boolean(this.self && message.sub === this.self.sub);
    const host = message.role === 'host' || message.role === 'seller';
    const item = h('li', { class: `chat-msg role-${message.role}${own ? ' self' : ''}`, dataset: { id: message.id, sub: message.sub } },
      h('span', { class: 'chat-name' }, message.name),
      host ? h('span', { class: 'chat-badge' }, 'Host') : null,
      h('span', { class: 'chat-text' }, message.text),
      own ? h('span', { class: 'chat-state' }) : null);
    if (own) item.dataset.clientId = message.clientId || '';
    return item;
  }

  append(item, message) {
    if (message && this.actions.length && item.querySelector('.chat-badge') === null) {
      item.append(h('span', { class: 'chat-actions' },
        this.actions.map((action) => h('button', { type: 'button', class: 'chip', title: action.title, onclick: () => action.run(message) }, action.label))));
    }
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(item);
    while (this.list.children.length > MAX_MESSAGES) this.list.firstElementChild.remove();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  /** @param {import('./wire.js').ChatDeleted} deleted */
  remove(deleted) {
    for (const item of this.list.querySelectorAll('li')) {
      if (item.dataset.id === deleted.id) item.remove();
    }
  }

  notice(text) {
    this.list.append(h('li', { class: 'chat-notice' }, text));
    this.list.scrollTop = this.list.scrollHeight;
  }
}
