// Drives many @changecast/client clients through a chaos run and reports
// their replicas; started by test/chaos's Go tests, which decide when each
// client drops (a seeded schedule) and compare the replicas with the
// source at the end.
//
// Environment:
//   CHANGECAST_NEGOTIATE_URL  the app negotiate base (the test's balancer in
//                             front of the workers, e.g. http://127.0.0.1:8080/api)
//   CHANGECAST_HUB            the hub
//   CHANGECAST_HUB_URL        the stand-alone hub's endpoint (its REST API closes
//                             connections)
//   CHANGECAST_HUB_KEY        the hub's access key (signs the REST calls)
//   CHANGECAST_APP_SECRET, CHANGECAST_APP_ISSUER, CHANGECAST_APP_AUDIENCE
//                             how app user tokens are signed (HS256)
//   CLIENTS                   how many clients (default 20)
//   TENANTS                   comma-separated tenants, given out in turn
//   JOIN_MS                   client i starts at i*JOIN_MS/CLIENTS ms
//
// Commands on stdin, one a line:
//   drop I MS   client I's user loses its connections (the hub's REST API
//               closes them, as Azure SignalR's does) and stays away MS ms:
//               its token factory, which negotiate, /snapshot and /changes
//               wait on, answers only then. Prints "dropped I STATUS".
//   dump        one JSON line: every client's tenant, state, documents (after
//               its refetches settled) as {"collection/id": [version, digest]},
//               counters and last errors. The digest is the first 16 hex
//               digits of the SHA-256 of the document's canonical JSON (keys
//               sorted, JSON.stringify's numbers and strings), which the Go
//               test computes for the source's rows too: 20 replicas of a few
//               thousand large rows would make each dump hundreds of MB.
//   doc I KEY   one line "doc JSON": client I's document KEY (to show a
//               difference).
//   stop        stops the clients and exits.
// It prints "started I" as each client is live ("failed I ERR" if not).
import crypto from 'node:crypto';
import readline from 'node:readline';
import * as signalR from '@microsoft/signalr';
import { ChangecastClient } from '../../clients/js/index.js';
import { hs256 } from './jwt.mjs';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v == null) throw new Error(`${k} is not set: run this through go test ./test/chaos`);
  return v;
};
const url = env('CHANGECAST_NEGOTIATE_URL');
const hub = env('CHANGECAST_HUB');
const hubURL = env('CHANGECAST_HUB_URL').replace(/\/+$/, '');
const hubKey = env('CHANGECAST_HUB_KEY');
const secret = env('CHANGECAST_APP_SECRET');
const issuer = env('CHANGECAST_APP_ISSUER');
const audience = env('CHANGECAST_APP_AUDIENCE');
const n = Number(env('CLIENTS', '20'));
const tenants = env('TENANTS').split(',');
const joinMS = Number(env('JOIN_MS', '0'));

const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// canon is a document's canonical JSON: object keys sorted, everything
// else as JSON.stringify writes it.
function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
const digest = (doc) => crypto.createHash('sha256').update(canon(doc), 'utf8').digest('hex').slice(0, 16);

const clients = [];
for (let i = 0; i < n; i++) {
  const tenant = tenants[i % tenants.length];
  const user = `user-${i}`;
  const entry = { i, user, tenant, awayUntil: 0, drops: 0, errors: [], c: null };
  entry.c = new ChangecastClient({
    url, hub, signalR,
    // Away: the app cannot hand out a token (a phone in a tunnel, a
    // laptop asleep). Whatever needs one waits until the client is back.
    accessTokenFactory: async () => {
      const wait = entry.awayUntil - Date.now();
      if (wait > 0) await sleep(wait);
      return hs256({ sub: user, tid: tenant, iss: issuer, aud: audience, exp: now() + 3600 }, secret);
    },
    configure: (b) => b.configureLogging(signalR.LogLevel.None),
    // Every 410 (the history no longer reaches back) goes to the log.
    fetch: async (u, init) => {
      const res = await fetch(u, init);
      if (res.status === 410) {
        console.error(`${new Date().toISOString()} client ${i} 410 for ${u}: ${await res.clone().text()}`);
      }
      return res;
    },
    // A log of each client's states and counters (stderr: the test's
    // clients.log), to see what a drop cost.
    onState: (state) => {
      const s = entry.c?.stats;
      console.error(`${new Date().toISOString()} client ${i} ${state}` +
        (s ? ` catchUps ${s.catchUps} resyncs ${s.resyncs} reloads ${s.reloads} gapsFilled ${s.gapsFilled} duplicates ${s.duplicates}` : ''));
    },
    onError: (err) => {
      if (entry.errors.length >= 5) entry.errors.shift();
      entry.errors.push(String(err?.message ?? err));
    },
  });
  clients.push(entry);
  setTimeout(() => {
    entry.c.start().then(() => console.log(`started ${i}`), (err) => console.log(`failed ${i} ${err?.message ?? err}`));
  }, Math.floor((i * joinMS) / n));
}

// closeUser asks the hub's REST API to close every connection of user;
// the clients reconnect by themselves (allowReconnect).
async function closeUser(user) {
  const path = `/api/hubs/${encodeURIComponent(hub)}/users/${encodeURIComponent(user)}/:closeConnections`;
  const tok = hs256({ aud: `${hubURL}${path}`, exp: now() + 300 }, hubKey);
  const res = await fetch(`${hubURL}${path}?api-version=2022-06-01&reason=chaos`, {
    method: 'POST', headers: { Authorization: `Bearer ${tok}` },
  });
  return res.status;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (cmd === 'drop') {
    const e = clients[Number(args[0])];
    e.awayUntil = Date.now() + Number(args[1] || 0);
    e.drops++;
    let status;
    try {
      status = await closeUser(e.user);
    } catch (err) {
      status = `error ${err?.message ?? err}`;
    }
    console.error(`${new Date().toISOString()} client ${e.i} dropped for ${args[1]} ms: ${status}`);
    console.log(`dropped ${e.i} ${status}`);
  } else if (cmd === 'dump') {
    await Promise.all(clients.map(({ c }) => c.idle()));
    const out = clients.map(({ i, tenant, c, drops, errors }) => {
      const docs = {};
      for (const coll of c.collections()) {
        for (const [id, doc] of c.entries(coll)) docs[`${coll}/${id}`] = [c.version(coll, id) ?? null, digest(doc)];
      }
      return { i, tenant, state: c.state, drops, docs, stats: c.replicaStats, client: c.stats, errors };
    });
    console.log(JSON.stringify(out));
  } else if (cmd === 'doc') {
    const { c } = clients[Number(args[0])];
    const key = args.slice(1).join(' ');
    const slash = key.lastIndexOf('/');
    const coll = key.slice(0, slash);
    const id = key.slice(slash + 1);
    console.log(`doc ${JSON.stringify({ doc: c.get(coll, id) ?? null, v: c.version(coll, id) ?? null })}`);
  } else if (cmd === 'stop') {
    await Promise.all(clients.map(({ c }) => c.stop().catch(() => {})));
    process.exit(0);
  }
});
