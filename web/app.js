// The live orders page. It logs in to the demo app (a token for one
// tenant), then keeps the tenant's orders with @changecast/client: the
// client connects to changecast's hub with @microsoft/signalr (window.signalR,
// from the browser bundle), loads the rows from changecast's snapshot, applies
// the live changes with version checks, and catches up after a reconnect.
// The demo app serves no data of its own.
import { ChangecastClient } from '@changecast/client';

const COLLECTION = 'public.orders';
const COLUMNS = ['id', 'customer', 'item', 'qty', 'status', 'total', 'updated_at', 'v'];
const $ = (sel) => document.querySelector(sel);
const tbody = $('#orders tbody');
const rows = new Map(); // id → <tr>

let token = '';
let client = null; // the current ChangecastClient
let loaded = false; // the first snapshot is in: later changes are animated

async function login(tenant) {
  const res = await fetch('/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ tenant }),
  });
  if (!res.ok) throw new Error(`POST /api/login: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

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
  tr.title = `version ${v}`;
}

function flash(tr, cls) {
  tr.classList.remove('inserted', 'updated');
  void tr.offsetWidth; // restart the animation
  tr.classList.add(cls);
}

function placeRow(tr, id) {
  const n = Number(id);
  for (const other of tbody.children) {
    if (other !== tr && Number(other.dataset.id) > n) {
      tbody.insertBefore(tr, other);
      return;
    }
  }
  tbody.append(tr);
}

function upsertRow(id, doc, v, prev, animate) {
  let tr = rows.get(id);
  const isNew = !tr || tr.classList.contains('deleted');
  if (!tr) {
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
  if (!tr || tr.classList.contains('deleted')) return;
  tr.classList.add('deleted');
  tr._removeTimer = setTimeout(() => {
    if (rows.get(id) === tr) rows.delete(id);
    tr.remove();
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

// onChange is called by the client after every change of its replica:
// cause is the envelope op ('upsert', 'patch', 'delete', 'truncate'),
// 'snapshot' (loaded, or reloaded after a reconnect) or 'fetch' (a refetch
// answered by changecast's one-document snapshot).
function onChange({ op, collection, id, doc, prev, v, cause, count }) {
  if (collection !== COLLECTION) return;
  const live = loaded;
  switch (op) {
    case 'clear':
      for (const rid of [...rows.keys()]) if (client.get(COLLECTION, rid) === undefined) removeRow(rid);
      logChange('clear', '', `${cause} v${v} (${count} rows)`);
      break;
    case 'insert':
    case 'update':
      upsertRow(id, doc, v, prev, live);
      if (live) logChange(op, id, `${cause} v${v}`);
      break;
    case 'delete':
      removeRow(id);
      if (live) logChange(op, id, `${cause}${v ? ` v${v}` : ''}`);
      break;
  }
  scheduleCounters();
}

const COUNTERS = ['envelopes', 'upserts', 'patches', 'deletes', 'refetches', 'ignored'];
let countersQueued = false;

function scheduleCounters() {
  if (countersQueued) return;
  countersQueued = true;
  queueMicrotask(() => {
    countersQueued = false;
    updateCounters();
  });
}

function updateCounters() {
  if (!client) return;
  const s = client.replicaStats;
  const n = client.size(COLLECTION);
  $('#c-rows').textContent = n;
  for (const k of COUNTERS) $(`#c-${k}`).textContent = s[k];
  $('#c-snapshot').textContent = client.stats.snapshotDocs;
  $('#c-reloads').textContent = client.stats.reloads;
  // "No orders" only once the snapshot is in: before, there is nothing to
  // tell yet (the table may be full), so the page says what it waits for.
  $('#empty').hidden = !loaded || n > 0;
  $('#loading').hidden = loaded || rows.size > 0 || client.state === 'error';
}

const WAITING = {
  connecting: 'Connecting to changecast…',
  loading: "Loading this tenant's orders…",
  reconnecting: 'Reconnecting…',
};

// --- the client ---

function onState(c, state, err) {
  if (c !== client) return; // a client given up on
  if (WAITING[state]) $('#loading').textContent = WAITING[state];
  $('#failed').hidden = state !== 'error';
  switch (state) {
    case 'error':
      // start() failed (changecast unreachable, CORS, 401): say why; start
      // retries with a new client.
      setState('error', err?.message ?? '');
      $('#failed').textContent = `Cannot start: ${err?.message ?? 'unknown error'}. Retrying in 3 s.`;
      break;
    case 'live':
      if (!loaded) {
        // After a restart with a new client: drop the rows it does not hold.
        for (const id of [...rows.keys()]) if (c.get(COLLECTION, id) === undefined) removeRow(id);
        loaded = true;
      }
      setState('live', `connection ${c.connection?.connectionId ?? ''}`);
      break;
    case 'stopped':
      // The connection closed for good (the hub refused a reconnect):
      // start again with a new client, which loads the snapshot afresh.
      setState('stopped');
      restart(3000);
      break;
    default:
      setState(state); // connecting, loading (the snapshot), reconnecting
  }
  scheduleCounters();
}

let restartTimer = null;

function newClient(cfg) {
  const c = new ChangecastClient({
    url: cfg.negotiateURL, // changecast's app negotiate base: {url}/negotiate, {url}/snapshot
    hub: cfg.hub,
    accessTokenFactory: () => token,
    signalR: window.signalR,
    configure: (b) => b.configureLogging(window.signalR.LogLevel.Warning),
    onChange: (ch) => c === client && onChange(ch),
    onState: (s, err) => onState(c, s, err),
    onError: (err) => console.warn('changecast:', err?.message ?? err),
  });
  return c;
}

let config = null;

async function start() {
  restartTimer = null;
  const c = newClient(config);
  client = c;
  loaded = false;
  window.changecastDemo.client = c;
  try {
    await c.start();
    // The counters also move on changes that leave the table as it is.
    c.connection.on('changes', () => scheduleCounters());
  } catch (err) {
    if (c !== client) return;
    // The client is in state 'error' (onState showed why) and has closed
    // its connection; a new client tries again.
    console.warn('changecast: start failed:', err);
    restart(3000);
  }
}

function restart(ms) {
  if (restartTimer) return;
  restartTimer = setTimeout(start, ms);
}

async function main() {
  config = await (await fetch('/api/config')).json();
  const tenant = new URLSearchParams(location.search).get('tenant') || config.tenants[0];
  $('#tenant').textContent = `tenant ${tenant}`;
  for (const t of config.tenants.filter((t) => t !== tenant)) {
    const a = document.createElement('a');
    a.href = `?tenant=${encodeURIComponent(t)}`;
    a.textContent = `open ${t}`;
    $('#tenants').append(a);
  }
  token = await login(tenant);
  window.changecastDemo = { tenant, client: null };
  await start();
}

main().catch((err) => {
  setState('error', err.message);
  console.error(err);
});
