// Drives many @changecast/client clients against a running changecast and
// reports their replicas; started by test/client's Go tests.
//
// Environment:
//   CHANGECAST_NEGOTIATE_URL  the app negotiate base (e.g. http://127.0.0.1:8080/api)
//   CHANGECAST_HUB            the hub
//   CHANGECAST_APP_SECRET, CHANGECAST_APP_ISSUER, CHANGECAST_APP_AUDIENCE
//                             how app user tokens are signed (HS256)
//   CLIENTS                   how many clients (default 20)
//   TENANTS                   comma-separated tenants, given out in turn
//   JOIN_MS                   clients start at random moments within this many ms
//
//   CHANGECAST_HUB_URL, CHANGECAST_HUB_KEY
//                             the hub's endpoint and access key, for "drop"
//                             (optional)
//
// It prints "started <i>" as each client is live, and answers each "dump"
// line on stdin with one JSON line: every client's tenant, state, documents
// (after its refetches settled) and counters. "drop I MS" closes client
// I's connections through the hub's REST API and keeps it away (no token)
// for MS ms; it answers "dropped I STATUS".
import readline from 'node:readline';
import * as signalR from '@microsoft/signalr';
import { ChangecastClient } from '../../clients/js/index.js';
import { hs256 as sign } from './jwt.mjs';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v == null) throw new Error(`${k} is not set: run this through go test ./test/client`);
  return v;
};
const url = env('CHANGECAST_NEGOTIATE_URL');
const hub = env('CHANGECAST_HUB');
const secret = env('CHANGECAST_APP_SECRET');
const issuer = env('CHANGECAST_APP_ISSUER');
const audience = env('CHANGECAST_APP_AUDIENCE');
const n = Number(env('CLIENTS', '20'));
const tenants = env('TENANTS').split(',');
const joinMS = Number(env('JOIN_MS', '0'));

const hubURL = (process.env.CHANGECAST_HUB_URL || '').replace(/\/+$/, '');
const hubKey = process.env.CHANGECAST_HUB_KEY || '';
const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const token = (sub, tid) => sign({ sub, tid, iss: issuer, aud: audience, exp: now() + 3600 }, secret);

const clients = [];
const errors = new Map();
for (let i = 0; i < n; i++) {
  const tenant = tenants[i % tenants.length];
  const tok = token(`user-${i}`, tenant);
  const away = { until: 0 };
  // Away (dropped): no token until it is back, so nothing reconnects.
  const tokenFor = async () => {
    const wait = away.until - Date.now();
    if (wait > 0) await sleep(wait);
    return tok;
  };
  const c = new ChangecastClient({
    url, hub, signalR,
    accessTokenFactory: tokenFor,
    configure: (b) => b.configureLogging(signalR.LogLevel.None),
    onError: (err) => {
      const list = errors.get(i) || [];
      if (list.length < 5) list.push(String(err?.message ?? err));
      errors.set(i, list);
    },
  });
  clients.push({ i, tenant, c, away });
  setTimeout(() => {
    c.start().then(() => console.log(`started ${i}`), (err) => {
      console.log(`failed ${i} ${err?.message ?? err}`);
    });
  }, Math.floor(Math.random() * joinMS));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (cmd === 'drop') {
    const e = clients[Number(args[0])];
    e.away.until = Date.now() + Number(args[1] || 0);
    const path = `/api/hubs/${encodeURIComponent(hub)}/users/${encodeURIComponent(`user-${e.i}`)}/:closeConnections`;
    const tok = sign({ aud: `${hubURL}${path}`, exp: now() + 300 }, hubKey);
    let status;
    try {
      const res = await fetch(`${hubURL}${path}?api-version=2022-06-01&reason=test`, { method: 'POST', headers: { Authorization: `Bearer ${tok}` } });
      status = res.status;
    } catch (err) {
      status = `error ${err?.message ?? err}`;
    }
    console.log(`dropped ${e.i} ${status}`);
  } else if (line.trim() === 'dump') {
    await Promise.all(clients.map(({ c }) => c.idle()));
    const out = clients.map(({ i, tenant, c }) => {
      const docs = {};
      for (const coll of c.collections()) {
        for (const [id, doc] of c.entries(coll)) docs[`${coll}/${id}`] = { doc, v: c.version(coll, id) };
      }
      return { i, tenant, state: c.state, docs, stats: c.replicaStats, client: c.stats, errors: errors.get(i) || [] };
    });
    console.log(JSON.stringify(out));
  } else if (line.trim() === 'stop') {
    await Promise.all(clients.map(({ c }) => c.stop().catch(() => {})));
    process.exit(0);
  }
});
