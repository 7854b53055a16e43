// The admin page's look-instead-of-read parts: charts as inline SVG (no library, no
// network), the small trend line in each subscription row, failures grouped by
// subscription and reason, times with their zone, and the 24-hour date entry.
//
// app.js calls window.posthornLook.init({ api, h, ... }) once and then uses what it
// returns. As in app.js, nothing here builds markup from strings: values go in as text.
'use strict';

window.posthornLook = (() => {
  const SVG = 'http://www.w3.org/2000/svg';
  const RANGES = ['1h', '24h', '7d', '30d'];
  const RANGE_WORDS = { '1h': 'last hour', '24h': 'last 24 hours', '7d': 'last 7 days', '30d': 'last 30 days' };
  const HEIGHT = 150;
  const PAD = { top: 14, right: 8, bottom: 22, left: 44 };
  // The range the charts show, kept while the page is open.
  let range = '24h';
  let kit = null;

  const pad = (n) => String(n).padStart(2, '0');

  // ---------------------------------------------------------------- time

  // The zone of local time at `ms`: "UTC" or "UTC+01:00".
  function zone(ms) {
    const offset = -new Date(ms).getTimezoneOffset();
    if (offset === 0) return 'UTC';
    const abs = Math.abs(offset);
    return `UTC${offset > 0 ? '+' : '-'}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
  }

  // Local wall-clock time with its zone: 2026-11-22 11:00:03 UTC+01:00.
  function stamp(ms, seconds) {
    const d = new Date(ms);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds === false ? '' : `:${pad(d.getSeconds())}`}`;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time} ${zone(ms)}`;
  }

  const UNITS = { s: 1000, m: 60000, min: 60000, h: 3600000, d: 86400000, w: 604800000 };

  // What an operator types for a time: "2026-11-25 14:30" (local, 24-hour, seconds
  // optional), RFC 3339 ("2026-11-25T14:30:00Z", "+01:00"), or how long ago ("30m",
  // "2h", "7d", "1w"). Returns unix ms or throws with a sentence saying what is wrong.
  function parseWhen(text, now) {
    const value = String(text || '').trim();
    if (!value) throw new Error('Give a time: 2026-11-25 14:30, an RFC 3339 time, or how long ago (30m, 2h, 7d).');
    const ago = /^(\d+)\s*(s|m|min|h|d|w)$/i.exec(value);
    if (ago) return (now === undefined ? Date.now() : now) - Number(ago[1]) * UNITS[ago[2].toLowerCase()];
    const local = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(value);
    if (local) {
      const [y, mo, d, hh, mi, ss] = local.slice(1).map((v) => (v === undefined ? 0 : Number(v)));
      const t = new Date(y, mo - 1, d, hh, mi, ss);
      if (t.getFullYear() !== y || t.getMonth() !== mo - 1 || t.getDate() !== d || hh > 23 || mi > 59 || ss > 59) {
        throw new Error(`${value} is not a date and time that exists.`);
      }
      return t.getTime();
    }
    if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(value)) {
      const t = Date.parse(value);
      if (!Number.isNaN(t)) return t;
    }
    throw new Error(`Cannot read "${value}" as a time: write 2026-11-25 14:30 (24-hour, ${zone(Date.now())}), ` +
      'an RFC 3339 time, or how long ago (30m, 2h, 7d).');
  }

  // A text input for a time (24-hour, ISO-like), checked as it is typed; `.readTime()` gives
  // unix ms or null when empty, and throws (and marks the field) when unreadable.
  function timeInput({ name, test, label, value, required }) {
    const { h } = kit;
    const input = h('input', {
      type: 'text',
      name,
      test,
      class: 'when-input',
      inputmode: 'text',
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'YYYY-MM-DD HH:MM or 30m',
      'aria-label': label,
      title: `Local time (${zone(Date.now())}), 24-hour: 2026-11-25 14:30; or RFC 3339; or how long ago: 30m, 2h, 7d`,
      value: value === null || value === undefined ? '' : stamp(value, false).replace(/ UTC.*$/, ''),
    });
    const check = () => {
      if (!input.value.trim() && !required) {
        input.setCustomValidity('');
        return null;
      }
      try {
        const t = parseWhen(input.value);
        input.setCustomValidity('');
        return t;
      } catch (err) {
        input.setCustomValidity(err.message);
        throw err;
      }
    };
    input.addEventListener('input', () => {
      try {
        check();
      } catch (_) {
        // Marked invalid; said on submit.
      }
    });
    // Not `when`: browsers now give every element a `when()` (the Observable API).
    input.readTime = check;
    return input;
  }

  // ---------------------------------------------------------------- SVG

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // 0, 1, 2, 5, 10, 20, 50, ...: a round top for the y axis.
  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function axisTime(ms, step) {
    const d = new Date(ms);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return step >= 3600000 ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}` : hm;
  }

  // A line chart of `series` ([{ name, cls, values }]) over `times`, with a caption, a
  // legend, a tooltip per point and the numbers as a table under "Numbers". `format`
  // turns a value into text. Null values leave a gap.
  function lineChart({ title, test, times, step, series, format, width }) {
    const { h } = kit;
    const w = Math.max(240, Math.round(width || 600));
    const plotW = w - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
    const top = niceMax(Math.max(0, ...all));
    const x = (i) => PAD.left + (times.length > 1 ? (i * plotW) / (times.length - 1) : plotW / 2);
    const y = (v) => PAD.top + plotH - (v / top) * plotH;
    const zoneName = zone(times[times.length - 1] || Date.now());
    const summary = series.map((s) => {
      const values = s.values.filter((v) => v !== null && v !== undefined);
      const peak = values.length ? Math.max(...values) : null;
      return `${s.name}: highest ${peak === null ? 'none' : format(peak)}`;
    }).join('; ');
    const label = `${title}, ${RANGE_WORDS[range] || range} (${zoneName}). ${summary}.`;
    const lines = series.map((s) => {
      const runs = [];
      let run = [];
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) {
          if (run.length) runs.push(run);
          run = [];
        } else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      });
      if (run.length) runs.push(run);
      return runs.map((points) => (points.length === 1
        ? svg('circle', { class: `series ${s.cls}`, cx: points[0].split(',')[0], cy: points[0].split(',')[1], r: 3 })
        : svg('polyline', { class: `series ${s.cls}`, points: points.join(' ') })));
    });
    const columnW = times.length > 1 ? plotW / (times.length - 1) : plotW;
    const tips = times.map((t, i) => svg('rect', {
      class: 'tip', x: (x(i) - columnW / 2).toFixed(1), y: PAD.top, width: columnW.toFixed(1), height: plotH,
    }, svg('title', null, `${stamp(t, false)}\n${series.map((s) => `${s.name}: ${s.values[i] === null || s.values[i] === undefined ? '—' : format(s.values[i])}`).join('\n')}`)));
    const ticks = [0, Math.floor((times.length - 1) / 2), times.length - 1].filter((v, i, a) => a.indexOf(v) === i);
    const chart = svg('svg', {
      class: 'chart', role: 'img', 'aria-label': label, viewBox: `0 0 ${w} ${HEIGHT}`, width: '100%',
      'data-test': `${test}-svg`,
    },
    svg('title', null, label),
    [0, 0.5, 1].map((f) => svg('line', { class: 'grid', x1: PAD.left, x2: w - PAD.right, y1: y(top * f), y2: y(top * f) })),
    svg('text', { class: 'axis', x: PAD.left - 4, y: y(top) + 4, 'text-anchor': 'end' }, format(top)),
    svg('text', { class: 'axis', x: PAD.left - 4, y: y(0) + 4, 'text-anchor': 'end' }, '0'),
    ticks.map((i, n) => svg('text', {
      class: 'axis', x: x(i), y: HEIGHT - 6, 'text-anchor': n === 0 ? 'start' : (i === times.length - 1 ? 'end' : 'middle'),
    }, axisTime(times[i], step))),
    lines, tips);
    const head = [`From (${zoneName})`, ...series.map((s) => s.name)];
    const numbers = h('details', { class: 'chart-numbers', test: `${test}-numbers` },
      h('summary', { text: 'Numbers' }),
      h('div', { class: 'table-wrap' },
        h('table', { test: `${test}-table` },
          h('caption', { class: 'visually-hidden', text: label }),
          h('thead', null, h('tr', null, h('th', { scope: 'col', text: `From (${zoneName})` }),
            series.map((s) => h('th', { scope: 'col', text: s.name })))),
          h('tbody', null, times.map((t, i) => h('tr', null,
            h('td', { class: 'nowrap', text: stamp(t, false).replace(/ UTC.*$/, '') }),
            series.map((s) => h('td', { class: 'num', text: s.values[i] === null || s.values[i] === undefined ? '—' : format(s.values[i]) }))))))));
    labelCells(numbers, head);
    return h('figure', { class: 'chart-figure', test },
      h('figcaption', null, h('span', { class: 'chart-title', text: title }),
        h('span', { class: 'legend' }, series.map((s) => h('span', { class: `key ${s.cls}`, text: s.name })))),
      chart, numbers);
  }

  const countText = (v) => Math.round(v).toLocaleString('en-US');
  const msText = (v) => (v >= 10000 ? `${(v / 1000).toFixed(0)} s` : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
  const ageText = (v) => (v >= 86400000 ? `${(v / 86400000).toFixed(1)} d` : v >= 3600000
    ? `${(v / 3600000).toFixed(1)} h` : v >= 60000 ? `${Math.round(v / 60000)} min` : msText(v));

  // The charts of every subscription together (`subscription` absent, with the queue)
  // or of one: range buttons, then the charts, loaded now and on each range change.
  function chartPanel(subscription) {
    const { h, api, notice } = kit;
    const body = h('div', { class: 'chart-body', test: 'chart-body' });
    const panel = h('section', { class: 'section charts', test: 'charts', 'aria-busy': 'true' });
    const buttons = RANGES.map((r) => h('button', {
      type: 'button', class: 'range', test: `range-${r}`, 'aria-pressed': String(r === range),
      onclick: () => {
        range = r;
        for (const b of buttons) b.setAttribute('aria-pressed', String(b.getAttribute('data-test') === `range-${r}`));
        load();
      },
    }, r));
    const load = async () => {
      panel.setAttribute('aria-busy', 'true');
      const asked = range;
      let data;
      try {
        data = await api('GET', `/charts?range=${asked}${subscription ? `&subscription=${encodeURIComponent(subscription)}` : ''}`);
      } catch (err) {
        body.replaceChildren(h('p', { class: 'notice bad', test: 'charts-error', role: 'alert', text: err.message || String(err) }));
        panel.setAttribute('aria-busy', 'false');
        return;
      }
      if (asked !== range) return;
      const times = data.points.map((p) => p.at);
      const any = data.points.some((p) => p.attempts > 0);
      const figures = [];
      if (!any) {
        figures.push(notice(`No delivery attempts in the ${RANGE_WORDS[asked]}.`, 'info', 'chart-empty'));
      } else {
        figures.push(({
          title: 'Deliveries', test: 'chart-deliveries', times, step: data.step_ms, format: countText,
          series: [
            { name: 'delivered', cls: 's-ok', values: data.points.map((p) => p.delivered) },
            { name: 'failed attempts', cls: 's-warn', values: data.points.map((p) => p.failed_attempts) },
            { name: 'dead', cls: 's-bad', values: data.points.map((p) => p.dead) },
          ],
        }));
        figures.push(({
          title: 'Attempt latency', test: 'chart-latency', times, step: data.step_ms, format: msText,
          series: [
            { name: 'p50', cls: 's-info', values: data.points.map((p) => p.latency_p50_ms) },
            { name: 'p95', cls: 's-warn', values: data.points.map((p) => p.latency_p95_ms) },
          ],
        }));
      }
      if (data.queue) {
        if (!data.queue.some((q) => q.depth !== null)) {
          figures.push(notice(`No queue samples in the ${RANGE_WORDS[asked]} yet (one is taken each minute).`,
            'info', 'queue-empty'));
        } else {
          const qt = data.queue.map((q) => q.at);
          figures.push(({
            title: 'Queue depth', test: 'chart-queue', times: qt, step: data.step_ms, format: countText,
            series: [{ name: 'pending', cls: 's-info', values: data.queue.map((q) => q.depth) }],
          }));
          figures.push(({
            title: 'Oldest pending', test: 'chart-oldest', times: qt, step: data.step_ms, format: ageText,
            series: [{ name: 'waiting', cls: 's-warn', values: data.queue.map((q) => q.oldest_pending_age_ms) }],
          }));
        }
      }
      // Each chart is drawn at the width of its own place in the grid (known once the
      // places are in the page), so its text is drawn at its real size.
      const slots = figures.map((f) => (f instanceof Node ? f : h('div', { class: 'chart-figure' })));
      body.replaceChildren(...slots);
      figures.forEach((f, i) => {
        if (f instanceof Node) return;
        const inner = slots[i].clientWidth - 26;
        slots[i].replaceWith(lineChart({ ...f, width: inner > 0 ? inner : 600 }));
      });
      body.setAttribute('data-range', asked);
      panel.setAttribute('aria-busy', 'false');
    };
    panel.append(
      h('div', { class: 'charts-head' },
        h('h2', { text: subscription ? 'History' : 'Activity' }),
        h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' }, buttons)),
      body);
    // Drawn once in the page, so the charts know their width.
    requestAnimationFrame(load);
    return panel;
  }

  // ---------------------------------------------------------------- trends

  // The small line of a subscription row: deliveries (and failed attempts) per hour.
  function sparkline(trend) {
    const w = 96;
    const hgt = 24;
    const top = niceMax(Math.max(1, ...trend.delivered, ...trend.failed_attempts));
    const line = (values) => values.map((v, i) => `${((i * (w - 2)) / (values.length - 1) + 1).toFixed(1)},${(hgt - 2 - (v / top) * (hgt - 4)).toFixed(1)}`).join(' ');
    const delivered = trend.delivered.reduce((a, b) => a + b, 0);
    const failed = trend.failed_attempts.reduce((a, b) => a + b, 0);
    const label = `Last 24 hours: ${countText(delivered)} delivered, ${countText(failed)} failed attempts`;
    return svg('svg', {
      class: 'spark', role: 'img', 'aria-label': label, viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt,
      'data-test': 'trend', 'data-delivered': delivered, 'data-failed': failed,
    }, svg('title', null, label),
    svg('polyline', { class: 'series s-ok', points: line(trend.delivered) }),
    failed ? svg('polyline', { class: 'series s-bad', points: line(trend.failed_attempts) }) : null);
  }

  // Fills each `[data-trend-for]` cell under `root` from GET /trends.
  async function fillTrends(root) {
    const { api } = kit;
    let items;
    try {
      ({ items } = await api('GET', '/trends'));
    } catch (_) {
      return;
    }
    for (const trend of items) {
      for (const cellNode of root.querySelectorAll('[data-trend-for]')) {
        if (cellNode.getAttribute('data-trend-for') === trend.subscription) cellNode.replaceChildren(sparkline(trend));
      }
    }
  }

  // ---------------------------------------------------------------- failures

  // Failed attempts of the last 24 h by subscription and reason, with counts and the
  // first and last time: a receiver failing a thousand times is one row.
  function failureGroups(groups) {
    const { h, link, when, table, cell } = kit;
    const rows = groups.map((g) => h('tr', { test: 'failure-group', 'data-subscription': g.subscription },
      cell(link(`#/subscriptions/${encodeURIComponent(g.subscription)}`, g.subscription), 'nowrap'),
      cell(h('span', { class: 'badge bad', test: 'failure-reason', text: g.reason }), 'wrap-short'),
      cell(h('span', { test: 'failure-count', text: countText(g.count) }), 'num'),
      cell(when(g.first_at)),
      cell(when(g.last_at)),
      cell(g.last_delivery_id ? link(`#/deliveries/${g.last_delivery_id}`, `#${g.last_delivery_id}`, 'failure-last-delivery') : '')));
    return table('failure-groups', ['Subscription', 'Reason', 'Failed attempts', 'First', 'Last', 'Newest'],
      rows, 'No failed attempts in the last 24 hours.');
  }

  // ---------------------------------------------------------------- phones

  // Gives each cell its column's name, which narrow screens show beside the value when a
  // table is stacked into one block per row.
  function labelCells(tableNode, head) {
    for (const row of tableNode.querySelectorAll('tbody tr')) {
      [...row.children].forEach((td, i) => {
        if (head[i] && !td.hasAttribute('data-label')) td.setAttribute('data-label', head[i]);
      });
    }
  }

  // A path or source that may break after its slashes, and nowhere else.
  function path(text) {
    const { h } = kit;
    const parts = String(text).split('/');
    return h('code', { class: 'path' }, parts.map((part, i) => (i < parts.length - 1 ? [`${part}/`, h('wbr', null)] : part)));
  }

  function init(tools) {
    kit = tools;
    return {
      zone, stamp, parseWhen, timeInput, chartPanel, sparkline, fillTrends, failureGroups, labelCells, path,
    };
  }

  return { init, parseWhen, zone, stamp };
})();
