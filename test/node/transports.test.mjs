// The official client on every transport and hub protocol the built-in hub
// serves, and stateful reconnect across a dropped TCP connection. Started
// by publish/hub's TestNodeTransports with the same environment as
// hub.test.mjs (anonymous negotiate here).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hs256 } from './jwt.mjs';
import net from 'node:net';
import * as signalR from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run this through go test ./publish/hub -run TestNodeTransports`);
  return v;
};
const hubURL = env('CHANGECAST_HUB_URL');
const hubKey = env('CHANGECAST_HUB_KEY');
const negotiatePath = new URL(env('CHANGECAST_NEGOTIATE_URL')).pathname;
const HUB = 'orders';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


// rest calls the REST API with a raw body (so its bytes are what the hub
// relays, newlines and all).
async function rest(method, path, raw) {
  const url = `${hubURL}${path}`;
  const token = hs256({ aud: url.split('?')[0], exp: Math.floor(Date.now() / 1000) + 300 }, hubKey);
  const res = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: raw,
  });
  return res.status;
}
const toConn = (id, rawArgs) =>
  rest('POST', `/api/hubs/${HUB}/connections/${encodeURIComponent(id)}/:send?api-version=2022-06-01`,
    `{"target":"changes","arguments":[${rawArgs}]}`);

// An envelope as the worker sends it, pretty-printed (Server-Sent Events
// must carry its newlines), with what a JSON client parses it to.
const envelopeRaw = `{
  "source": "postgres:app/changecast", "hub": "orders", "group": "tenant-42", "epoch": "e1", "offset": 7,
  "changes": [
    {"op": "patch", "collection": "public.orders", "id": "17", "v": "23456789.1", "pv": "23450000.2",
     "patch": [{"op": "replace", "path": "/status", "value": "shipped"}], "ts": "2026-11-26T16:00:00Z"},
    {"op": "upsert", "collection": "public.orders", "id": "18", "v": "23456790.1",
     "doc": {"id": 18, "total": 12.5, "qty": -3, "big": 9007199254740991, "tags": ["a", "ü", "\\n"], "note": null, "paid": true}},
    {"op": "delete", "collection": "public.orders", "id": "9", "v": "23456791.1"},
    {"op": "refetch", "collection": "public.orders", "id": "20", "v": "23456792.1", "reason": "too_large"}
  ]
}`;
const envelope = JSON.parse(envelopeRaw);

// connect negotiates through base (the hub, or the proxy in front of it).
async function connect({ base = hubURL, transport, msgpack = false, stateful = false, log = signalR.LogLevel.Warning }) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${base}${negotiatePath}?hub=${HUB}`, transport === undefined ? {} : { transport })
    .configureLogging(log);
  if (msgpack) b = b.withHubProtocol(new MessagePackHubProtocol());
  if (stateful) b = b.withStatefulReconnect();
  const conn = b.build();
  const got = [];
  conn.on('changes', (arg) => { got.push(arg); });
  await conn.start();
  return { conn, got };
}

async function waitFor(what, cond, ms = 15000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`waiting for ${what}`);
    await sleep(20);
  }
}

const T = signalR.HttpTransportType;
const matrix = [
  ['WebSockets', T.WebSockets, false],
  ['WebSockets', T.WebSockets, true],
  ['ServerSentEvents', T.ServerSentEvents, false],
  ['LongPolling', T.LongPolling, false],
  ['LongPolling', T.LongPolling, true],
];

describe('every transport and protocol', { concurrency: true }, () => {
  for (const [name, transport, msgpack] of matrix) {
    test(`${name} with ${msgpack ? 'MessagePack' : 'JSON'} receives the envelopes as sent`, async () => {
      const c = await connect({ transport, msgpack });
      try {
        assert.equal(c.conn.connection.transport.constructor.name, {
          WebSockets: 'WebSocketTransport', ServerSentEvents: 'ServerSentEventsTransport', LongPolling: 'LongPollingTransport',
        }[name]);
        for (let i = 0; i < 3; i++) {
          assert.equal(await toConn(c.conn.connectionId, envelopeRaw), 202);
        }
        assert.equal(await toConn(c.conn.connectionId, '{"n":1}'), 202);
        await waitFor('4 messages', () => c.got.length >= 4);
        for (let i = 0; i < 3; i++) assert.deepEqual(c.got[i], envelope);
        assert.deepEqual(c.got[3], { n: 1 });
      } finally {
        await c.conn.stop();
      }
    });
  }

  test('MessagePack clients skip Server-Sent Events', async () => {
    await assert.rejects(connect({ transport: T.ServerSentEvents, msgpack: true, log: signalR.LogLevel.None }));
  });

  test('without a transport option the client takes WebSockets', async () => {
    const c = await connect({ msgpack: true });
    try {
      assert.equal(c.conn.connection.transport.constructor.name, 'WebSocketTransport');
    } finally {
      await c.conn.stop();
    }
  });
});

// dropProxy forwards loopback TCP connections to the hub and can cut them
// all at once, as a network blip would.
async function dropProxy() {
  const target = new URL(hubURL);
  const socks = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    socks.add(client);
    socks.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
      socks.delete(client);
      socks.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    drop() {
      const n = socks.size;
      for (const s of socks) s.destroy();
      return n;
    },
    close: () => new Promise((r) => {
      for (const s of socks) s.destroy();
      server.close(r);
    }),
  };
}

describe('stateful reconnect', () => {
  for (const msgpack of [false, true]) {
    test(`a dropped TCP connection under load loses and repeats nothing (${msgpack ? 'MessagePack' : 'JSON'})`, async () => {
      const proxy = await dropProxy();
      const c = await connect({ base: proxy.url, transport: T.WebSockets, msgpack, stateful: true });
      let reconnecting = false;
      c.conn.onreconnecting(() => (reconnecting = true));
      const id = c.conn.connectionId;
      try {
        const N = 300;
        let drops = 0;
        for (let i = 1; i <= N; i++) {
          assert.equal(await toConn(id, `{"n":${i},"pad":"${'x'.repeat(100)}"}`), 202);
          if (i % 100 === 50) {
            drops += proxy.drop();
          }
          await sleep(2);
        }
        assert.ok(drops > 0, 'the proxy dropped nothing');
        await waitFor(`${N} messages`, () => c.got.length >= N);
        await sleep(300);
        assert.deepEqual(c.got.map((m) => m.n), Array.from({ length: N }, (_, i) => i + 1));
        assert.equal(c.conn.connectionId, id, 'the connection was renegotiated');
        assert.equal(reconnecting, false, 'the client went through a full reconnect');
        assert.equal(c.conn.state, signalR.HubConnectionState.Connected);
      } finally {
        await c.conn.stop();
        await proxy.close();
      }
    });
  }
});
