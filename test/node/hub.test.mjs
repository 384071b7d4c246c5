// The official @microsoft/signalr client against changecast's built-in hub.
// Started by publish/hub's TestNodeClient, which runs the hub in process and
// passes its addresses and keys in the environment:
//   CHANGECAST_HUB_URL        the hub's base URL (REST API)
//   CHANGECAST_HUB_KEY        its access key (signs REST calls)
//   CHANGECAST_NEGOTIATE_URL  the app negotiate base (withUrl takes it)
//   CHANGECAST_APP_SECRET, CHANGECAST_APP_ISSUER, CHANGECAST_APP_AUDIENCE
//                             how app user tokens are signed (HS256)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hs256 } from './jwt.mjs';
import * as signalR from '@microsoft/signalr';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run this through go test ./publish/hub -run TestNodeClient`);
  return v;
};
const hubURL = env('CHANGECAST_HUB_URL');
const hubKey = env('CHANGECAST_HUB_KEY');
const negotiateURL = env('CHANGECAST_NEGOTIATE_URL');
const appSecret = env('CHANGECAST_APP_SECRET');
const appIssuer = env('CHANGECAST_APP_ISSUER');
const appAudience = env('CHANGECAST_APP_AUDIENCE');
const HUB = 'orders';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


const now = () => Math.floor(Date.now() / 1000);

// appToken is what the app's own login would give a user of tenant tid.
const appToken = (sub, tid) =>
  hs256({ sub, tid, iss: appIssuer, aud: appAudience, exp: now() + 3600 }, appSecret);

// rest calls the hub's REST API as a server would (Azure's wire format).
async function rest(method, path, body) {
  const url = `${hubURL}${path}`;
  const token = hs256({ aud: url.split('?')[0], exp: now() + 300 }, hubKey);
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.status;
}

const sendToGroup = (group, arg) =>
  rest('POST', `/api/hubs/${HUB}/groups/${encodeURIComponent(group)}/:send?api-version=2022-06-01`, {
    target: 'changes',
    arguments: [arg],
  });

// connect starts a client the way an app does: through the app negotiate,
// with its user token, reconnecting automatically.
async function connect(sub, tid) {
  const conn = new signalR.HubConnectionBuilder()
    .withUrl(`${negotiateURL}?hub=${HUB}`, { accessTokenFactory: () => appToken(sub, tid) })
    .withAutomaticReconnect([0, 500, 1000, 2000, 5000])
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  const got = [];
  let wake = () => {};
  conn.on('changes', (arg) => {
    got.push(arg);
    wake();
  });
  await conn.start();
  return {
    conn,
    got,
    // next waits for message number i (0-based).
    async next(i, ms = 10000) {
      const deadline = Date.now() + ms;
      while (got.length <= i) {
        if (Date.now() > deadline) throw new Error(`${sub}: no message #${i} within ${ms} ms (got ${JSON.stringify(got)})`);
        await Promise.race([new Promise((r) => (wake = r)), sleep(100)]);
      }
      return got[i];
    },
  };
}

describe('official client against the built-in hub', { concurrency: true }, () => {
  test('negotiates through the app and gets only its own tenant', async () => {
    const alice = await connect('alice', 't1');
    const bob = await connect('bob', 't2');
    try {
      assert.equal(alice.conn.state, signalR.HubConnectionState.Connected);
      // t2 first: were alice in t2 as well, that message would reach her first.
      assert.equal(await sendToGroup('tenant-t2', { n: 'for-t2' }), 202);
      assert.equal(await sendToGroup('tenant-t1', { n: 'for-t1' }), 202);
      assert.deepEqual(await alice.next(0), { n: 'for-t1' });
      assert.deepEqual(await bob.next(0), { n: 'for-t2' });
      await sleep(300);
      assert.deepEqual(alice.got, [{ n: 'for-t1' }]);
      assert.deepEqual(bob.got, [{ n: 'for-t2' }]);
    } finally {
      await alice.conn.stop();
      await bob.conn.stop();
    }
  });

  test('reconnects after the hub closes it with allowReconnect', async () => {
    const carol = await connect('carol', 't3');
    try {
      const first = carol.conn.connectionId;
      const reconnected = new Promise((resolve) => carol.conn.onreconnected(resolve));
      assert.equal(await rest('DELETE', `/api/hubs/${HUB}/connections/${first}?api-version=2022-06-01&reason=test`), 200);
      const second = await Promise.race([reconnected, sleep(15000).then(() => null)]);
      assert.ok(second, 'no reconnect within 15 s');
      assert.notEqual(second, first, 'a reconnect negotiates a new connection');
      assert.equal(carol.conn.state, signalR.HubConnectionState.Connected);
      // User-group membership survives the new connection.
      assert.equal(await sendToGroup('tenant-t3', { n: 'after-reconnect' }), 202);
      assert.deepEqual(await carol.next(0), { n: 'after-reconnect' });
    } finally {
      await carol.conn.stop();
    }
  });

  test('survives 40 s idle thanks to the hub pings', async () => {
    const dave = await connect('dave', 't4');
    try {
      const id = dave.conn.connectionId;
      let dropped = false;
      dave.conn.onreconnecting(() => (dropped = true));
      dave.conn.onclose(() => (dropped = true));
      await sleep(40000);
      assert.equal(dropped, false, 'the connection dropped while idle');
      assert.equal(dave.conn.state, signalR.HubConnectionState.Connected);
      assert.equal(dave.conn.connectionId, id);
      assert.equal(await sendToGroup('tenant-t4', { n: 'after-idle' }), 202);
      assert.deepEqual(await dave.next(0), { n: 'after-idle' });
    } finally {
      await dave.conn.stop();
    }
  });
});
