// More unit tests of the replica's version rules, carried over from the
// tests of web/changecast.js (the helper the package replaced): node --test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replica, compareVersions } from '../replica.js';

const C = 'public.orders';
const env = (...changes) => ({ source: 'postgres:test', hub: 'orders', changes });

test('compareVersions: beyond Number.MAX_SAFE_INTEGER, leading zeros, prefixes, bad input', () => {
  assert.equal(compareVersions('1.0', '1.0'), 0);
  assert.equal(compareVersions('9.1', '10.0'), -1);
  assert.equal(compareVersions('23456789.2', '23456789.10'), -1);
  // Where a JS number would say "equal".
  assert.equal(compareVersions('9007199254740993.0', '9007199254740992.0'), 1);
  assert.equal(compareVersions('007.1', '7.1'), 0);
  assert.equal(compareVersions('5.0', '5'), 1);
  assert.throws(() => compareVersions('1.x', '1.0'), TypeError);
  assert.throws(() => compareVersions('', '1'), TypeError);
});

test('upsert, patch at pv, redelivered changes are ignored', () => {
  const r = new Replica();
  const up = { op: 'upsert', collection: C, id: '1', v: '100.1', doc: { id: 1, status: 'new', qty: 1 } };
  const pa = { op: 'patch', collection: C, id: '1', v: '200.1', pv: '100.1', patch: [{ op: 'replace', path: '/status', value: 'paid' }] };
  r.apply(env(up, pa));
  assert.deepEqual(r.get(C, '1'), { id: 1, status: 'paid', qty: 1 });
  assert.equal(r.version(C, 1), '200.1');
  r.apply(env(up, pa));
  assert.deepEqual(r.get(C, '1'), { id: 1, status: 'paid', qty: 1 });
  assert.equal(r.stats.ignored, 2);
  assert.equal(r.stats.patches, 1);
  assert.equal(r.stats.upserts, 1);
});

test('a patch does not modify the document it was applied to', () => {
  const r = new Replica();
  const doc = { id: 1, tags: ['a'] };
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '1.1', doc }));
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '2.1', pv: '1.1', patch: [{ op: 'add', path: '/tags/-', value: 'b' }] }));
  assert.deepEqual(doc, { id: 1, tags: ['a'] });
  assert.deepEqual(r.get(C, 1).tags, ['a', 'b']);
});

test('a gap refetches once per document; a newer gap during the read reads again', async () => {
  const calls = [];
  let release;
  const gate = new Promise((res) => (release = res));
  const r = new Replica({
    refetch: async (req) => {
      calls.push(req);
      if (calls.length === 1) await gate;
      return { doc: { id: 1, status: calls.length === 1 ? 'packed' : 'shipped' }, v: req.v };
    },
  });
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '100.1', doc: { id: 1, status: 'new' } }));
  // pv 150.1 was never received.
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '200.1', pv: '150.1', patch: [{ op: 'replace', path: '/status', value: 'packed' }] }));
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '300.1', pv: '200.1', patch: [{ op: 'replace', path: '/status', value: 'shipped' }] }));
  assert.equal(calls.length, 1);
  assert.equal(calls[0].v, '200.1');
  release();
  await r.idle();
  assert.equal(calls.length, 2);
  assert.deepEqual(r.get(C, 1), { id: 1, status: 'shipped' });
  assert.equal(r.version(C, 1), '300.1');
  assert.equal(r.stats.gaps, 2);
  // The next patch applies on top of the version read.
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '400.1', pv: '300.1', patch: [{ op: 'replace', path: '/status', value: 'done' }] }));
  assert.equal(r.get(C, 1).status, 'done');
});

test('a patch that does not apply refetches', async () => {
  const r = new Replica({ refetch: async () => ({ doc: { id: 1, x: 2 }, v: '2.1' }), onError: () => {} });
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '1.1', doc: { id: 1 } }));
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '2.1', pv: '1.1', patch: [{ op: 'remove', path: '/x' }] }));
  await r.idle();
  assert.deepEqual(r.get(C, 1), { id: 1, x: 2 });
  assert.equal(r.version(C, 1), '2.1');
});

test('a read that finds nothing deletes; a newer upsert during the read wins', async () => {
  let release;
  const gate = new Promise((res) => (release = res));
  const r = new Replica({
    refetch: async ({ id, v }) => (id === '2' ? (await gate, { doc: { id: 2, stale: true }, v }) : null),
  });
  r.load(C, '1', { id: 1 }, '1.1');
  r.load(C, '2', { id: 2 }, '1.1');
  r.apply(env({ op: 'refetch', collection: C, id: '1', v: '5.1', reason: 'too_large' }));
  r.apply(env({ op: 'patch', collection: C, id: '2', v: '6.1', pv: '3.1', patch: [] }));
  r.apply(env({ op: 'upsert', collection: C, id: '2', v: '7.1', doc: { id: 2, fresh: true } }));
  release();
  await r.idle();
  assert.equal(r.get(C, 1), undefined);
  assert.deepEqual(r.get(C, 2), { id: 2, fresh: true });
  assert.equal(r.version(C, 2), '7.1');
});

test('deletes leave a tombstone; a move between two groups keeps the document in either order', () => {
  const r = new Replica();
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '10.1', doc: { id: 1 } }));
  r.apply(env({ op: 'delete', collection: C, id: '1', v: '20.1' }));
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '10.1', doc: { id: 1 } }));
  assert.equal(r.get(C, 1), undefined);
  r.apply(env({ op: 'upsert', collection: C, id: '2', v: '30.1', doc: { id: 2 } }));
  r.apply(env({ op: 'delete', collection: C, id: '2', v: '25.1' }));
  assert.ok(r.get(C, 2));
  r.apply(env({ op: 'upsert', collection: C, id: '3', v: '40.1', doc: { id: 3, tenant: 'a' } }));
  r.apply(env({ op: 'upsert', collection: C, id: '3', v: '50.1', doc: { id: 3, tenant: 'b' } }));
  r.apply(env({ op: 'delete', collection: C, id: '3', v: '50.1' }));
  assert.deepEqual(r.get(C, 3), { id: 3, tenant: 'b' });
  r.apply(env({ op: 'upsert', collection: C, id: '4', v: '40.1', doc: { id: 4, tenant: 'a' } }));
  r.apply(env({ op: 'delete', collection: C, id: '4', v: '50.1' }));
  r.apply(env({ op: 'upsert', collection: C, id: '4', v: '50.1', doc: { id: 4, tenant: 'b' } }));
  assert.deepEqual(r.get(C, 4), { id: 4, tenant: 'b' });
});

test('truncate drops older documents of its collection only, and later older changes', () => {
  const events = [];
  const r = new Replica({ onChange: (ch) => events.push(ch.op) });
  r.apply(env(
    { op: 'upsert', collection: C, id: '2', v: '10.1', doc: { id: 2 } },
    { op: 'upsert', collection: 'other', id: '2', v: '10.1', doc: { id: 2 } },
    { op: 'upsert', collection: C, id: '3', v: '30.1', doc: { id: 3 } },
    { op: 'truncate', collection: C, v: '20.1' },
  ));
  assert.deepEqual(r.entries(C).map(([id]) => id), ['3']);
  assert.equal(r.size('other'), 1);
  r.apply(env({ op: 'upsert', collection: C, id: '5', v: '15.1', doc: { id: 5 } }));
  assert.equal(r.get(C, 5), undefined);
  assert.ok(events.includes('clear'));
});

test('pause holds envelopes while a snapshot loads; resume applies them on top, exactly', () => {
  const r = new Replica({ refetch: async () => { throw new Error('no refetch expected'); } });
  r.pause();
  // Sent while the snapshot was read: one older than the snapshot's copy,
  // one newer, a delete of a document the snapshot still had, and a patch
  // from a version the snapshot holds.
  r.apply(env({ op: 'upsert', collection: C, id: '7', v: '60.1', doc: { id: 7, item: 'older' } }));
  r.apply(env({ op: 'upsert', collection: C, id: '8', v: '90.1', doc: { id: 8, item: 'newer' } }));
  r.apply(env({ op: 'delete', collection: C, id: '6', v: '71.1' }));
  r.apply(env({ op: 'patch', collection: C, id: '9', v: '95.1', pv: '50.1', patch: [{ op: 'replace', path: '/item', value: 'patched' }] }));
  assert.equal(r.stats.envelopes, 0);
  r.load(C, '6', { id: 6 }, '65.1');
  r.load(C, '7', { id: 7, item: 'loaded' }, '70.1');
  r.load(C, '8', { id: 8, item: 'loaded' }, '80.1');
  r.load(C, '9', { id: 9, item: 'loaded' }, '80.1');
  r.resume();
  assert.equal(r.stats.envelopes, 4);
  assert.equal(r.get(C, 6), undefined);
  assert.deepEqual(r.get(C, 7), { id: 7, item: 'loaded' });
  assert.deepEqual(r.get(C, 8), { id: 8, item: 'newer' });
  assert.deepEqual(r.get(C, 9), { id: 9, item: 'patched' });
  assert.equal(r.stats.gaps, 0);
  assert.equal(r.paused, false);
});

test('onChange reports inserts, updates and deletes with their cause', () => {
  const seen = [];
  const r = new Replica({ onChange: ({ op, id, cause }) => seen.push(`${op}:${id}:${cause}`) });
  r.load(C, '0', { id: 0 }, '0.1');
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '1.1', doc: { id: 1, a: 1 } }));
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '2.1', pv: '1.1', patch: [{ op: 'replace', path: '/a', value: 2 }] }));
  r.apply(env({ op: 'delete', collection: C, id: '1', v: '3.1' }));
  assert.deepEqual(seen, ['insert:0:snapshot', 'insert:1:upsert', 'update:1:patch', 'delete:1:delete']);
});
