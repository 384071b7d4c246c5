// A client whose start() fails ends in state 'error' with the reason, not
// in 'connecting' as if it still tried: node --test, with the real
// @microsoft/signalr against a closed port and a server answering 401.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import * as signalR from '@microsoft/signalr';
import { ChangecastClient } from '../index.js';

const quiet = (b) => b.configureLogging(signalR.LogLevel.None);

async function startFails(url) {
  const states = [];
  let reported = null;
  const client = new ChangecastClient({
    url,
    hub: 'orders',
    signalR,
    configure: quiet,
    onError: () => {},
    onState: (s, err) => {
      states.push(s);
      if (s === 'error') reported = err;
    },
  });
  const err = await client.start().then(() => null, (e) => e);
  return { client, states, reported, err };
}

test('start() against a closed port: state error, with the reason', async () => {
  // A port that was free a moment ago: nothing listens there.
  const srv = http.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));

  const { client, states, reported, err } = await startFails(`http://127.0.0.1:${port}/api`);
  assert.ok(err, 'start() resolved');
  assert.equal(client.state, 'error');
  assert.equal(client.error, err);
  assert.equal(reported, err, 'onState got the reason');
  assert.deepEqual(states, ['connecting', 'error']);
});

test('start() refused with 401: state error, the reason names the status', async () => {
  const srv = http.createServer((req, res) => {
    res.writeHead(401, { 'Content-Type': 'application/json' });
    res.end('{"error":"missing or wrong token"}');
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const { client, states, err } = await startFails(`http://127.0.0.1:${srv.address().port}/api`);
    assert.equal(client.state, 'error');
    assert.match(String(err && err.message), /401|Unauthorized/);
    assert.deepEqual(states, ['connecting', 'error']);
  } finally {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  }
});
