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
//   CHANGECAST_HUB_URL, CHANGECAST_HUB_KEY
//                             optional: the hub's endpoint and access key, for
//                             "drop" (its REST API closes connections)
//
// It prints "started <i>" as each client is live, and answers each "dump"
// line on stdin with one JSON line: every client's tenant, state, documents
// (after its refetches settled) and counters. "drop I MS" closes client I's
// connections through the hub's REST API and keeps it away MS ms (its token
// factory, which negotiate, /snapshot and /changes wait on, answers only
// then); it prints "dropped I STATUS".
import crypto from 'node:crypto';
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

function hs256(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  const sig = crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(body).digest('base64url');
  return `${body}.${sig}`;
}
const token = (sub, tid) => hs256({ sub, tid, iss: issuer, aud: audience, exp: Math.floor(Date.now() / 1000) + 3600 });
const hubURL = (process.env.CHANGECAST_HUB_URL || '').replace(/\/+$/, '');
const hubKey = process.env.CHANGECAST_HUB_KEY || '';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const away = new Map(); // client → when it is back

const clients = [];
const errors = new Map();
for (let i = 0; i < n; i++) {
  const tenant = tenants[i % tenants.length];
  const tok = token(`user-${i}`, tenant);
  const c = new ChangecastClient({
    url, hub, signalR,
    // SignalR's information lines would go to stdout, which carries the
    // answers to the Go test.
    configure: (b) => b.configureLogging(signalR.LogLevel.Warning),
    accessTokenFactory: async () => {
      const wait = (away.get(i) ?? 0) - Date.now();
      if (wait > 0) await sleep(wait);
      return tok;
    },
    onError: (err) => {
      const list = errors.get(i) || [];
      if (list.length < 5) list.push(String(err?.message ?? err));
      errors.set(i, list);
    },
  });
  clients.push({ i, tenant, c });
  setTimeout(() => {
    c.start().then(() => console.log(`started ${i}`), (err) => {
      console.log(`failed ${i} ${err?.message ?? err}`);
    });
  }, Math.floor(Math.random() * joinMS));
}

const rl = readline.createInterface({ input: process.stdin });
// closeUser asks the hub's REST API to close every connection of user;
// the client reconnects by itself.
async function closeUser(user) {
  const path = `/api/hubs/${encodeURIComponent(hub)}/users/${encodeURIComponent(user)}/:closeConnections`;
  const tok = sign({ aud: `${hubURL}${path}`, exp: Math.floor(Date.now() / 1000) + 300 }, hubKey);
  const res = await fetch(`${hubURL}${path}?api-version=2022-06-01&reason=drop`, {
    method: 'POST', headers: { Authorization: `Bearer ${tok}` },
  });
  return res.status;
}

rl.on('line', async (line) => {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (cmd === 'drop') {
    const i = Number(args[0]);
    away.set(i, Date.now() + Number(args[1] || 0));
    let status;
    try {
      status = await closeUser(`user-${i}`);
    } catch (err) {
      status = `error ${err?.message ?? err}`;
    }
    console.log(`dropped ${i} ${status}`);
    return;
  }
  if (line.trim() === 'dump') {
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
