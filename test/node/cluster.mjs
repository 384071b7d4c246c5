// The official client against three built-in hub nodes joined by the Redis
// backplane, behind one TCP load balancer. Run by publish/hub's
// TestBackplaneNodes, which starts the nodes and the balancer and passes:
//   CHANGECAST_LB_URL        the balancer (negotiate and the clients go there)
//   CHANGECAST_NODE_URLS     the nodes, comma-separated (REST calls go to each)
//   CHANGECAST_HUB_KEY, CHANGECAST_APP_SECRET, CHANGECAST_APP_ISSUER, CHANGECAST_APP_AUDIENCE
// It prints "connected" once its clients are up, waits for "killed" on
// stdin (the test has killed the node with the most clients), checks the
// survivors, and exits 0 when every check passed.
import assert from 'node:assert/strict';
import { hs256 } from './jwt.mjs';
import readline from 'node:readline';
import * as signalR from '@microsoft/signalr';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run this through go test ./publish/hub -run TestBackplaneNodes`);
  return v;
};
const lb = env('CHANGECAST_LB_URL');
const nodes = env('CHANGECAST_NODE_URLS').split(',');
const hubKey = env('CHANGECAST_HUB_KEY');
const HUB = 'orders';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const now = () => Math.floor(Date.now() / 1000);
const appToken = (sub, tid) => hs256({ sub, tid, iss: env('CHANGECAST_APP_ISSUER'), aud: env('CHANGECAST_APP_AUDIENCE'), exp: now() + 3600 }, env('CHANGECAST_APP_SECRET'));

async function rest(node, method, path, body) {
  const url = `${node}${path}`;
  // The nodes sit behind the balancer: tokens are for its endpoint.
  const aud = `${lb}${new URL(url).pathname}`;
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${hs256({ aud, exp: now() + 300 }, hubKey)}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: res.status === 200 && method === 'GET' ? await res.json() : null };
}
const V = 'api-version=2022-06-01';
const send = async (node, path, arg) => {
  const r = await rest(node, 'POST', `/api/hubs/${HUB}${path}/:send?${V}`, { target: 'changes', arguments: [arg] });
  assert.equal(r.status, 202, `send ${path} via ${node}`);
};

async function connect(name, user, tid) {
  const conn = new signalR.HubConnectionBuilder()
    .withUrl(`${lb}/api?hub=${HUB}`, { accessTokenFactory: () => appToken(user, tid), transport: signalR.HttpTransportType.WebSockets })
    .withAutomaticReconnect([0, 200, 500, 1000, 1000, 1000, 2000, 2000, 5000])
    .configureLogging(signalR.LogLevel.None)
    .build();
  const c = { name, user, tid, conn, got: [], reconnects: 0 };
  conn.on('changes', (a) => c.got.push(a));
  conn.onreconnected(() => c.reconnects++);
  await conn.start();
  return c;
}

async function waitFor(what, cond, ms = 20000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`waiting for ${what}`);
    await sleep(25);
  }
}
const has = (c, tag) => c.got.some((m) => m && m.tag === tag);

// Every send through every node reaches exactly the clients it targets.
async function checkSends(round, clients, live) {
  for (const [i, node] of live.entries()) {
    const tag = `${round}-group-${i}`;
    await send(node, '/groups/tenant-1', { tag });
    await waitFor(tag, () => clients.filter((c) => c.tid === '1').every((c) => has(c, tag)));
    const utag = `${round}-user-${i}`;
    await send(node, '/users/bob', { tag: utag });
    await waitFor(utag, () => clients.filter((c) => c.user === 'bob').every((c) => has(c, utag)));
    const ctag = `${round}-conn-${i}`;
    const target = clients[(i * 2 + 1) % clients.length];
    await send(node, `/connections/${target.conn.connectionId}`, { tag: ctag });
    await waitFor(ctag, () => has(target, ctag));
    const btag = `${round}-all-${i}`;
    await send(node, '', { tag: btag });
    await waitFor(btag, () => clients.every((c) => has(c, btag)));
  }
  await sleep(200);
  for (const c of clients) {
    for (const m of c.got) {
      if (m.tag.includes('-group-')) assert.equal(c.tid, '1', `${c.name} got ${m.tag}`);
      if (m.tag.includes('-user-')) assert.equal(c.user, 'bob', `${c.name} got ${m.tag}`);
    }
  }
}

// Membership made through one node works through the others.
async function checkMembership(round, clients, live) {
  const [a, b, c] = [live[0], live[1 % live.length], live[2 % live.length]];
  const carol = clients.find((x) => x.user === 'carol');
  const id = carol.conn.connectionId;
  for (const node of live) {
    assert.equal((await rest(node, 'HEAD', `/api/hubs/${HUB}/connections/${id}?${V}`)).status, 200, `connection exists via ${node}`);
    assert.equal((await rest(node, 'HEAD', `/api/hubs/${HUB}/users/bob?${V}`)).status, 200, `user exists via ${node}`);
    assert.equal((await rest(node, 'HEAD', `/api/hubs/${HUB}/groups/tenant-2?${V}`)).status, 200, `group exists via ${node}`);
    assert.equal((await rest(node, 'HEAD', `/api/hubs/${HUB}/connections/nope?${V}`)).status, 404);
  }
  const g = `extra-${round}`;
  assert.equal((await rest(a, 'PUT', `/api/hubs/${HUB}/groups/${g}/connections/${id}?${V}`)).status, 200);
  await waitFor(`${g} listed`, async () => {
    const r = await rest(c, 'GET', `/api/hubs/${HUB}/groups/${g}/connections?api-version=2024-12-01`);
    return r.status === 200 && r.body.value.some((x) => x.connectionId === id);
  });
  await send(b, `/groups/${g}`, { tag: `${g}-conn` });
  await waitFor(`${g}-conn`, () => has(carol, `${g}-conn`));
  const vip = `vip-${round}`;
  assert.equal((await rest(b, 'PUT', `/api/hubs/${HUB}/users/bob/groups/${vip}?${V}`)).status, 200);
  assert.equal((await rest(c, 'HEAD', `/api/hubs/${HUB}/users/bob/groups/${vip}?${V}`)).status, 200);
  await send(c, `/groups/${vip}`, { tag: `${vip}-user` });
  await waitFor(`${vip}-user`, () => clients.filter((x) => x.user === 'bob').every((x) => has(x, `${vip}-user`)));
  assert.equal((await rest(a, 'DELETE', `/api/hubs/${HUB}/users/bob/groups/${vip}?${V}`)).status, 204);
  assert.equal((await rest(b, 'HEAD', `/api/hubs/${HUB}/users/bob/groups/${vip}?${V}`)).status, 404);
}

const clients = [];
for (let i = 0; i < 9; i++) {
  const [user, tid] = [['alice', '1'], ['bob', '1'], ['carol', '2']][i % 3];
  clients.push(await connect(`c${i}`, user, tid));
}
await checkSends('before', clients, nodes);
await checkMembership('before', clients, nodes);
console.log('connected');

const rl = readline.createInterface({ input: process.stdin });
const killed = await new Promise((resolve) => rl.once('line', resolve));
rl.close();
const dead = Number(killed.split(' ')[1]);
const live = nodes.filter((_, i) => i !== dead);
// The dead node's clients reconnect through the balancer to the others.
await waitFor('the dead node\'s clients to reconnect', () => clients.some((c) => c.reconnects > 0) &&
  clients.every((c) => c.conn.state === signalR.HubConnectionState.Connected), 30000);
const moved = clients.filter((c) => c.reconnects > 0).length;
assert.ok(moved < clients.length, 'every client reconnected: the other nodes dropped theirs too');
await checkSends('after', clients, live);
await checkMembership('after', clients, live);
for (const c of clients) await c.conn.stop();
console.log(`ok: ${moved} of ${clients.length} clients moved off node ${dead}`);
