// The live orders page: loads the tenant's orders from the app's API,
// connects to changecast's hub with @microsoft/signalr (window.signalR, from
// the browser bundle) and keeps the table current with changecast.js.
import { Replica } from './changecast.js';

const COLLECTION = 'public.orders';
const COLUMNS = ['id', 'customer', 'item', 'qty', 'status', 'total', 'updated_at', 'v'];
const $ = (sel) => document.querySelector(sel);
const tbody = $('#orders tbody');
const rows = new Map(); // id → <tr>

let token = '';
const api = async (path, init = {}) => {
  const res = await fetch(path, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`${init.method || 'GET'} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
};

function setState(state, detail = '') {
  const el = $('#state');
  el.dataset.state = state;
  el.textContent = state;
  el.title = detail;
}

// --- rendering ---

function format(col, doc, v) {
  const x = col === 'v' ? v : doc[col];
  if (x == null) return col === 'v' ? '–' : '';
  if (col === 'total') return typeof x === 'number' ? x.toFixed(2) : String(x);
  if (col === 'updated_at') return String(x).replace('T', ' ').replace(/\.\d+/, '').replace('Z', '');
  return String(x);
}

function renderRow(tr, doc, v, prev) {
  tr.classList.remove('deleted');
  clearTimeout(tr._removeTimer);
  for (const col of COLUMNS) {
    let td = tr.querySelector(`td[data-col="${col}"]`);
    if (!td) {
      td = document.createElement('td');
      td.dataset.col = col;
      tr.append(td);
    }
    const text = format(col, doc, v);
    td.classList.toggle('changed', !!prev && col !== 'v' && col !== 'updated_at' && format(col, prev, v) !== text);
    td.textContent = text;
    if (col === 'status') td.className = `${td.className.replace(/\bstatus-\S+/g, '')} status-${doc.status}`.trim();
  }
  tr.title = `version ${v ?? 'unknown (loaded from the API)'}`;
}

function flash(tr, cls) {
  tr.classList.remove('inserted', 'updated');
  void tr.offsetWidth; // restart the animation
  tr.classList.add(cls);
}

function placeRow(tr, id) {
  const n = Number(id);
  for (const other of tbody.children) {
    if (Number(other.dataset.id) > n) {
      tbody.insertBefore(tr, other);
      return;
    }
  }
  tbody.append(tr);
}

function upsertRow(id, doc, v, prev, animate) {
  let tr = rows.get(id);
  const isNew = !tr;
  if (isNew) {
    tr = document.createElement('tr');
    tr.dataset.id = id;
    rows.set(id, tr);
    placeRow(tr, id);
  }
  renderRow(tr, doc, v, isNew ? null : prev);
  if (animate) flash(tr, isNew ? 'inserted' : 'updated');
}

function removeRow(id) {
  const tr = rows.get(id);
  if (!tr) return;
  tr.classList.add('deleted');
  tr._removeTimer = setTimeout(() => {
    if (rows.get(id) === tr) rows.delete(id);
    tr.remove();
    updateCounters();
  }, 900);
}

function logChange(op, id, detail) {
  const li = document.createElement('li');
  const span = document.createElement('span');
  span.className = `op op-${op}`;
  span.textContent = op;
  li.append(span, ` ${id ?? ''} ${detail}`);
  const log = $('#log');
  log.prepend(li);
  while (log.children.length > 30) log.lastChild.remove();
}

function onChange({ op, collection, id, doc, prev, v, cause, count }) {
  if (collection !== COLLECTION) return;
  switch (op) {
    case 'clear':
      if (cause === 'load') {
        for (const tr of rows.values()) tr.remove();
        rows.clear();
      } else {
        for (const id of [...rows.keys()]) if (!replica.get(COLLECTION, id)) removeRow(id);
        logChange('clear', '', `${cause} v${v} (${count} rows)`);
      }
      break;
    case 'insert':
    case 'update':
      upsertRow(id, doc, v, prev, cause !== 'load');
      if (cause !== 'load') logChange(op, id, `${cause}${v ? ` v${v}` : ''}`);
      break;
    case 'delete':
      removeRow(id);
      logChange(op, id, `${cause}${v ? ` v${v}` : ''}`);
      break;
  }
  updateCounters();
}

function updateCounters() {
  const s = replica.stats;
  $('#c-rows').textContent = replica.size(COLLECTION);
  for (const k of ['envelopes', 'upserts', 'patches', 'deletes', 'refetches', 'ignored']) $(`#c-${k}`).textContent = s[k];
  $('#empty').hidden = replica.size(COLLECTION) > 0;
}

// --- the replica and the connection ---

const replica = new Replica({
  onChange,
  refetch: async ({ id, v, reason }) => {
    logChange('refetch', id, `${reason} v${v}`);
    return api(`/api/orders/${encodeURIComponent(id)}`);
  },
  onError: (err) => console.warn('changecast:', err.message),
});

async function sync() {
  // Hold live changes while loading, then apply them on top: with the
  // connection already open nothing committed meanwhile is missed.
  replica.pause();
  try {
    replica.load(COLLECTION, await api('/api/orders'));
  } finally {
    replica.resume();
  }
}

async function main() {
  const cfg = await (await fetch('/api/config')).json();
  const tenant = new URLSearchParams(location.search).get('tenant') || cfg.tenants[0];
  $('#tenant').textContent = `tenant ${tenant}`;
  for (const t of cfg.tenants.filter((t) => t !== tenant)) {
    const a = document.createElement('a');
    a.href = `?tenant=${encodeURIComponent(t)}`;
    a.textContent = `open ${t}`;
    $('#tenants').append(a);
  }
  ({ token } = await api('/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ tenant }),
  }));

  const connection = new signalR.HubConnectionBuilder()
    // changecast's app negotiate: it verifies the token and joins this user
    // to group tenant-{tid}; the client then follows it to the hub.
    .withUrl(`${cfg.negotiateURL}?hub=${encodeURIComponent(cfg.hub)}`, { accessTokenFactory: () => token })
    .withAutomaticReconnect()
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  connection.on('changes', (env) => {
    replica.apply(env);
    updateCounters();
  });
  connection.onreconnecting((err) => setState('reconnecting', err?.message ?? ''));
  connection.onreconnected(async () => {
    // Changes sent while disconnected are lost: load again.
    setState('loading');
    await sync().catch((err) => console.warn(err));
    setState('connected', `connection ${connection.connectionId}`);
  });
  connection.onclose((err) => {
    setState('disconnected', err?.message ?? '');
    setTimeout(start, 3000);
  });
  window.changecastDemo = { replica, connection, tenant };

  async function start() {
    try {
      setState('connecting');
      await connection.start();
      setState('loading');
      await sync();
      setState('connected', `connection ${connection.connectionId}`);
    } catch (err) {
      setState('error', err.message);
      console.warn(err);
      if (connection.state === signalR.HubConnectionState.Disconnected) setTimeout(start, 3000);
    }
  }
  await start();
}

main().catch((err) => {
  setState('error', err.message);
  console.error(err);
});
