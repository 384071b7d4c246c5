// Unit tests of the replica's version rules: node --test (no server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replica, compareVersions } from '../replica.js';

const C = 'public.orders';
const env = (...changes) => ({ source: 't', hub: 'h', changes });
const upsert = (id, v, doc) => ({ op: 'upsert', collection: C, id, v, doc });
const patch = (id, pv, v, ops) => ({ op: 'patch', collection: C, id, pv, v, patch: ops });
const del = (id, v) => ({ op: 'delete', collection: C, id, v });
const setS = (s) => [{ op: 'replace', path: '/s', value: s }];

test('compareVersions compares segments as big integers', () => {
  assert.equal(compareVersions('9.2', '10.1'), -1);
  assert.equal(compareVersions('18446744073709551615.10', '18446744073709551615.9'), 1);
  assert.equal(compareVersions('5', '5.0'), -1);
  assert.equal(compareVersions('7.1', '7.1'), 0);
  assert.throws(() => compareVersions('x', '1'));
});

test('a patch applies onto a document held at w when pv <= w < v', () => {
  const r = new Replica();
  r.load(C, '1', { s: 'new', n: 1 }, '50');
  r.apply(env(patch('1', '30', '60', setS('paid'))));
  assert.deepEqual(r.get(C, '1'), { s: 'paid', n: 1 });
  assert.equal(r.version(C, '1'), '60');
  assert.equal(r.stats.patches, 1);
});

test('a patch to the held version or older is ignored; a patch from later is a gap', () => {
  const refetched = [];
  const r = new Replica({ refetch: async (x) => { refetched.push(x); return { doc: { s: 'fetched' }, v: '99' }; } });
  r.load(C, '1', { s: 'x' }, '50');
  r.apply(env(patch('1', '30', '50', setS('old'))));
  assert.equal(r.stats.ignored, 1);
  r.apply(env(patch('1', '55', '70', setS('gap'))));
  assert.equal(r.stats.gaps, 1);
  return r.idle().then(() => {
    assert.equal(refetched.length, 1);
    assert.deepEqual(r.get(C, '1'), { s: 'fetched' });
    assert.equal(r.version(C, '1'), '99');
  });
});

test('held refetches settled by a later change are not made', async () => {
  let calls = 0;
  const r = new Replica({ refetch: async () => { calls++; return null; } });
  r.holdRefetches();
  r.apply(env(patch('1', '10', '20', setS('a')), del('1', '30')));
  r.apply(env(patch('2', '10', '20', setS('a')), upsert('2', '25', { s: 'b' })));
  r.releaseRefetches();
  await r.idle();
  assert.equal(calls, 0);
  assert.equal(r.get(C, '1'), undefined);
  assert.deepEqual(r.get(C, '2'), { s: 'b' });
});

test('a snapshot tombstone makes older changes of the document harmless', () => {
  const r = new Replica();
  r.load(C, '1', null, '50', true);
  r.apply(env(upsert('1', '40', { s: 'old' }), patch('1', '30', '45', setS('x'))));
  assert.equal(r.get(C, '1'), undefined);
  assert.equal(r.stats.gaps, 0);
  r.apply(env(upsert('1', '60', { s: 'back' })));
  assert.deepEqual(r.get(C, '1'), { s: 'back' });
});

test('a reload removes what the new snapshot does not hold', () => {
  const r = new Replica();
  r.load(C, '1', { s: 'a' }, '10');
  r.load(C, '2', { s: 'b' }, '10');
  r.beginReload();
  r.load(C, '1', { s: 'a2' }, '30');
  r.endReload();
  assert.deepEqual(r.entries(C), [['1', { s: 'a2' }]]);
});

test('a reload removes a missing document whatever its version', () => {
  // Cosmos DB: versions are per physical partition, so a document of one
  // partition can carry a higher _lsn than the whole snapshot of another.
  const r = new Replica();
  r.load(C, 'a', { s: 'a' }, '900');
  r.load(C, 'b', { s: 'b' }, '10');
  r.beginReload();
  r.load(C, 'b', { s: 'b2' }, '20');
  r.endReload();
  assert.deepEqual(r.entries(C), [['b', { s: 'b2' }]]);
});

test('truncate drops older documents; delete of a moved document keeps it', () => {
  const r = new Replica();
  r.apply(env(upsert('1', '5', {}), upsert('2', '9', {}), { op: 'truncate', collection: C, v: '8' }));
  assert.deepEqual(r.entries(C).map(([id]) => id), ['2']);
  // A move between two groups this client is in: a delete and an upsert
  // with the version it holds; it keeps the document.
  r.apply(env(del('2', '9'), upsert('2', '9', {})));
  assert.deepEqual(r.get(C, '2'), {});
});
