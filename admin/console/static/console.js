// The changecast console: reads GET /admin/status every few seconds and
// calls the admin API with the bearer token kept in sessionStorage.
'use strict';

const KEY = 'changecast.adminToken';
const REFRESH_MS = 5000;
const SHOW_CHANGES = 15; // of the 50 the status holds
const $ = (id) => document.getElementById(id);
let status = null;
let timer = null;

function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
}

async function api(method, path) {
  const token = sessionStorage.getItem(KEY);
  const res = await fetch(path, { method, headers: { Authorization: 'Bearer ' + token } });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    showLogin('The token was refused.');
    throw new Error('unauthorized');
  }
  if (!res.ok) throw new Error((body && body.error) || res.status + ' ' + res.statusText);
  return body;
}

function showLogin(msg) {
  clearTimeout(timer);
  $('main').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
}

function start() {
  $('login').hidden = true;
  $('main').hidden = false;
  $('logout').hidden = false;
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  try {
    status = await api('GET', '../admin/status');
    render(status);
    $('status-error').hidden = !status.streamsError;
    $('status-error').textContent = status.streamsError ? 'Streams: ' + status.streamsError : '';
  } catch (e) {
    if (e.message === 'unauthorized') return;
    $('status-error').hidden = false;
    $('status-error').textContent = 'Status: ' + e.message;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

// el builds an element with text cells or children.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? '' : String(k)));
  return e;
}
const row = (...cells) => el('tr', null, ...cells.map((c) => (c instanceof Node && c.tagName === 'TD') ? c : el('td', null, c)));

function bytes(n) {
  if (n == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}
const secs = (s) => s == null ? '–' : s < 1 ? (s * 1000).toFixed(0) + ' ms' : s.toFixed(1) + ' s';
const time = (t) => t ? new Date(t).toLocaleTimeString() : '';

function render(s) {
  $('processor').textContent = s.source + ' · processor ' + s.processor;
  $('updated').textContent = 'updated ' + time(s.time);
  renderStreams(s);
  renderActions(s);
  chart($('chart-published'), s.series, (x) => x.published, (v) => v.toFixed(v < 10 ? 2 : 0) + '/s');
  chart($('chart-lag'), s.series, (x) => x.lag, secs);
  const hubs = $('hubs').tBodies[0];
  hubs.replaceChildren(...(s.hubs || []).map((h) => row(h.hub, h.connections, h.groupCount,
    (h.groups || []).slice(0, 8).map((g) => `${g.group} (${g.connections}/${g.users})`).join(', '))));
  if (!s.hubs) hubs.replaceChildren(row(el('td', { colspan: 4, class: 'muted' }, 'The hubs are Azure SignalR Service\'s: see its metrics in Azure.')));
  $('changes').tBodies[0].replaceChildren(...s.changes.slice(0, SHOW_CHANGES).map((c) => row(time(c.time), c.collection, c.id, c.op, c.v,
    c.committed ? time(c.committed) : '', [c.hub, c.group && 'group ' + c.group, c.user && 'user ' + c.user].filter(Boolean).join(' · '))));
  $('errors').tBodies[0].replaceChildren(...s.errors.map((r) => row(time(r.time),
    el('td', { class: r.level === 'ERROR' ? 'error' : 'warn' }, r.level), r.msg,
    Object.entries(r.attrs || {}).map(([k, v]) => k + '=' + v).join(' '))));
}

function renderStreams(s) {
  const t = $('streams');
  const rep = s.streams || {};
  const lag = s.streamLag || {};
  if (rep.slot) {
    const sl = rep.slot;
    t.tHead.replaceChildren(row(...['slot', 'owner', 'state', 'position (confirmed)', 'lag', 'lag (s)', 'WAL retained', 'headroom'].map((h) => el('th', null, h))));
    const state = !sl.exists ? 'missing' : (sl.active ? 'streaming' : 'inactive') + (sl.walStatus ? ' · wal ' + sl.walStatus : '');
    const lagS = Object.values(lag).length ? Math.max(...Object.values(lag)) : null;
    t.tBodies[0].replaceChildren(row(sl.slot, sl.owner || sl.leaseError || '–',
      el('td', { class: sl.exists && sl.active ? 'ok' : 'warn' }, state), sl.confirmedFlushLSN || '–',
      bytes(sl.lagBytes), secs(lagS), bytes(sl.retainedBytes), sl.safeWALBytes == null ? 'unlimited' : bytes(sl.safeWALBytes)));
  } else {
    t.tHead.replaceChildren(row(...['lease', 'owner', 'range', 'position', 'lag (items)', 'lag (s)', 'lease age'].map((h) => el('th', null, h))));
    t.tBodies[0].replaceChildren(...(rep.leases || []).map((l) => row(l.token, l.owner || 'unowned',
      `${l.range.min || '""'} – ${l.range.max || '""'}`, l.continuation, l.lag == null ? (l.lagError || '–') : l.lag,
      secs(lag[l.token]), l.age)));
  }
}

function renderActions(s) {
  const sel = $('reset-to');
  const choices = s.source === 'postgres' ? ['now', 'LSN…'] : ['now', 'beginning', 'time…'];
  if (sel.dataset.source !== s.source) {
    sel.replaceChildren(...choices.map((c) => el('option', { value: c }, c)));
    sel.dataset.source = s.source;
  }
  $('resnapshot').hidden = s.source !== 'postgres';
}

// chart draws values (with their times) as a line over the last 15
// minutes, sized to the element so that the text is not stretched.
function chart(svg, series, pick, fmt) {
  const W = Math.max(svg.clientWidth, 100), H = Math.max(svg.clientHeight, 40), pad = 14;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const end = status ? Date.parse(status.time) : Date.now(), span = 15 * 60 * 1000;
  const values = series.map(pick);
  const max = Math.max(1e-9, ...values);
  const pts = series.map((x, i) => [
    pad + Math.max(0, 1 - (end - Date.parse(x.time)) / span) * (W - 2 * pad),
    H - pad - (values[i] / max) * (H - 2 * pad - 6)]);
  const ns = 'http://www.w3.org/2000/svg';
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  };
  const line = mk('polyline', { points: pts.map((p) => p.map((x) => x.toFixed(1)).join(',')).join(' ') });
  const base = mk('line', { x1: pad, x2: W - pad, y1: H - pad, y2: H - pad, stroke: '#dde3ea' });
  const label = mk('text', { x: pad, y: 11 },
    values.length ? `max ${fmt(max)} · now ${fmt(values[values.length - 1])}` : 'no sample yet');
  const from = mk('text', { x: pad, y: H - 3 }, '−15 min');
  const to = mk('text', { x: W - pad, y: H - 3, 'text-anchor': 'end' }, 'now');
  svg.replaceChildren(base, line, label, from, to);
}

async function act(query, what) {
  if (!confirm(`${what} for every stream of processor ${status.processor}?`)) return;
  const out = $('action-result');
  out.className = '';
  out.textContent = what + '…';
  try {
    const r = await api('POST', '../admin/checkpoint/reset?' + query);
    out.className = 'ok';
    out.textContent = r.resnapshot ? 'Resnapshot requested.' : r.lsn ? `Slot ${r.slot} now at ${r.lsn}.` : `${r.leases} leases moved to ${r.to}.`;
    refresh();
  } catch (e) {
    out.className = 'error';
    out.textContent = e.message;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  takeTokenFromFragment();
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $('token').value);
    $('token').value = '';
    start();
  });
  $('logout').addEventListener('click', () => { sessionStorage.removeItem(KEY); showLogin(); });
  $('reset-to').addEventListener('change', () => { $('reset-at').hidden = !$('reset-to').value.endsWith('…'); });
  $('reset').addEventListener('click', () => {
    const v = $('reset-to').value;
    const to = v.endsWith('…') ? $('reset-at').value.trim() : v;
    if (!to) { $('action-result').textContent = 'Give the position to reset to.'; return; }
    act('to=' + encodeURIComponent(to), `Reset the checkpoint to ${to}`);
  });
  $('resnapshot').addEventListener('click', () => act('resnapshot=true', 'Republish every row'));
  if (sessionStorage.getItem(KEY)) start(); else showLogin();
});
