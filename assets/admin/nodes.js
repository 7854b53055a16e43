// The overview's "Nodes" block: every posthorn node sharing the store (GET
// /api/v1/nodes), with its version, config fingerprint, attempts in flight and last
// heartbeat, and the API's warnings (a stale node, nodes running different versions or
// configs). Loaded after app.js, whose helpers it takes from window.posthornAdmin.
'use strict';

(() => {
  const admin = window.posthornAdmin;
  if (!admin) return;
  const { api, h, section, notice, table, cell, badge, when } = admin;

  const KINDS = { up: 'ok', stale: 'bad', stopped: 'info' };

  function row(list, node) {
    const id = node.id === list.this_node ? [node.id, ' ', badge('this node', 'info', 'node-this')] : node.id;
    return h('tr', { test: 'node-row' },
      cell(id, 'wrap'),
      cell(badge(node.state, KINDS[node.state] || '', 'node-state')),
      cell(node.version),
      cell(h('code', { text: node.config_fingerprint, test: 'node-fingerprint' })),
      cell(`${node.in_flight} / ${node.workers}`, 'num'),
      cell(when(node.started_at)),
      cell(when(node.heartbeat_at)));
  }

  async function nodesSection() {
    let list;
    try {
      list = await api('GET', '/nodes');
    } catch (err) {
      if (err.status === 401) throw err;
      return notice(`The list of nodes could not be read: ${err.message}`, 'bad', 'nodes-error');
    }
    return h('div', { test: 'nodes' },
      section('Nodes',
        list.warnings.map((text) => notice(text, 'warn', 'node-warning')),
        table('nodes-table',
          ['Node', 'State', 'Version', 'Config', 'In flight', 'Started', 'Last heartbeat'],
          list.items.map((node) => row(list, node)), 'No node has written a heartbeat yet.')));
  }

  admin.overviewSections.push(nodesSection);
})();
