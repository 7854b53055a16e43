// Finding things on the admin page: the search box in the top bar (an event, delivery or
// conversation id), the event page (the event as received, where it came from, every
// delivery it produced), and the scope preview (what a configured subscription, or a
// draft [[subscription]] block pasted here, matched over the last day). Registered with
// app.js through window.posthornPages; everything shown goes in as text.
'use strict';

window.posthornPages = window.posthornPages || [];
window.posthornPages.push((kit) => {
  const {
    api, query, h, dash, notice, errorBox, link, when, dotted, httpStatus, stateBadge, table, cell,
    fields, section,
  } = kit;
  const enc = encodeURIComponent;

  const eventHref = (id) => `#/events/${enc(id)}`;

  // What a stored `source` means.
  function sourceMeaning(source) {
    if (source.startsWith('spool:')) return '(a spool file)';
    if (source.startsWith('source:')) return `(inlet source "${source.slice(7)}")`;
    return {
      inlet: '(the HTTP inlet, POST /v1/events)',
      admin: '(a test event sent from this page or posthorn test)',
      posthorn: '(posthorn\'s own event)',
    }[source] || null;
  }

  // ------------------------------------------------------------ the search box

  const form = document.getElementById('search');
  const input = document.getElementById('search-input');
  if (form && input) {
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const q = input.value.trim();
      if (q) location.hash = `#/search${query({ q })}`;
    });
  }

  // Where one match leads.
  function target(found) {
    switch (found.kind) {
      case 'event': return eventHref(found.id);
      case 'delivery': return `#/deliveries/${found.id}`;
      default: return `#/deliveries${query({ conversation: found.id })}`;
    }
  }

  function describe(found) {
    switch (found.kind) {
      case 'event':
        return [h('strong', { text: 'Event ' }), h('code', { text: found.id }), ` (${found.event_type}`,
          found.conversation_id ? `, conversation ${found.conversation_id}` : '', ')'];
      case 'delivery':
        return [h('strong', { text: `Delivery #${found.id}` }),
          ` of event ${found.event_id} to ${found.subscription} (${found.state})`];
      default:
        return [h('strong', { text: 'Conversation ' }), h('code', { text: found.id }),
          ` (${found.events >= 1000 ? '1,000 or more' : found.events} event${found.events === 1 ? '' : 's'})`];
    }
  }

  async function searchView({ params }) {
    const q = (params.q || '').trim();
    if (input && input.value !== q) input.value = q;
    if (!q) {
      return [h('h1', { text: 'Find' }),
        notice('Type an event id, a delivery id or a conversation id in the box at the top.', 'info', 'search-empty')];
    }
    const answer = await api('GET', `/search${query({ q })}`);
    if (answer.matches.length === 1) {
      // One exact match: its own page, without leaving the search in the history.
      location.replace(target(answer.matches[0]));
      return [notice('Opening…', 'info', 'search-opening')];
    }
    return [
      h('h1', { text: 'Find' }),
      answer.matches.length === 0
        ? notice(`Nothing has the id "${q}": no event, delivery or conversation. Ids are matched exactly.`,
          'warn', 'search-none')
        : [h('p', { text: `"${q}" is the id of ${answer.matches.length} things:` }),
          h('ul', { class: 'search-results', test: 'search-results' },
            answer.matches.map((found) => h('li', { test: 'search-result', 'data-kind': found.kind },
              h('a', { href: target(found), test: 'search-result-link' }, describe(found)))))],
    ];
  }

  // ------------------------------------------------------------ the event page

  async function eventView({ path }) {
    const id = path[1];
    if (!id) {
      return [h('h1', { text: 'Events' }),
        notice('Open an event from a delivery, or find one by its id in the box at the top.', 'info')];
    }
    const detail = await api('GET', `/events/${enc(id)}`);
    const e = detail.event;
    const meaning = sourceMeaning(e.source);
    const rows = detail.deliveries.items.map((d) => h('tr', { test: 'event-delivery-row', 'data-id': d.id },
      cell(link(`#/deliveries/${d.id}`, `#${d.id}`, 'event-delivery-link')),
      cell(link(`#/subscriptions/${enc(d.subscription)}`, d.subscription), 'nowrap'),
      cell(stateBadge(d)),
      cell(String(d.attempts), 'num'),
      cell(httpStatus(d.last_status, d.last_error)),
      cell(when(d.created_at))));
    const more = detail.deliveries.next_cursor
      ? h('p', null, link(`#/deliveries${query({ event_id: e.id })}`, 'All deliveries of this event →', 'event-all-deliveries'))
      : null;
    return [
      h('p', { class: 'crumbs' }, link('#/deliveries', 'Deliveries'), ' / '),
      h('h1', { test: 'event-title' }, h('span', { text: 'Event ' }), h('code', { text: e.id })),
      fields([
        ['Type', dotted(e.event_type), 'event-type'],
        ['Conversation', e.conversation_id
          ? link(`#/deliveries${query({ conversation: e.conversation_id })}`, e.conversation_id, 'event-conversation')
          : null],
        ['Project', e.project_id],
        ['Received', when(e.received_at), 'event-received'],
        ['Source', [h('code', { text: e.source }), meaning ? ` ${meaning}` : ''], 'event-page-source'],
        ['Sequence', String(e.seq)],
      ], 'event-page-fields'),
      section(`Deliveries (${detail.deliveries.items.length}${more ? '+' : ''})`,
        table('event-deliveries', ['Delivery', 'Subscription', 'State', 'Attempts', 'Last status', 'Created'],
          rows, 'No subscription took this event.'),
        more),
      section('As received',
        detail.body_indented === null
          ? notice(`The body was dropped by retention${e.payload_dropped_at ? ` at ${kit.localTime(e.payload_dropped_at)}` : ''}.`,
            'warn', 'event-page-body-dropped')
          : h('pre', { class: 'code wrap', test: 'event-page-body' }, h('code', { text: detail.body_indented }))),
    ];
  }

  // ------------------------------------------------------------ the scope preview

  const SAMPLE = '[[subscription]]\nname = "north-district-crm"\nurl = "https://crm.example.org/hooks/echo"\n' +
    'conversations = ["c-204", "c-2*"]\nevents = ["conversation.*"]\n';

  function previewResult(preview) {
    const scanned = `Looked at ${preview.scanned.toLocaleString('en-US')} event${preview.scanned === 1 ? '' : 's'} ` +
      'received since ';
    return h('div', { class: 'preview-result', test: 'preview-result' },
      h('p', { class: 'muted', test: 'preview-scanned' }, scanned, when(preview.since), '.'),
      preview.truncated
        ? notice(`Not every event of the last day was looked at (at most ${preview.scan_limit.toLocaleString('en-US')} ` +
          'events and 256 MiB of their bodies, newest first); older ones are not counted.', 'warn', 'preview-truncated')
        : null,
      preview.subscriptions.map((sub) => {
        const rows = sub.events.map((e) => h('tr', { test: 'preview-event-row', 'data-id': e.id },
          cell(h('a', { href: eventHref(e.id), test: 'preview-event-link' }, h('code', { text: e.id }))),
          cell(when(e.received_at)),
          cell(dotted(e.event_type)),
          cell(e.conversation_id || dash(), 'nowrap'),
          cell(h('code', { text: e.source }), 'nowrap')));
        return h('section', { class: 'section', test: 'preview-subscription', 'data-name': sub.name },
          h('h2', { text: sub.name }),
          h('p', { test: 'preview-matched' },
            `Matched ${sub.matched.toLocaleString('en-US')} event${sub.matched === 1 ? '' : 's'}`,
            sub.matched > sub.events.length ? ` (the newest ${sub.events.length} below)` : '', '.'),
          sub.enabled ? null : notice('enabled = false: these are the events it would take once enabled.', 'info'),
          table('preview-events', ['Event', 'Received', 'Type', 'Conversation', 'Source'], rows,
            'No event of the last day matches.'));
      }));
  }

  function problemList(err) {
    const problems = (err.details && Array.isArray(err.details.problems)) ? err.details.problems : [];
    if (problems.length === 0) return errorBox(err);
    return h('div', { class: 'notice bad', role: 'alert', test: 'preview-problems' },
      h('p', { text: 'The draft is not a valid subscription:' }),
      h('ul', null, problems.map((p) => h('li', { test: 'preview-problem', 'data-line': p.line === null ? '' : p.line },
        p.line !== null ? `line ${p.line}, column ${p.column}: ` : '', p.message))));
  }

  async function previewView({ params }) {
    if (params.subscription) {
      const name = params.subscription;
      const preview = await api('GET', `/subscriptions/${enc(name)}/preview`);
      return [
        h('p', { class: 'crumbs' }, link('#/subscriptions', 'Subscriptions'), ' / ',
          link(`#/subscriptions/${enc(name)}`, name), ' / '),
        h('h1', { text: 'Last day in scope' }),
        h('p', { class: 'muted', text: 'The stored events of the last 24 hours this subscription matches, by the same rules that route new events.' }),
        previewResult(preview),
        h('p', null, link(`#/preview${query({ draft: name })}`, 'Try a changed scope as a draft →', 'preview-edit-draft')),
      ];
    }
    let start = SAMPLE;
    if (params.draft) {
      try {
        start = (await api('GET', `/subscriptions/${enc(params.draft)}`)).toml || SAMPLE;
      } catch (err) {
        if (err.redirected) throw err;
      }
    }
    const area = h('textarea', {
      class: 'draft', test: 'preview-draft', rows: '10', spellcheck: 'false', 'aria-label': 'Draft [[subscription]] block',
    });
    area.value = start;
    const out = h('div', { class: 'action-out', test: 'preview-out' });
    const button = h('button', { type: 'submit', class: 'primary', test: 'preview-run' }, 'Preview');
    const draftForm = h('form', {
      class: 'preview-form',
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        out.replaceChildren(notice('Looking…', 'info', 'working'));
        try {
          out.replaceChildren(previewResult(await api('POST', '/preview', { toml: area.value })));
        } catch (err) {
          if (!err.redirected) out.replaceChildren(problemList(err));
        } finally {
          button.disabled = false;
        }
      },
    }, area, h('div', { class: 'inline-form' }, button));
    return [
      h('p', { class: 'crumbs' }, link('#/subscriptions', 'Subscriptions'), ' / '),
      h('h1', { text: 'Preview a subscription' }),
      h('p', { class: 'muted', text: 'Paste one or more [[subscription]] blocks to see which stored events of the last 24 hours they would have matched, before you put them in the config. The draft is checked like check-config checks the file; it is not saved, and no secret is needed (one that is there is ignored).' }),
      draftForm,
      out,
    ];
  }

  return {
    events: { title: 'Event', view: eventView },
    search: { title: 'Find', view: searchView },
    preview: { title: 'Preview', view: previewView },
  };
});
