// Reads that the server asks to retry (429: too many reads of this caller
// in flight; 503: this instance cannot read beside the stream now) are
// asked again after Retry-After, for /changes and one-document reads as
// for snapshot pages; other statuses are returned as they are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChangecastClient } from '../index.js';

function scripted(statuses) {
  const seen = [];
  const fetch = async (url) => {
    seen.push(url);
    const status = statuses.shift() ?? 200;
    return new Response(status === 200 ? '{"docs":[]}' : 'busy', { status, headers: { 'Retry-After': '0' } });
  };
  return { fetch, seen };
}

test('429 and 503 are retried, then the answer is returned', async () => {
  const s = scripted([429, 503, 429, 200]);
  const c = new ChangecastClient({ url: 'http://127.0.0.1:1/api', hub: 'h', signalR: {}, fetch: s.fetch });
  const res = await c._request('/changes?hub=h&epoch=e&after=1');
  assert.equal(res.status, 200);
  assert.equal(s.seen.length, 4);
  assert.equal(await c._readOne({ collection: 'c', id: '1' }), null);
});

test('other refusals are not retried', async () => {
  const s = scripted([410]);
  const c = new ChangecastClient({ url: 'http://127.0.0.1:1/api', hub: 'h', signalR: {}, fetch: s.fetch });
  const res = await c._request('/changes?hub=h&epoch=e&after=1');
  assert.equal(res.status, 410);
  assert.equal(s.seen.length, 1);
});
