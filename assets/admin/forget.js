// The "Forget a conversation" page (#/forget): an erasure request for one conversation,
// sent to POST /api/v1/conversations/forget once the operator has typed the id twice and
// confirmed. app.js calls window.posthornForget(kit) with its DOM and API helpers when
// the route is shown; nothing here runs on load but this assignment. Every value goes in
// as text (see app.js on the Content-Security-Policy).
'use strict';

window.posthornForget = function forgetView(kit) {
  const { api, h, section, notice, confirmAction, act } = kit;

  const conversation = h('input', {
    type: 'text', id: 'forget-conversation', test: 'forget-conversation', autocomplete: 'off',
    spellcheck: 'false', required: true,
  });
  const again = h('input', {
    type: 'text', id: 'forget-again', test: 'forget-again', autocomplete: 'off',
    spellcheck: 'false', required: true,
  });
  const letFinish = h('input', { type: 'checkbox', id: 'forget-let-finish', test: 'forget-let-finish' });
  const out = h('div', { test: 'forget-out' });

  const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const summary = (f) => {
    let text = `Forgot conversation ${JSON.stringify(f.conversation_id)}${f.again ? ' (forgotten before)' : ''}: `
      + `blanked ${count(f.events, 'event body', 'event bodies')}, `
      + `${count(f.attempts, 'attempt snippet', 'attempt snippets')} and `
      + `${count(f.rejections, 'rejection snippet', 'rejection snippets')}; `
      + `cancelled ${count(f.cancelled, 'pending delivery', 'pending deliveries')}.`;
    if (f.waiting > 0) {
      text += ` ${count(f.waiting, 'delivery is', 'deliveries are')} still pending: `
        + 'their events are blanked once they are final.';
    }
    return text;
  };

  const button = h('button', {
    type: 'button',
    class: 'primary',
    test: 'forget-button',
    disabled: true,
    onclick: () => act(button, out, async () => {
      const id = conversation.value;
      if (id === '' || again.value !== id) return notice('Type the same conversation id twice.', 'warn', 'forget-mismatch');
      const finish = letFinish.checked;
      if (!await confirmAction('Forget this conversation?',
        `Every stored payload, attempt response and rejected input of conversation ${JSON.stringify(id)} `
          + 'is erased for good; the delivery log keeps only ids, types, times, states and status codes. '
          + (finish ? 'Pending deliveries are sent first.' : 'Pending deliveries are cancelled.'),
        'Forget')) {
        return null;
      }
      const answer = await api('POST', '/conversations/forget', { conversation_id: id, let_pending_finish: finish });
      again.value = '';
      sync();
      return h('p', { class: 'notice ok', test: 'forget-result', role: 'status', text: summary(answer) });
    }),
  }, 'Forget…');

  function sync() {
    button.disabled = conversation.value === '' || again.value !== conversation.value;
  }
  conversation.addEventListener('input', sync);
  again.addEventListener('input', sync);

  return [
    h('h1', { text: 'Forget a conversation' }),
    h('p', { class: 'muted', text:
      'An erasure request: blanks every stored event body of the conversation, the response '
      + 'snippet of every attempt of its deliveries, and every rejected input that names it, '
      + 'and overwrites the old bytes in the database. The delivery log keeps ids, types, times, '
      + 'states and status codes. Events of the conversation that arrive later are not affected. '
      + 'The action is written to the audit log.' }),
    section('Conversation',
      h('div', { class: 'forget-form', test: 'forget-form' },
        h('p', null, h('label', { for: 'forget-conversation', text: 'Conversation id' }), h('br'), conversation),
        h('p', null, h('label', { for: 'forget-again', text: 'Type it again to confirm' }), h('br'), again),
        h('p', null, letFinish, ' ',
          h('label', { for: 'forget-let-finish', text: 'Let pending deliveries finish first (their events are blanked once sent)' })),
        h('div', { class: 'inline-form' }, button)),
      out),
  ];
};
