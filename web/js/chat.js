// The chat list used by every page: messages are rendered with textContent only, deletions
// remove them, and the list keeps the newest few hundred and sticks to the bottom.

import { normalizeChat } from './events.js';
import { h, clear } from './ui.js';

const MAX_MESSAGES = 200;

export class ChatView {
  // actions: optional [{label, title, run(message)}] shown on each message (moderation).
  constructor(list, { actions = [], selfSub = null } = {}) {
    this.list = list;
    this.actions = actions;
    this.selfSub = selfSub;
    this.seen = new Set();
  }

  reset(messages = []) {
    clear(this.list);
    this.seen.clear();
    for (const raw of messages) this.add(raw);
  }

  add(raw) {
    const message = normalizeChat(raw);
    const key = message.id !== undefined ? String(message.id) : null;
    if (key !== null) {
      if (this.seen.has(key)) return;
      this.seen.add(key);
    }
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const item = h('li', { class: `chat-msg role-${message.role}${message.sub && message.sub === this.selfSub ? ' self' : ''}`, dataset: { id: key ?? '', sub: message.sub } },
      h('span', { class: 'chat-name' }, message.name),
      message.role === 'host' || message.role === 'seller' ? h('span', { class: 'chat-badge' }, 'Host') : null,
      h('span', { class: 'chat-text' }, message.text));
    if (this.actions.length && message.role !== 'host' && message.role !== 'seller') {
      item.append(h('span', { class: 'chat-actions' },
        this.actions.map((action) => h('button', { type: 'button', class: 'chip', title: action.title, onclick: () => action.run(message) }, action.label))));
    }
    this.list.append(item);
    while (this.list.children.length > MAX_MESSAGES) this.list.firstElementChild.remove();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  remove(raw) {
    const id = raw.id ?? raw.message_id;
    if (id === undefined) return;
    for (const item of this.list.querySelectorAll('li')) {
      if (item.dataset.id === String(id)) item.remove();
    }
  }

  notice(text) {
    this.list.append(h('li', { class: 'chat-notice' }, text));
    this.list.scrollTop = this.list.scrollHeight;
  }
}
