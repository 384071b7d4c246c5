// Unit tests of ChangecastClient (index.js) against a scripted server: the
// real @microsoft/signalr client connects by long polling to a local HTTP
// server that speaks just enough of the SignalR protocol (negotiate, polls,
// the handshake) to deliver the envelopes a test pushes, and answers
// /snapshot and /changes as each test scripts them. These are the paths the
// end-to-end tests never take (they require refetches to be 0): a refetch
// through the one-document snapshot, and a gap filled from /changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import * as signalR from '@microsoft/signalr';
import { ChangecastClient } from '../index.js';

const C = 'public.orders';
const RS = '\x1e';

// scriptedServer serves POST /api/negotiate (long polling only), the
// connection at /api (polls, the handshake by POST, DELETE), and
// /api/snapshot and /api/changes through the test's handlers, which get
// the request's URL and answer [status, body]. requests lists the URLs of
// every snapshot and changes request, in order.
async function scriptedServer({ snapshot, changes }) {
  const queue = [];
  let waiter = null;
  let polls = 0;
  let closed = false;
  const requests = [];
  const flush = () => {
    if (!waiter) return;
    const res = waiter;
    waiter = null;
    clearTimeout(res.timer);
    if (closed) {
      res.writeHead(204).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end(queue.splice(0).join(''));
  };
  const json = (res, status, body) => res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    let body = '';
    req.on('data', (b) => (body += b));
    req.on('end', () => {
      if (u.pathname === '/api/negotiate' && req.method === 'POST') {
        return json(res, 200, {
          negotiateVersion: 1, connectionId: 'c1', connectionToken: 't1',
          availableTransports: [{ transport: 'LongPolling', transferFormats: ['Text'] }],
        });
      }
      if (u.pathname === '/api' && u.searchParams.get('id') === 't1') {
        if (req.method === 'DELETE') {
          closed = true;
          flush();
          return res.writeHead(202).end();
        }
        if (req.method === 'POST') {
          // The handshake is answered in the next poll; pings need nothing.
          if (body.includes('"protocol"')) queue.push('{}' + RS);
          res.writeHead(200).end();
          return flush();
        }
        if (closed) return res.writeHead(204).end();
        if (polls++ === 0) return res.writeHead(200).end(); // the first poll answers at once
        if (waiter) waiter.writeHead(200).end();
        waiter = res;
        res.timer = setTimeout(flush, 1000);
        if (queue.length) flush();
        return;
      }
      if (u.pathname === '/api/snapshot' || u.pathname === '/api/changes') {
        requests.push(u);
        const [status, out] = (u.pathname === '/api/snapshot' ? snapshot : changes)(u);
        return json(res, status, out);
      }
      res.writeHead(404).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/api`,
    requests,
    // push delivers envelopes to the client as the hub's invocations, in
    // one poll answer.
    push(...envs) {
      for (const env of envs) queue.push(JSON.stringify({ type: 1, target: 'changes', arguments: [env] }) + RS);
      flush();
    },
    async close() {
      closed = true;
      flush();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const G = 'tenant-1';
const E = 'e1';
const stream = (offset) => [{ group: G, epoch: E, offset }];
const envelope = (offset, ...changes) => ({ source: 's', hub: 'orders', group: G, epoch: E, offset, changes });
const patch = (id, pv, v, s) => ({ op: 'patch', collection: C, id, pv, v, patch: [{ op: 'replace', path: '/s', value: s }] });
const upsert = (id, v, doc) => ({ op: 'upsert', collection: C, id, v, doc });

async function startClient(t, srv) {
  const errors = [];
  const client = new ChangecastClient({
    url: srv.url, hub: 'orders', signalR, gapWaitMs: 50, settleMs: 0,
    configure: (b) => b.configureLogging(signalR.LogLevel.None),
    onError: (err) => errors.push(err),
  });
  t.after(async () => {
    await client.stop();
    await srv.close();
  });
  await client.start();
  assert.equal(client.state, 'live');
  return { client, errors };
}

// until polls cond (no fixed sleep before asserting).
async function until(what, cond, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a gap in a document and a refetch change are read through the one-document snapshot', async (t) => {
  const srv = await scriptedServer({
    snapshot: (u) => {
      if (!u.searchParams.has('id')) {
        return [200, { hub: 'orders', groups: [G], streams: stream(0), docs: [
          { collection: C, id: '1', doc: { s: 'new' }, v: '50' },
          { collection: C, id: '2', doc: { s: 'old' }, v: '10' },
        ] }];
      }
      const id = u.searchParams.get('id');
      const v = { 1: '70', 2: '80' }[id];
      return [200, { hub: 'orders', docs: [{ collection: u.searchParams.get('collection'), id, doc: { s: `read ${id}` }, v }] }];
    },
    changes: () => [200, { epoch: E, envelopes: [], more: false }],
  });
  const { client, errors } = await startClient(t, srv);
  assert.deepEqual(client.get(C, '1'), { s: 'new' });

  // A patch from 55 onto a document held at 50: a change between them is
  // missing, so the document is read again. Then a change sent as a
  // refetch (too large to send as data).
  srv.push(envelope(1, patch('1', '55', '70', 'paid')));
  srv.push(envelope(2, { op: 'refetch', collection: C, id: '2', v: '80', reason: 'size' }));
  await until('both documents read again', () => client.version(C, '1') === '70' && client.version(C, '2') === '80');
  await client.idle();

  assert.deepEqual(client.get(C, '1'), { s: 'read 1' });
  assert.deepEqual(client.get(C, '2'), { s: 'read 2' });
  const reads = srv.requests.filter((u) => u.pathname === '/api/snapshot' && u.searchParams.has('id'));
  assert.deepEqual(reads.map((u) => [u.searchParams.get('hub'), u.searchParams.get('collection'), u.searchParams.get('id')]).sort(),
    [['orders', C, '1'], ['orders', C, '2']]);
  assert.equal(client.replicaStats.refetches, 2);
  assert.equal(client.replicaStats.gaps, 1);
  assert.equal(client.stats.snapshots, 1);
  assert.deepEqual(errors, []);
});

test('a missing offset is filled from /changes, page by page, and applied in order', async (t) => {
  // After the snapshot the stream's history gains offsets 1 to 3; the
  // live connection loses 1 and 2 and delivers 3 and 4.
  const written = [
    envelope(1, upsert('7', '100', { s: 'a' })),
    envelope(2, patch('7', '100', '110', 'b')),
    envelope(3, patch('7', '110', '120', 'c')),
  ];
  const history = [];
  const srv = await scriptedServer({
    snapshot: () => [200, { hub: 'orders', groups: [G], streams: stream(0), docs: [] }],
    changes: (u) => {
      if (u.searchParams.get('epoch') !== E || u.searchParams.get('group') !== G) return [410, { error: 'resync', epoch: E }];
      // One envelope a page, so the client must follow "more".
      const after = Number(u.searchParams.get('after'));
      const rest = history.filter((e) => e.offset > after);
      return [200, { epoch: E, envelopes: rest.slice(0, 1), more: rest.length > 1 }];
    },
  });
  const { client, errors } = await startClient(t, srv);
  assert.equal(client.size(C), 0);
  const atStart = srv.requests.length;

  history.push(...written);
  srv.push(written[2], envelope(4, patch('7', '120', '130', 'd')));
  // Filled once the last page (more: false) is asked for.
  await until('the gap filled', () => client.version(C, '7') === '130' && srv.requests.length - atStart >= 3);

  assert.deepEqual(client.get(C, '7'), { s: 'd' });
  const reads = srv.requests.slice(atStart);
  assert.deepEqual(reads.map((u) => `${u.pathname}?after=${u.searchParams.get('after')}&group=${u.searchParams.get('group')}&epoch=${u.searchParams.get('epoch')}`),
    // Offsets 3 and 4, held, apply once 2 is read; the last page asks
    // after 4.
    [`/api/changes?after=0&group=${G}&epoch=${E}`, `/api/changes?after=1&group=${G}&epoch=${E}`, `/api/changes?after=4&group=${G}&epoch=${E}`]);
  assert.equal(client.stats.gapsFilled, 1);
  assert.equal(client.stats.resyncs, 0);
  assert.equal(client.replicaStats.refetches, 0);
  assert.equal(client.replicaStats.patches, 3);
  assert.deepEqual(errors, []);
});
