// The posthorn admin page: one page, hash routes, everything through /api/v1.
//
// The Content-Security-Policy allows only this file as script and style.css as style, so
// nothing here uses inline handlers, style attributes or innerHTML: every value shown
// comes from the operator's platform and may contain markup, so it goes in as text.
'use strict';

(() => {
  // Relative to /admin/, so the page also works behind a proxy under a sub-path.
  const API = '../api/v1';
  const POLL_MS = 500;
  const WAIT_FOR_ATTEMPT_MS = 60000;
  const PAGE_SIZE = 50;

  const main = document.getElementById('main');
  // Page features kept in their own files (preview.js) reach the helpers here and add
  // sections to a subscription's page: each maker takes the subscription and returns a
  // node (or null).
  // overviewSections: async makers of nodes shown under the overview's cards (nodes.js).
  const extensions = { subscriptionSections: [], overviewSections: [] };
  window.posthornAdmin = extensions;
  let csrfToken = null;
  // Bumped on every navigation; async work whose number is old drops its result.
  let renderSeq = 0;
  // Where to go once logged in (the page a 401 interrupted).
  let afterLogin = '#/';
  // A message for the next render of the current route (after an action re-renders it).
  let flash = null;
  // The hash whose view `main` shows: a re-render of it keeps the old view until the new
  // one is ready, so the page does not jump to the top.
  let shownHash = null;
  // Charts, trends, grouped failures, zoned times and date entry (charts.js).
  const look = window.posthornLook.init({ api, h, notice, link, when, table, cell });

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, message, redirected) {
      super(message);
      this.status = status;
      this.redirected = Boolean(redirected);
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (err) {
      throw new ApiError(0, `posthorn did not answer (${err.message}); is it running?`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    const message = data && typeof data.error === 'string' ? data.error : null;
    if (response.status === 401 && path !== '/login') {
      csrfToken = null;
      if (!location.hash.startsWith('#/login')) {
        afterLogin = location.hash || '#/';
        location.hash = '#/login';
      }
      throw new ApiError(401, message || 'log in first', true);
    }
    if (!response.ok) {
      const err = new ApiError(
        response.status,
        message || `posthorn answered ${response.status} ${response.statusText}`.trim(),
      );
      // The rest of the error body (e.g. a draft's located `problems`).
      err.details = data;
      throw err;
    }
    return data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
    }
    const text = search.toString();
    return text ? `?${text}` : '';
  }

  // ---------------------------------------------------------------- DOM helpers

  // h('a', {href: '#/', class: 'x', test: 'name', onclick: fn}, child, ...): an element
  // built with createElement; strings become text nodes.
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) {
        if (typeof value !== 'function') throw new TypeError(`${key} must be a function`);
        node.addEventListener(key.slice(2), value);
      } else if (key === 'class') {
        node.className = value;
      } else if (key === 'text') {
        node.textContent = String(value);
      } else if (key === 'test') {
        node.setAttribute('data-test', value);
      } else if (value === true) {
        node.setAttribute(key, '');
      } else {
        node.setAttribute(key, String(value));
      }
    }
    add(node, children);
    return node;
  }

  function add(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
  }

  const dash = () => h('span', { class: 'muted', text: '—' });

  function badge(text, kind, test) {
    return h('span', { class: `badge ${kind || ''}`.trim(), test, text });
  }

  function notice(text, kind, test) {
    return h('p', { class: `notice ${kind || 'info'}`, test: test || 'notice', role: 'status', text });
  }

  function errorBox(err) {
    return h('p', { class: 'notice bad', test: 'error', role: 'alert', text: err.message || String(err) });
  }

  function link(href, text, test) {
    return h('a', { href, test, text });
  }

  // ---------------------------------------------------------------- formatting

  // Local wall-clock time with its zone, e.g. 2026-11-22 11:00:03 UTC+01:00.
  function localTime(ms) {
    return look.stamp(ms);
  }

  function duration(ms) {
    const abs = Math.abs(ms);
    if (abs < 1000) return `${Math.round(abs)} ms`;
    const s = abs / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return `${hrs} h ${m % 60} min`;
    return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
  }

  // A duration to its largest unit: "12 min", "3 h", "2 d".
  function coarse(ms) {
    return duration(ms).replace(/ (\d+ (s|min|h))$/, '');
  }

  function relative(ms) {
    const diff = Date.now() - ms;
    if (Math.abs(diff) < 2000) return 'just now';
    return diff > 0 ? `${coarse(diff)} ago` : `in ${coarse(-diff)}`;
  }

  const count = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : String(n));

  function when(ms) {
    if (ms === null || ms === undefined) return dash();
    const iso = new Date(ms).toISOString();
    return h('time', { datetime: iso, title: iso },
      h('span', { class: 'nowrap', text: localTime(ms) }), ' ',
      h('span', { class: 'age', text: relative(ms) }));
  }

  // Only the age ("in 51 s"), the full time on hover: for narrow columns.
  function age(ms) {
    if (ms === null || ms === undefined) return dash();
    return h('time', { datetime: new Date(ms).toISOString(), title: localTime(ms), class: 'nowrap', text: relative(ms) });
  }

  // A dotted name (an event type) that may break after its dots and nowhere else.
  function dotted(text) {
    const parts = String(text).split('.');
    return h('span', null, parts.map((part, i) => (i < parts.length - 1
      ? [`${part}.`, h('wbr', null)] : part)));
  }

  function percent(rate) {
    if (rate === null || rate === undefined) return '—';
    const value = rate * 100;
    return `${value === 100 || value === 0 ? value.toFixed(0) : value.toFixed(1)} %`;
  }

  function ms(value) {
    return value === null || value === undefined ? '—' : duration(value);
  }

  function httpStatus(status, error) {
    if (status !== null && status !== undefined) {
      const kind = status >= 200 && status < 300 ? 'ok' : 'bad';
      return badge(`HTTP ${status}`, kind, 'status');
    }
    return error ? badge('no answer', 'bad', 'status') : dash();
  }

  function stateBadge(row) {
    const kinds = { delivered: 'ok', dead: 'bad', cancelled: 'muted', pending: 'info' };
    let text = row.state;
    let kind = kinds[row.state] || '';
    if (row.state === 'pending' && row.in_flight) text = 'in flight';
    else if (row.state === 'pending' && row.attempts > 0) {
      text = 'failing';
      kind = 'warn';
    }
    return badge(text, kind, 'state');
  }

  function subscriptionBadges(sub) {
    const health = sub.health || {};
    const breaker = { open: 'held back', probing: 'probing' }[health.breaker];
    return [
      sub.enabled ? badge('enabled', 'ok', 'enabled') : badge('disabled', 'muted', 'enabled'),
      sub.paused ? badge('paused', 'warn', 'paused') : null,
      breaker && !sub.paused ? badge(breaker, 'bad', 'breaker') : null,
      health.pause_reason ? h('div', { class: 'muted', test: 'pause-reason', text: health.pause_reason }) : null,
    ];
  }

  // The global delivery switch: whether delivery runs, and "pause all" / "resume all".
  function deliverySwitch(sw) {
    if (!sw) return null;
    const out = h('div', { class: 'action-out' });
    const button = h('button', {
      type: 'button',
      test: 'toggle-delivery',
      onclick: () => act(button, out, async () => {
        const answer = await api('POST', `/delivery/${sw.paused_by_operator ? 'resume' : 'pause'}`);
        flash = answer.enabled
          ? { message: 'Delivery is on again.', kind: 'ok' }
          : { message: `Delivery is off: ${answer.reason}`, kind: 'warn' };
        render();
      }),
    }, sw.paused_by_operator ? 'Resume all' : 'Pause all');
    return h('div', { class: 'action', test: 'delivery-switch' },
      sw.enabled
        ? h('p', { class: 'muted', test: 'delivery-on', text: 'Delivery is on. Pausing all holds every delivery; events are still taken in.' })
        : notice(`Delivery is off: ${sw.reason} Events are still taken in and stored.`, 'warn', 'delivery-off'),
      h('div', { class: 'inline-form' }, button), out);
  }

  // A JSON text with a member per line, every value as written (json.js): a parse and
  // reprint would round numbers like 1.0000000000000001.
  function pretty(text) {
    return window.posthornIndentJson ? window.posthornIndentJson(text) : text;
  }

  // ---------------------------------------------------------------- building blocks

  function table(test, head, rows, emptyText) {
    if (rows.length === 0) return notice(emptyText, 'info', `${test}-empty`);
    const node = h('table', { test },
      h('thead', null, h('tr', null, head.map((name) => h('th', { scope: 'col', text: name })))),
      h('tbody', null, rows));
    look.labelCells(node, head);
    return h('div', { class: 'table-wrap' }, node);
  }

  function cell(content, cls) {
    return h('td', { class: cls }, content);
  }

  function fields(pairs, test) {
    return h('dl', { class: 'fields', test },
      pairs.filter(Boolean).map(([name, value, valueTest]) => [
        h('dt', { text: name }),
        h('dd', { test: valueTest }, value === null || value === undefined || value === '' ? dash() : value),
      ]));
  }

  function card(label, value, note, test, kind, href) {
    return h(href ? 'a' : 'div', { class: `card ${kind || ''}`.trim(), href, test },
      h('span', { class: 'label', text: label }),
      h('span', { class: 'value', test: 'value', text: value }),
      note ? h('span', { class: 'note', text: note }) : null);
  }

  function section(title, ...children) {
    return h('section', { class: 'section' }, h('h2', { text: title }), children);
  }

  // A code block with a Copy button: the clipboard where the browser allows it, else
  // the text selected for Ctrl+C.
  function copyBlock(title, text, test) {
    const pre = h('pre', { class: 'code', test }, h('code', { text }));
    const status = h('span', { class: 'copy-status muted', test: `${test}-copy-status`, role: 'status' });
    const button = h('button', {
      type: 'button',
      class: 'small',
      test: `${test}-copy`,
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(text);
          status.textContent = 'Copied';
        } catch (_) {
          const range = document.createRange();
          range.selectNodeContents(pre);
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          let copied = false;
          try {
            copied = document.execCommand('copy');
          } catch (_) {
            copied = false;
          }
          status.textContent = copied ? 'Copied' : 'Selected: press Ctrl+C (⌘C) to copy';
        }
      },
    }, 'Copy');
    return h('div', { class: 'copy-block' },
      h('div', { class: 'copy-head' }, h('h3', { text: title }), status, button),
      pre);
  }

  // A table that pages backwards: rows from `path` with `params`, and an "Older" button
  // that asks for the next page by its cursor and appends the rows.
  async function pagedTable({ path, params, test, head, row, emptyText }) {
    const first = await api('GET', path + query({ ...params, limit: PAGE_SIZE }));
    const rows = first.items.map(row);
    const wrap = h('div', { class: 'paged' }, table(test, head, rows, emptyText));
    let cursor = first.next_cursor;
    const status = h('span', { class: 'muted', role: 'status' });
    const older = h('button', {
      type: 'button',
      test: 'older',
      onclick: async () => {
        older.disabled = true;
        status.textContent = 'Loading…';
        try {
          const next = await api('GET', path + query({ ...params, limit: PAGE_SIZE, cursor }));
          wrap.querySelector('tbody').append(...next.items.map(row));
          cursor = next.next_cursor;
          status.textContent = '';
          if (!cursor) older.remove();
        } catch (err) {
          status.textContent = err.message;
        } finally {
          older.disabled = false;
        }
      },
    }, 'Older');
    return [wrap, cursor ? h('div', { class: 'pager' }, older, status) : null];
  }

  function confirmAction(title, text, okLabel) {
    const dialog = document.getElementById('confirm');
    const ok = document.getElementById('confirm-ok');
    const cancel = document.getElementById('confirm-cancel');
    document.getElementById('confirm-title').textContent = title;
    document.getElementById('confirm-text').textContent = text;
    ok.textContent = okLabel || 'OK';
    return new Promise((resolve) => {
      const listening = new AbortController();
      const done = (answer) => {
        listening.abort();
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      ok.addEventListener('click', () => done(true), { signal: listening.signal });
      cancel.addEventListener('click', () => done(false), { signal: listening.signal });
      dialog.addEventListener('cancel', () => done(false), { signal: listening.signal });
      dialog.showModal();
      cancel.focus();
    });
  }

  // Runs an action button's work: disabled while it runs, its result or error in `out`.
  async function act(button, out, work) {
    button.disabled = true;
    out.replaceChildren(notice('Working…', 'info', 'working'));
    try {
      const result = await work();
      if (result instanceof Node) out.replaceChildren(result);
      else out.replaceChildren();
    } catch (err) {
      if (!err.redirected) out.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  }

  const delay = (msValue) => new Promise((resolve) => setTimeout(resolve, msValue));

  // Polls a delivery until `done(detail)` holds or the wait is over; the last detail.
  async function watchDelivery(id, seq, done) {
    const deadline = Date.now() + WAIT_FOR_ATTEMPT_MS;
    for (;;) {
      const detail = await api('GET', `/deliveries/${encodeURIComponent(id)}`);
      if (done(detail) || Date.now() > deadline || seq !== renderSeq) return detail;
      await delay(POLL_MS);
    }
  }

  // ---------------------------------------------------------------- views

  async function overviewView() {
    const o = await api('GET', '/overview');
    const extra = await Promise.all(extensions.overviewSections.map((make) => make()));
    const d = o.deliveries;
    const failures = o.recent_failures.map((f) => h('tr', { test: 'failure-row' },
      cell(when(f.started_at)),
      cell(link(`#/subscriptions/${encodeURIComponent(f.subscription)}`, f.subscription), 'nowrap'),
      cell(link(`#/deliveries/${f.delivery_id}`, f.event_id, 'delivery-link'), 'wrap'),
      cell(String(f.attempt), 'num'),
      cell(httpStatus(f.status, f.error)),
      cell(f.error || '', 'wrap'),
      cell(ms(f.duration_ms), 'num nowrap')));
    return [
      h('h1', { text: 'Overview' }),
      takeFlash(),
      deliverySwitch(o.delivery),
      h('div', { class: 'cards', test: 'overview' },
        card('Events in', count(o.events_total), `${count(o.events_last_24h)} in 24 hours`, 'stat-events'),
        card('Succeeded', count(d.delivered), 'deliveries delivered', 'stat-delivered', 'ok',
          '#/deliveries?state=delivered'),
        card('Failing', count(d.failing), 'pending after a failed attempt', 'stat-failing',
          d.failing ? 'warn' : '', '#/deliveries?state=pending'),
        card('Dead', count(d.dead), 'out of retries', 'stat-dead', d.dead ? 'bad' : '',
          '#/deliveries?state=dead'),
        card('Queue depth', count(o.queue_depth), `${count(d.pending)} pending`, 'stat-queue'),
        card('Oldest pending', o.oldest_pending_age_ms === null ? '—' : coarse(o.oldest_pending_age_ms),
          'waiting the longest', 'stat-oldest'),
        card('Subscriptions', count(o.subscriptions), 'in the config', 'stat-subscriptions', '',
          '#/subscriptions'),
        card('Delivered in the end', percent(o.rates.delivery_success_rate),
          `per delivery: of ${count(o.rates.deliveries_finished)} finished in 24 h`, 'stat-delivery-rate'),
        card('Attempts OK', percent(o.rates.attempt_success_rate),
          `per attempt: of ${count(o.rates.attempts)} in 24 h, retries included`, 'stat-attempt-rate')),
      extra,
      look.chartPanel(null),
      section('Recent failures',
        h('p', { class: 'muted', text: 'Failed attempts of the last 24 hours, by subscription and reason.' }),
        look.failureGroups(o.failure_groups)),
      section('Newest failed attempts',
        table('recent-failures',
          ['When', 'Subscription', 'Event', 'Attempt', 'Status', 'Error', 'Took'],
          failures, 'No failed attempts.')),
    ];
  }

  function scopeLines(sub) {
    const line = (name, list) => (list && list.length
      ? h('div', { class: 'scope' }, h('span', { class: 'muted', text: `${name}: ` }), list.join(', '))
      : null);
    return [line('conversations', sub.conversations), line('projects', sub.projects), line('events', sub.events)];
  }

  function lastAttempt(health) {
    if (health.last_attempt_at === null || health.last_attempt_at === undefined) return dash();
    return [when(health.last_attempt_at), ' ', httpStatus(health.last_status, health.last_error)];
  }

  async function subscriptionsView() {
    const { items } = await api('GET', '/subscriptions');
    const rows = items.map((sub) => {
      const health = sub.health;
      return h('tr', { test: 'subscription-row', 'data-name': sub.name },
        cell(link(`#/subscriptions/${encodeURIComponent(sub.name)}`, sub.name, 'subscription-link'), 'nowrap'),
        cell(scopeLines(sub), 'wrap'),
        cell(subscriptionBadges(sub), 'badges'),
        cell(h('span', { test: 'delivery-rate', text: percent(health.delivery_success_rate) }), 'num'),
        cell(h('span', { test: 'attempt-rate', text: percent(health.success_rate) }), 'num'),
        h('td', { class: 'trend', 'data-trend-for': sub.name }),
        cell(`${ms(health.latency_median_ms)} / ${ms(health.latency_p95_ms)}`, 'num nowrap'),
        cell(lastAttempt(health)),
        cell(h('span', { class: health.failing_streak ? 'bad-text' : '', text: String(health.failing_streak) }), 'num'),
        cell(String(health.pending), 'num'));
    });
    return [
      h('h1', { text: 'Subscriptions' }),
      h('p', { class: 'muted' }, 'Health over the last 24 hours. Delivered: deliveries that arrived in the end, of those finished. Attempts OK: answers that were 2xx, retries included. ',
        link('#/preview', 'Preview a draft subscription →', 'preview-draft-link')),
      trends(table('subscriptions',
        ['Name', 'Scope', 'State', 'Delivered', 'Attempts OK', 'Last 24 h', 'Median / p95', 'Last attempt',
          'Failing streak', 'Pending'],
        rows, 'No subscriptions: add [[subscription]] blocks to the config.')),
    ];
  }

  function trends(node) {
    look.fillTrends(node);
    return node;
  }

  async function subscriptionView(seq, name) {
    const path = `/subscriptions/${encodeURIComponent(name)}`;
    const sub = await api('GET', path);
    const health = sub.health;
    const reload = (message, kind) => {
      flash = { message, kind };
      render();
    };

    // Send a test event, then follow its delivery until the first attempt.
    const testOut = h('div', { class: 'action-out', test: 'test-result-area' });
    const canTest = sub.enabled && !sub.paused;
    const testButton = h('button', {
      type: 'button',
      class: 'primary',
      test: 'send-test',
      disabled: !canTest,
      onclick: async () => {
        if (!await confirmAction('Send a test event?',
          `posthorn sends a signed posthorn.test event to ${sub.name} (${sub.url}).`, 'Send')) return;
        await act(testButton, testOut, async () => {
          const sent = await api('POST', `${path}/test`);
          testOut.replaceChildren(notice(
            `Sent event ${sent.event_id} as delivery #${sent.delivery_id}; waiting for the first attempt…`,
            'info', 'test-waiting'));
          const detail = await watchDelivery(sent.delivery_id, seq, (dd) => dd.attempts.length > 0);
          return testResult(detail, sent);
        });
      },
    }, 'Send test event');

    const pauseOut = h('div', { class: 'action-out' });
    const pauseButton = h('button', {
      type: 'button',
      test: 'toggle-pause',
      onclick: () => act(pauseButton, pauseOut, async () => {
        const answer = await api('POST', `${path}/${sub.paused ? 'resume' : 'pause'}`);
        reload(answer.paused ? `${sub.name} is paused: nothing is sent until you resume it.`
          : `${sub.name} is running again.`, 'ok');
      }),
    }, sub.paused ? 'Resume' : 'Pause');

    const sinceInput = look.timeInput({
      name: 'since',
      test: 'retry-since',
      label: 'Retry failed deliveries changed since',
      value: Date.now() - 24 * 3600 * 1000,
      required: true,
    });
    const retryOut = h('div', { class: 'action-out' });
    const retryButton = h('button', {
      type: 'button',
      test: 'retry-failed',
      onclick: async () => {
        let since;
        try {
          since = sinceInput.readTime();
        } catch (err) {
          retryOut.replaceChildren(errorBox(err));
          return;
        }
        if (!await confirmAction('Retry failed deliveries?',
          `Every dead or failing delivery of ${sub.name} changed since ${localTime(since)} is sent again now.`,
          'Retry')) return;
        await act(retryButton, retryOut, async () => {
          const answer = await api('POST', `${path}/retry-failed`, { since });
          return notice(`${answer.retried} ${answer.retried === 1 ? 'delivery is' : 'deliveries are'} due now.`,
            'ok', 'retry-failed-result');
        });
      },
    }, 'Retry failed');

    const eventInput = h('input', {
      type: 'text',
      test: 'replay-event-id',
      placeholder: 'event id, e.g. evt_7f3a',
      'aria-label': 'Event id to replay',
      autocomplete: 'off',
      spellcheck: 'false',
    });
    const replayOut = h('div', { class: 'action-out' });
    const replayButton = h('button', {
      type: 'button',
      test: 'replay',
      onclick: async () => {
        const eventId = eventInput.value.trim();
        if (!eventId) {
          replayOut.replaceChildren(errorBox(new Error('Give the id of the event to replay.')));
          return;
        }
        if (!await confirmAction('Replay this event?',
          `posthorn sends event ${eventId} to ${sub.name} again.`, 'Replay')) return;
        await act(replayButton, replayOut, async () => {
          const answer = await api('POST', `${path}/replay`, { event_id: eventId });
          return h('p', { class: 'notice ok', test: 'replay-result', role: 'status' },
            answer.created ? 'Replaying as a new ' : 'Replaying: its ',
            link(`#/deliveries/${answer.delivery_id}`, `delivery #${answer.delivery_id}`),
            answer.created ? '.' : ' is due again.');
        });
      },
    }, 'Replay');

    const snippets = sub.snippets || {};
    return [
      h('p', { class: 'crumbs' }, link('#/subscriptions', 'Subscriptions'), ' / '),
      h('h1', { test: 'subscription-name' }, h('span', { text: sub.name }), subscriptionBadges(sub)),
      takeFlash(),
      fields([
        ['URL', h('code', { text: sub.url }), 'url'],
        ['Conversations', (sub.conversations || []).join(', '), 'conversations'],
        ['Projects', (sub.projects || []).join(', '), 'projects'],
        ['Events', (sub.events || []).join(', '), 'events'],
        ['Signing', { hex: 'hex HMAC of the body', ed25519: 'Standard Webhooks, ed25519 (v1a)' }[sub.signing]
          || 'Standard Webhooks', 'signing'],
        (sub.public_keys || []).length ? ['Public key', h('code', { text: sub.public_keys.join(' ') }), 'public-keys'] : null,
      ], 'subscription-fields'),
      section('Health (last 24 h)',
        h('div', { class: 'cards', test: 'health' },
          card('Delivered in the end', percent(health.delivery_success_rate),
            `per delivery: of ${count(health.deliveries_finished)} finished`, 'health-delivery-rate'),
          card('Attempts OK', percent(health.success_rate),
            `per attempt: of ${count(health.attempts_counted)}, retries included`, 'health-success'),
          card('Latency median', ms(health.latency_median_ms), `p95 ${ms(health.latency_p95_ms)}`, 'health-latency'),
          card('Failing streak', String(health.failing_streak), 'failed attempts in a row', 'health-streak',
            health.failing_streak ? 'bad' : ''),
          card('Pending', String(health.pending), 'deliveries waiting', 'health-pending', '',
            `#/deliveries${query({ subscription: sub.name, state: 'pending' })}`)),
        fields([
          ['Last attempt', lastAttempt(health), 'last-attempt'],
          health.last_error ? ['Last error', health.last_error, 'last-error'] : null,
        ])),
      look.chartPanel(sub.name),
      section('Actions',
        h('div', { class: 'actions' },
          h('div', { class: 'action' },
            h('h3', { text: 'Send a test event' }),
            h('p', { class: 'muted', text: canTest ? 'A posthorn.test event to this subscription only.'
              : 'Only an enabled, running subscription takes a test event.' }),
            h('div', { class: 'inline-form' }, testButton), testOut),
          h('div', { class: 'action' },
            h('h3', { text: sub.paused ? 'Paused' : 'Running' }),
            h('p', { class: 'muted', text: sub.paused ? 'Deliveries wait until you resume.'
              : 'Pausing holds deliveries; nothing is lost.' }),
            health.pause_reason ? notice(`Paused by posthorn: ${health.pause_reason}`, 'warn', 'pause-reason') : null,
            health.failing_since ? h('p', { class: 'muted', test: 'failing-since' }, 'Failing since ', when(health.failing_since)) : null,
            h('div', { class: 'inline-form' }, pauseButton), pauseOut),
          h('div', { class: 'action' },
            h('h3', { text: 'Retry failed deliveries' }),
            h('p', { class: 'muted', text: 'Dead or failing deliveries changed since:' }),
            h('div', { class: 'inline-form' }, sinceInput, retryButton), retryOut),
          h('div', { class: 'action' },
            h('h3', { text: 'Replay an event' }),
            h('p', { class: 'muted', text: 'Send a stored event to this subscription again.' }),
            h('div', { class: 'inline-form' }, eventInput, replayButton), replayOut)),
        h('p', null, link(`#/deliveries${query({ subscription: sub.name })}`, 'Deliveries of this subscription →',
          'subscription-deliveries')),
        h('p', null, link(`#/preview${query({ subscription: sub.name })}`, 'What it matched in the last day →',
          'subscription-preview'))),
      extensions.subscriptionSections.map((make) => make(sub)),
      section('Configuration',
        copyBlock('config.toml', sub.toml || '', 'toml')),
      section('Verify signatures on the receiver',
        h('p', { class: 'muted', text: 'Code for the receiving side that checks this subscription\'s signatures.' }),
        copyBlock('Python', snippets.python || '', 'snippet-python'),
        copyBlock('Node.js', snippets.node || '', 'snippet-node'),
        copyBlock('Go', snippets.go || '', 'snippet-go')),
    ];
  }

  function testResult(detail, sent) {
    const first = detail.attempts[0];
    const to = link(`#/deliveries/${sent.delivery_id}`, `delivery #${sent.delivery_id}`, 'test-delivery-link');
    if (!first) {
      return h('p', { class: 'notice warn', test: 'test-result', 'data-outcome': 'waiting', role: 'status' },
        'No attempt yet (the queue may be busy); follow ', to, '.');
    }
    const delivered = first.status !== null && first.status >= 200 && first.status < 300;
    const what = first.status !== null ? `HTTP ${first.status}` : (first.error || 'no answer');
    return h('p', {
      class: `notice ${delivered ? 'ok' : 'bad'}`,
      test: 'test-result',
      'data-outcome': delivered ? 'delivered' : 'failed',
      role: 'status',
    },
    delivered ? `Delivered: ${what} in ${duration(first.duration_ms)}. ` : `Failed: ${what}. `,
    !delivered && first.error && first.status !== null ? `${first.error}. ` : '',
    'See ', to, '.');
  }

  function deliveryFilters(params, subscriptions) {
    const subSelect = h('select', { name: 'subscription', test: 'filter-subscription' },
      h('option', { value: '', text: 'any' }));
    const names = subscriptions.map((s) => s.name);
    if (params.subscription && !names.includes(params.subscription)) names.push(params.subscription);
    for (const name of names) subSelect.append(h('option', { value: name, text: name }));
    subSelect.value = params.subscription || '';

    const stateSelect = h('select', { name: 'state', test: 'filter-state' },
      ['', 'pending', 'delivered', 'dead', 'cancelled'].map((s) => h('option', { value: s, text: s || 'any' })));
    stateSelect.value = params.state || '';

    const text = (name, test, placeholder) => h('input', {
      type: 'text', name, test, placeholder, value: params[name] || '', autocomplete: 'off', spellcheck: 'false',
    });
    const time = (name, test) => {
      const value = params[name];
      let shown = null;
      if (value) {
        const t = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
        if (!Number.isNaN(t)) shown = t;
      }
      return look.timeInput({ name, test, label: name === 'from' ? 'Created from' : 'Created before', value: shown });
    };
    const inputs = {
      subscription: subSelect,
      state: stateSelect,
      conversation: text('conversation', 'filter-conversation', 'c-204 or c-2*'),
      event_id: text('event_id', 'filter-event-id', 'evt_7f3a'),
      event_type: text('event_type', 'filter-event-type', 'conversation.*'),
      from: time('from', 'filter-from'),
      to: time('to', 'filter-to'),
    };
    const label = (title, input) => h('label', { class: input.readTime ? 'time' : null },
      h('span', { text: title }), input);
    const form = h('form', {
      class: 'filters',
      test: 'filters',
      onsubmit: (event) => {
        event.preventDefault();
        const next = {};
        for (const [name, input] of Object.entries(inputs)) {
          if (input.readTime) {
            try {
              next[name] = input.readTime();
            } catch (err) {
              input.reportValidity();
              return;
            }
          } else next[name] = input.value.trim();
        }
        location.hash = `#/deliveries${query(next)}`;
      },
    },
    label('Subscription', inputs.subscription),
    label('State', inputs.state),
    label('Conversation', inputs.conversation),
    label('Event', inputs.event_id),
    label('Event type', inputs.event_type),
    label('From', inputs.from),
    label('To', inputs.to),
    h('div', { class: 'filter-buttons' },
      h('button', { type: 'submit', class: 'primary', test: 'filter-apply' }, 'Filter'),
      h('a', { class: 'button', href: '#/deliveries', test: 'filter-clear' }, 'Clear')));
    return form;
  }

  async function deliveriesView(params) {
    const filter = {};
    for (const key of ['subscription', 'state', 'conversation', 'event_id', 'event_type', 'from', 'to']) {
      if (params[key]) filter[key] = params[key];
    }
    let subscriptions = [];
    try {
      subscriptions = (await api('GET', '/subscriptions')).items;
    } catch (err) {
      if (err.redirected) throw err;
    }
    const paged = await pagedTable({
      path: '/deliveries',
      params: filter,
      test: 'deliveries',
      head: ['Delivery', 'Created', 'Subscription', 'Event type', 'Conversation', 'State', 'Attempts',
        'Last status', 'Next attempt'],
      emptyText: Object.keys(filter).length ? 'No deliveries match these filters.' : 'No deliveries yet.',
      row: (d) => h('tr', { test: 'delivery-row', 'data-id': d.id },
        cell(link(`#/deliveries/${d.id}`, `#${d.id}`, 'delivery-link')),
        cell(when(d.created_at)),
        cell(link(`#/subscriptions/${encodeURIComponent(d.subscription)}`, d.subscription), 'nowrap'),
        cell(dotted(d.event_type)),
        cell(d.conversation_id || dash(), 'nowrap'),
        cell(stateBadge(d)),
        cell(String(d.attempts), 'num'),
        cell(httpStatus(d.last_status, d.last_error)),
        cell(d.state === 'pending' ? age(d.next_attempt_at) : dash())),
    });
    return [
      h('h1', { text: 'Deliveries' }),
      deliveryFilters(params, subscriptions),
      paged,
    ];
  }

  // Ordered delivery: what this delivery waits behind in its conversation's line, and
  // how many wait behind it. Absent for subscriptions without ordering.
  function lineSection(line) {
    if (!line) return null;
    const held = line.held_behind;
    return section('Conversation line',
      held
        ? h('p', { class: 'notice warn', role: 'status', test: 'line-held-behind' },
          'Held behind delivery ',
          link(`#/deliveries/${held.delivery_id}`, `#${held.delivery_id}`, 'line-held-link'),
          ` (event ${held.event_id}, ${held.state}, ${held.attempts} attempt${held.attempts === 1 ? '' : 's'}` +
          `${held.next_attempt_at ? `, next at ${localTime(held.next_attempt_at)}` : ''}): ` +
          `the events of conversation ${line.conversation_id} go one at a time, in order.`)
        : h('p', { test: 'line-head', text: `Nothing earlier in conversation ${line.conversation_id} holds this one back.` }),
      h('p', { test: 'line-waiting', text: `${line.waiting_behind} later deliver${line.waiting_behind === 1 ? 'y' : 'ies'} of this conversation wait behind this one.` }));
  }

  async function deliveryView(seq, id) {
    const path = `/deliveries/${encodeURIComponent(id)}`;
    const detail = await api('GET', path);
    const d = detail.delivery;
    const e = detail.event;
    const r = detail.request;

    const retryOut = h('div', { class: 'action-out' });
    const retryable = d.state !== 'delivered' && !d.in_flight;
    const retryButton = h('button', {
      type: 'button',
      class: 'primary',
      test: 'retry-delivery',
      disabled: !retryable,
      onclick: async () => {
        if (!await confirmAction('Retry this delivery?',
          `posthorn sends event ${d.event_id} to ${d.subscription} again now.`, 'Retry')) return;
        await act(retryButton, retryOut, async () => {
          await api('POST', `${path}/retry`);
          const before = detail.attempts.length;
          retryOut.replaceChildren(notice('Queued; waiting for the new attempt…', 'info', 'retry-waiting'));
          const after = await watchDelivery(id, seq, (dd) => dd.attempts.length > before && !dd.delivery.in_flight);
          if (after.attempts.length > before) {
            flash = { message: `Retried: attempt ${after.attempts.length} is below.`, kind: 'ok' };
            if (seq === renderSeq) render();
            return null;
          }
          return notice('Queued for retry; no attempt yet. Reload to see it.', 'warn', 'retry-queued');
        });
      },
    }, 'Retry');

    const attempts = detail.attempts.map((a) => h('tr', { test: 'attempt-row', 'data-attempt': a.attempt },
      cell(String(a.attempt), 'num'),
      cell(when(a.started_at)),
      cell(ms(a.duration_ms), 'num nowrap'),
      cell(httpStatus(a.status, a.error)),
      cell(a.error || '', 'wrap'),
      cell(a.response_snippet ? h('pre', { class: 'snippet', text: a.response_snippet }) : dash(), 'wide')));

    const headerRows = r ? r.headers.map(([name, value]) => h('tr', null,
      cell(h('code', { text: name }), 'nowrap'), cell(h('code', { text: value }), 'wrap'))) : [];
    const request = r
      ? [h('p', { class: 'request-line', test: 'request-line' }, h('code', { text: `${r.method} ${r.url}` })),
        table('request-headers', ['Header', 'Value'], headerRows, 'No headers.'),
        // The body as this subscription is sent it (its include/exclude applied), not the
        // stored event, which the Event section below shows whole.
        h('h3', { test: 'request-body-title', text: r.shaped ? 'Body as sent (shaped by include/exclude; the stored event below is whole)' : 'Body' }),
        (r.shaped_otherwise || []).length
          ? notice(`Attempt ${r.shaped_otherwise.join(', ')} sent a body shaped by an earlier include/exclude: the config changed since. This is what the next attempt sends.`,
            'warn', 'request-shaped-otherwise')
          : null,
        r.body === null
          ? notice('The body was dropped (by retention, or the conversation was forgotten).', 'warn', 'request-body-dropped')
          : h('pre', { class: 'code wrap', test: 'request-body' }, h('code', { text: pretty(r.body) }))]
      : notice(`${d.subscription} is no longer in the config, so nothing more is sent.`, 'warn', 'request-gone');

    return [
      h('p', { class: 'crumbs' }, link('#/deliveries', 'Deliveries'), ' / '),
      h('h1', { test: 'delivery-title' }, h('span', { text: `Delivery #${d.id}` }), stateBadge(d)),
      takeFlash(),
      h('div', { class: 'toolbar' }, retryButton,
        h('button', { type: 'button', test: 'refresh', onclick: () => render() }, 'Refresh'),
        retryable ? null : h('span', { class: 'muted', text: d.in_flight ? 'An attempt is in flight.' : 'Delivered: nothing to retry.' })),
      retryOut,
      fields([
        ['Subscription', link(`#/subscriptions/${encodeURIComponent(d.subscription)}`, d.subscription), 'delivery-subscription'],
        ['Event', h('a', { href: `#/events/${encodeURIComponent(d.event_id)}`, test: 'delivery-event-link' },
          h('code', { text: d.event_id })), 'delivery-event-id'],
        ['Event type', d.event_type, 'delivery-event-type'],
        ['Conversation', d.conversation_id, 'delivery-conversation'],
        ['Attempts', String(d.attempts), 'delivery-attempts'],
        ['Created', when(d.created_at)],
        ['Last change', when(d.updated_at)],
        d.state === 'pending' ? ['Next attempt', when(d.next_attempt_at)] : null,
        d.last_error ? ['Last error', d.last_error, 'delivery-last-error'] : null,
      ], 'delivery-fields'),
      lineSection(detail.line),
      section('Attempts',
        table('attempts', ['#', 'Started', 'Took', 'Status', 'Error', 'Response'], attempts,
          'No attempts yet.')),
      section('Request as sent', request),
      section('Event',
        fields([
          ['Id', h('code', { text: e.id }), 'event-id'],
          ['Type', e.event_type],
          ['Conversation', e.conversation_id],
          ['Project', e.project_id],
          ['Received', when(e.received_at)],
          ['Source', e.source, 'event-source'],
          ['Sequence', String(e.seq)],
        ], 'event-fields'),
        e.body === null
          ? notice(`The body was dropped (by retention or a forget)${e.payload_dropped_at ? ` at ${localTime(e.payload_dropped_at)}` : ''}.`,
            'warn', 'event-body-dropped')
          : h('pre', { class: 'code wrap', test: 'event-body' }, h('code', { text: pretty(e.body) }))),
    ];
  }

  async function rejectionsView() {
    const paged = await pagedTable({
      path: '/rejections',
      params: {},
      test: 'rejections',
      head: ['When', 'Source', 'Reason', 'Snippet'],
      emptyText: 'Nothing was rejected.',
      row: (r) => h('tr', { test: 'rejection-row' },
        cell(when(r.at)),
        cell([look.path(r.source), r.line !== null && r.line !== undefined ? ` line ${r.line}` : ''], 'wrap-short'),
        cell(r.reason, 'wrap'),
        cell(r.snippet ? h('pre', { class: 'snippet', text: r.snippet }) : dash(), 'wide')),
    });
    return [
      h('h1', { text: 'Rejections' }),
      h('p', { class: 'muted', text: 'Input posthorn could not take: spool lines and inlet requests, with the reason.' }),
      paged,
    ];
  }

  // `applied`, `refused: <why>` or `failed: <why>`: a badge, and the reason beside it.
  function auditResult(result) {
    const [word, ...why] = String(result).split(': ');
    const kinds = { applied: 'ok', refused: 'warn', failed: 'bad' };
    return [badge(word, kinds[word] || '', 'audit-result'),
      why.length ? h('div', { class: 'audit-why', text: why.join(': ') }) : null];
  }

  async function auditView() {
    const paged = await pagedTable({
      path: '/audit',
      params: {},
      test: 'audit',
      head: ['When', 'Who', 'From', 'Action', 'Detail', 'Result'],
      emptyText: 'No operator actions yet.',
      row: (a) => h('tr', { test: 'audit-row', 'data-action': a.action },
        cell(when(a.at)),
        cell(a.actor),
        cell(a.origin || dash(), 'nowrap'),
        cell(h('code', { test: 'audit-action', text: a.action })),
        cell(a.detail, 'wrap'),
        cell(auditResult(a.result), 'wrap-short')),
    });
    return [
      h('h1', { text: 'Audit log' }),
      h('p', { class: 'muted', text: 'Operator actions and config reloads, newest first.' }),
      paged,
    ];
  }

  function loginView() {
    const password = h('input', {
      type: 'password',
      id: 'password',
      name: 'password',
      test: 'login-password',
      autocomplete: 'current-password',
      required: true,
    });
    const error = h('p', { class: 'notice bad hidden', test: 'login-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'primary', test: 'login-submit' }, 'Log in');
    const form = h('form', {
      class: 'login panel',
      test: 'login-form',
      onsubmit: async (event) => {
        event.preventDefault();
        submit.disabled = true;
        error.classList.add('hidden');
        try {
          const answer = await api('POST', '/login', { password: password.value });
          csrfToken = answer.csrf_token;
          password.value = '';
          const target = afterLogin.startsWith('#/login') ? '#/' : afterLogin;
          afterLogin = '#/';
          location.hash = target;
        } catch (err) {
          error.textContent = err.message;
          error.classList.remove('hidden');
          password.select();
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h1', { text: 'Log in to posthorn' }),
    // For password managers: the account has no name, the page asks for none.
    h('input', { type: 'text', name: 'username', autocomplete: 'username', value: 'admin', class: 'visually-hidden', tabindex: '-1', 'aria-hidden': 'true' }),
    h('label', { for: 'password', text: 'Password' }),
    password,
    error,
    submit);
    main.replaceChildren(form);
    password.focus();
  }

  function takeFlash() {
    if (!flash) return null;
    const node = notice(flash.message, flash.kind, 'flash');
    flash = null;
    return node;
  }

  // ---------------------------------------------------------------- routing

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const [pathPart, search] = raw.split('?', 2);
    const path = pathPart.split('/').filter(Boolean).map((part) => {
      try {
        return decodeURIComponent(part);
      } catch (_) {
        return part;
      }
    });
    const params = {};
    for (const [key, value] of new URLSearchParams(search || '')) params[key] = value;
    return { path, params };
  }

  // forget.js builds its page with these (route() shadows `section`).
  const forgetKit = () => ({ api, h, section, notice, confirmAction, act });

  const TITLES = {
    overview: 'Overview', subscriptions: 'Subscriptions', deliveries: 'Deliveries',
    rejections: 'Rejections', audit: 'Audit', login: 'Log in', forget: 'Forget a conversation',
  };

  function route({ path, params }, seq) {
    const [section, id] = path;
    switch (section || 'overview') {
      case 'overview': return ['overview', () => overviewView()];
      case 'subscriptions': return ['subscriptions', id ? () => subscriptionView(seq, id) : () => subscriptionsView()];
      case 'deliveries': return ['deliveries', id ? () => deliveryView(seq, id) : () => deliveriesView(params)];
      case 'rejections': return ['rejections', () => rejectionsView()];
      case 'audit': return ['audit', () => auditView()];
      case 'forget': return ['forget', () => window.posthornForget(forgetKit())];
      default: {
        const page = pages[section];
        return page ? [section, () => page.view({ path, params, seq })] : [null, null];
      }
    }
  }

  async function render() {
    const seq = ++renderSeq;
    const parsed = parseHash();
    const loggingIn = parsed.path[0] === 'login';
    document.body.classList.toggle('logged-out', loggingIn);
    if (loggingIn) {
      document.title = 'Log in · posthorn';
      // One form: the start and a hash change can both ask for it.
      if (shownHash !== location.hash || !main.querySelector('[data-test="login-form"]')) {
        shownHash = location.hash;
        loginView();
      }
      return;
    }
    const [name, build] = route(parsed, seq);
    for (const a of document.querySelectorAll('.nav a')) {
      a.classList.toggle('active', a.dataset.route === name);
    }
    document.title = `${TITLES[name] || (pages[name] && pages[name].title) || 'Not found'} · posthorn`;
    if (!build) {
      shownHash = null;
      main.replaceChildren(h('h1', { text: 'Not found' }),
        h('p', null, 'No page here. ', link('#/', 'Go to the overview'), '.'));
      return;
    }
    const hash = location.hash;
    if (shownHash !== hash) {
      shownHash = null;
      main.replaceChildren(h('p', { class: 'muted loading', test: 'loading', text: 'Loading…' }));
    }
    try {
      const nodes = await build();
      if (seq !== renderSeq) return;
      main.replaceChildren(h('div', { class: 'view', test: `view-${name}` }, nodes));
      shownHash = hash;
    } catch (err) {
      if (seq !== renderSeq || err.redirected) return;
      main.replaceChildren(errorBox(err));
      shownHash = null;
    }
  }

  async function logout() {
    try {
      await api('POST', '/logout');
    } catch (_) {
      // Logged out either way: the session is gone or was never there.
    }
    csrfToken = null;
    afterLogin = '#/';
    location.hash = '#/login';
  }

  // Pages from other files (find.js, ...), each `window.posthornPages.push((kit) => ({
  // route: {view, title}, ...}))`, given the helpers above.
  const pages = {};
  function loadPages() {
    const kit = {
      api, query, h, add, dash, badge, notice, errorBox, link, localTime, when, dotted,
      count, httpStatus, stateBadge, table, cell, fields, section, copyBlock, act, pretty,
      render: () => render(),
    };
    for (const make of window.posthornPages || []) Object.assign(pages, make(kit));
  }

  async function start() {
    loadPages();
    document.getElementById('logout').addEventListener('click', logout);
    if (!location.hash || location.hash === '#') history.replaceState(null, '', '#/');
    try {
      const session = await api('GET', '/session');
      csrfToken = session.csrf_token || null;
      if (location.hash.startsWith('#/login')) history.replaceState(null, '', '#/');
    } catch (err) {
      if (!err.redirected) {
        main.replaceChildren(errorBox(err));
      }
    }
    window.addEventListener('hashchange', render);
    render();
  }

  Object.assign(extensions, { api, h, section, copyBlock, errorBox, notice, link, table, cell, badge, when });
  start();
})();
