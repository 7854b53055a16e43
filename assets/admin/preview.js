// The subscription page's "Preview the body for a recent event": what the subscription's
// format or template makes of a stored event, rendered by posthorn without sending
// anything (GET /api/v1/subscriptions/{name}/render). Loaded after app.js, whose helpers
// it takes from window.posthornAdmin.
'use strict';

(() => {
  const admin = window.posthornAdmin;
  if (!admin) return;
  const { api, h, section, copyBlock, errorBox, notice } = admin;

  // JSON bodies are shown indented without reparsing (JSON.parse would round numbers);
  // anything else as it is.
  function shown(preview) {
    const type = (preview.content_type || '').split(';')[0].trim().toLowerCase();
    if (type === 'application/json' || type.endsWith('+json')) {
      return window.posthornIndentJson(preview.body);
    }
    return preview.body;
  }

  function result(preview) {
    const about = h('p', { class: 'muted', test: 'render-about' },
      `Event ${preview.event_id} (${preview.event_type}), format ${preview.format}`,
      preview.content_type ? `, ${preview.content_type}` : '',
      `, POSTed to ${preview.url}.`);
    if (preview.error) {
      return [about, notice(preview.error, 'bad', 'render-error')];
    }
    return [about, copyBlock('Body', shown(preview), 'render-body')];
  }

  function previewSection(sub) {
    const path = `/subscriptions/${encodeURIComponent(sub.name)}/render`;
    const out = h('div', { test: 'render-result', 'aria-live': 'polite' });
    const eventInput = h('input', {
      type: 'text', name: 'event_id', test: 'render-event', placeholder: 'event id (default: the most recent)',
      autocomplete: 'off', spellcheck: 'false',
    });
    const button = h('button', {
      type: 'button',
      test: 'render-button',
      onclick: async () => {
        const eventId = eventInput.value.trim();
        button.disabled = true;
        try {
          const preview = await api('GET', eventId ? `${path}?event_id=${encodeURIComponent(eventId)}` : path);
          out.replaceChildren(...result(preview));
        } catch (err) {
          if (!err.redirected) out.replaceChildren(errorBox(err));
        } finally {
          button.disabled = false;
        }
      },
    }, 'Preview');
    return section('Preview the body for a recent event',
      h('p', { class: 'muted', text: 'What this subscription sends for a stored event, with its format or template as configured now. Nothing is sent.' }),
      h('div', { class: 'inline-form' }, eventInput, button),
      out);
  }

  admin.subscriptionSections.push(previewSection);
})();
