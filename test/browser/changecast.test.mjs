// Unit tests of web/changecast.js (the client replica) in Node. Run by
// TestClientHelper (go test ./test/browser), or directly:
//   node --test test/browser/changecast.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replica, compareVersions } from '../../web/changecast.js';

const C = 'public.orders';
const env = (...changes) => ({ source: 'postgres:test', hub: 'orders', changes });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('compareVersions compares segments as big integers', () => {
  assert.equal(compareVersions('1.0', '1.0'), 0);
  assert.equal(compareVersions('9.1', '10.0'), -1);
  assert.equal(compareVersions('10.0', '9.9'), 1);
  assert.equal(compareVersions('23456789.2', '23456789.10'), -1);
  // Beyond Number.MAX_SAFE_INTEGER, where a JS number would say "equal".
  assert.equal(compareVersions('18446744073709551615.1', '18446744073709551614.1'), 1);
  assert.equal(compareVersions('9007199254740993.0', '9007199254740992.0'), 1);
  assert.equal(compareVersions('007.1', '7.1'), 0);
  assert.equal(compareVersions('5', '5.0'), -1);
  assert.equal(compareVersions('5.0', '5'), 1);
  assert.throws(() => compareVersions('1.x', '1.0'), TypeError);
  assert.throws(() => compareVersions('', '1'), TypeError);
});

test('upsert, patch at pv, duplicates and older changes', () => {
  const r = new Replica();
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '100.1', doc: { id: 1, status: 'new', qty: 1 } }));
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '200.1', pv: '100.1', patch: [{ op: 'replace', path: '/status', value: 'paid' }] }));
  assert.deepEqual(r.get(C, '1'), { id: 1, status: 'paid', qty: 1 });
  assert.equal(r.version(C, 1), '200.1');
  // Redelivered: both are ignored.
  r.apply(env(
    { op: 'upsert', collection: C, id: '1', v: '100.1', doc: { id: 1, status: 'new', qty: 1 } },
    { op: 'patch', collection: C, id: '1', v: '200.1', pv: '100.1', patch: [{ op: 'replace', path: '/status', value: 'paid' }] },
  ));
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

test('a gap refetches, once per document, and the fetch covers the newest change seen', async () => {
  const calls = [];
  let release;
  const gate = new Promise((r) => (release = r));
  const r = new Replica({
    refetch: async (req) => {
      calls.push(req);
      if (calls.length === 1) await gate;
      return { id: 1, status: calls.length === 1 ? 'packed' : 'shipped' };
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
  assert.equal(calls.length, 2, 'a newer gap during the fetch fetches again');
  assert.deepEqual(r.get(C, 1), { id: 1, status: 'shipped' });
  assert.equal(r.version(C, 1), '300.1');
  assert.equal(r.stats.gaps, 2);
  // The next patch applies on top of the fetched version.
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '400.1', pv: '300.1', patch: [{ op: 'replace', path: '/status', value: 'done' }] }));
  assert.equal(r.get(C, 1).status, 'done');
});

test('a patch that does not apply refetches', async () => {
  const r = new Replica({ refetch: async () => ({ id: 1, x: 2 }), onError: () => {} });
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '1.1', doc: { id: 1 } }));
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '2.1', pv: '1.1', patch: [{ op: 'remove', path: '/x' }] }));
  await r.idle();
  assert.deepEqual(r.get(C, 1), { id: 1, x: 2 });
  assert.equal(r.version(C, 1), '2.1');
});

test('documents loaded from the API are unversioned: a patch refetches, upserts and deletes apply', async () => {
  const fetched = [];
  const r = new Replica({ refetch: async ({ id }) => (fetched.push(id), { id: Number(id), status: 'fetched' }) });
  r.load(C, [{ id: 1, status: 'new' }, { id: 2, status: 'new' }, { id: 3, status: 'new' }]);
  assert.equal(r.size(C), 3);
  assert.equal(r.version(C, 1), null);
  r.apply(env(
    { op: 'patch', collection: C, id: '1', v: '10.1', pv: '5.1', patch: [{ op: 'replace', path: '/status', value: 'paid' }] },
    { op: 'upsert', collection: C, id: '2', v: '11.1', doc: { id: 2, status: 'upserted' } },
    { op: 'delete', collection: C, id: '3', v: '12.1' },
  ));
  await r.idle();
  assert.deepEqual(fetched, ['1']);
  assert.deepEqual(r.get(C, 1), { id: 1, status: 'fetched' });
  assert.equal(r.version(C, 1), '10.1');
  assert.equal(r.get(C, 2).status, 'upserted');
  assert.equal(r.get(C, 3), undefined);
});

test('a fetch that finds nothing deletes; a newer upsert during the fetch wins', async () => {
  let release;
  const gate = new Promise((res) => (release = res));
  const r = new Replica({ refetch: async ({ id }) => (id === '2' ? (await gate, { id: 2, stale: true }) : null) });
  r.load(C, [{ id: 1 }, { id: 2 }]);
  r.apply(env({ op: 'refetch', collection: C, id: '1', v: '5.1', reason: 'too_large' }));
  r.apply(env({ op: 'patch', collection: C, id: '2', v: '6.1', pv: '3.1', patch: [] }));
  r.apply(env({ op: 'upsert', collection: C, id: '2', v: '7.1', doc: { id: 2, fresh: true } }));
  release();
  await r.idle();
  assert.equal(r.get(C, 1), undefined);
  assert.deepEqual(r.get(C, 2), { id: 2, fresh: true });
  assert.equal(r.version(C, 2), '7.1');
});

test('deletes leave a tombstone; a move between two groups (same version) keeps the document', () => {
  const r = new Replica();
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '10.1', doc: { id: 1 } }));
  r.apply(env({ op: 'delete', collection: C, id: '1', v: '20.1' }));
  assert.equal(r.get(C, 1), undefined);
  // A redelivered older upsert does not bring it back.
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '10.1', doc: { id: 1 } }));
  assert.equal(r.get(C, 1), undefined);
  // A delete older than the held document is ignored.
  r.apply(env({ op: 'upsert', collection: C, id: '2', v: '30.1', doc: { id: 2 } }));
  r.apply(env({ op: 'delete', collection: C, id: '2', v: '25.1' }));
  assert.ok(r.get(C, 2));
  // Moved from group A to group B, both received, either order.
  r.apply(env({ op: 'upsert', collection: C, id: '3', v: '40.1', doc: { id: 3, tenant: 'a' } }));
  r.apply(env({ op: 'upsert', collection: C, id: '3', v: '50.1', doc: { id: 3, tenant: 'b' } }));
  r.apply(env({ op: 'delete', collection: C, id: '3', v: '50.1' }));
  assert.deepEqual(r.get(C, 3), { id: 3, tenant: 'b' });
  r.apply(env({ op: 'upsert', collection: C, id: '4', v: '40.1', doc: { id: 4, tenant: 'a' } }));
  r.apply(env({ op: 'delete', collection: C, id: '4', v: '50.1' }));
  r.apply(env({ op: 'upsert', collection: C, id: '4', v: '50.1', doc: { id: 4, tenant: 'b' } }));
  assert.deepEqual(r.get(C, 4), { id: 4, tenant: 'b' });
});

test('truncate drops older and unversioned documents of its collection only', () => {
  const events = [];
  const r = new Replica({ onChange: (ch) => events.push(ch.op) });
  r.load(C, [{ id: 1 }]);
  r.apply(env(
    { op: 'upsert', collection: C, id: '2', v: '10.1', doc: { id: 2 } },
    { op: 'upsert', collection: 'other', id: '2', v: '10.1', doc: { id: 2 } },
    { op: 'upsert', collection: C, id: '3', v: '30.1', doc: { id: 3 } },
    { op: 'truncate', collection: C, v: '20.1' },
  ));
  assert.deepEqual(r.entries(C).map(([id]) => id), ['3']);
  assert.equal(r.size('other'), 1);
  // Changes from before the truncate are ignored.
  r.apply(env({ op: 'upsert', collection: C, id: '5', v: '15.1', doc: { id: 5 } }));
  assert.equal(r.get(C, 5), undefined);
  assert.ok(events.includes('clear'));
});

test('pause holds envelopes during a load; resume applies them on top', () => {
  const r = new Replica({ refetch: async () => null });
  r.pause();
  r.apply(env({ op: 'upsert', collection: C, id: '7', v: '70.1', doc: { id: 7, item: 'new' } }));
  r.apply(env({ op: 'delete', collection: C, id: '6', v: '71.1' }));
  assert.equal(r.stats.envelopes, 0);
  r.load(C, [{ id: 6 }, { id: 7, item: 'loaded' }]);
  r.resume();
  assert.equal(r.stats.envelopes, 2);
  assert.deepEqual(r.get(C, 7), { id: 7, item: 'new' });
  assert.equal(r.get(C, 6), undefined);
  assert.equal(r.paused, false);
});

test('onChange reports inserts, updates and deletes', async () => {
  const seen = [];
  const r = new Replica({ onChange: ({ op, id, cause }) => seen.push(`${op}:${id}:${cause}`) });
  r.apply(env({ op: 'upsert', collection: C, id: '1', v: '1.1', doc: { id: 1, a: 1 } }));
  r.apply(env({ op: 'patch', collection: C, id: '1', v: '2.1', pv: '1.1', patch: [{ op: 'replace', path: '/a', value: 2 }] }));
  r.apply(env({ op: 'delete', collection: C, id: '1', v: '3.1' }));
  assert.deepEqual(seen, ['insert:1:upsert', 'update:1:patch', 'delete:1:delete']);
  await sleep(0);
});
