// Catch-ups run one at a time: a reconnect that comes while the client is
// still catching up (its start, or an earlier reconnect) waits for it.
// Two at once shared the envelopes held meanwhile, and the first to finish
// took them away from the other ("held is not iterable"; start() failed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChangecastClient } from '../index.js';

test('a catch-up asked while one runs waits for it, and each applies what it held', async () => {
  const c = new ChangecastClient({ url: 'http://127.0.0.1:1/api', hub: 'h', signalR: {} });
  const log = [];
  let release;
  const firstMayEnd = new Promise((r) => { release = r; });
  c._catchUpOnce = async (cause) => {
    log.push(`begin ${cause}`);
    c._held = c._held || [];
    if (cause === 'start') await firstMayEnd;
    const held = c._held;
    c._held = null;
    assert.ok(Array.isArray(held), `${cause}: the held envelopes were taken by another catch-up`);
    log.push(`end ${cause}`);
  };
  const start = c._catchUp('start');
  await new Promise((r) => setImmediate(r));
  const reconnect = c._catchUp('reconnect');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(log, ['begin start'], 'the reconnect began while the start was catching up');
  release();
  await Promise.all([start, reconnect]);
  assert.deepEqual(log, ['begin start', 'end start', 'begin reconnect', 'end reconnect']);

  // A failed catch-up does not keep the next one from running.
  c._catchUpOnce = async (cause) => {
    log.push(`again ${cause}`);
    if (cause === 'resync') throw new Error('snapshot failed');
  };
  await assert.rejects(c._catchUp('resync'));
  await c._catchUp('reconnect');
  assert.deepEqual(log.slice(-2), ['again resync', 'again reconnect']);
});
