// Drives test/browser/transports/index.html in headless Chromium for
// TestBrowserTransports: node transports.mjs PAGE_URL. Environment:
// CHANGECAST_HUB_URL and CHANGECAST_HUB_KEY (REST sends to each client).
// For each transport and protocol, it connects a client in the page, sends
// it envelopes through the REST API and checks the page got them as
// structures equal to what was sent. Exits 0 when all pass.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import { hs256 } from '../node/jwt.mjs';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const hubURL = process.env.CHANGECAST_HUB_URL;
const hubKey = process.env.CHANGECAST_HUB_KEY;

async function toConn(id, raw) {
  const url = `${hubURL}/api/hubs/orders/connections/${encodeURIComponent(id)}/:send?api-version=2022-06-01`;
  const token = hs256({ aud: url.split('?')[0], exp: Math.floor(Date.now() / 1000) + 300 }, hubKey);
  const res = await fetch(url, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: `{"target":"changes","arguments":[${raw}]}` });
  assert.equal(res.status, 202);
}

const envelopeRaw = `{"source":"postgres:app/changecast","hub":"orders","group":"tenant-42","epoch":"e1","offset":7,
 "changes":[{"op":"patch","collection":"public.orders","id":"17","v":"23456789.1","pv":"23450000.2",
   "patch":[{"op":"replace","path":"/status","value":"shipped"}],"ts":"2026-11-26T16:00:00Z"},
  {"op":"upsert","collection":"public.orders","id":"18","v":"23456790.1","doc":{"id":18,"total":12.5,"qty":-3,"tags":["a","ü"],"note":null,"paid":true}},
  {"op":"delete","collection":"public.orders","id":"9","v":"23456791.1"}]}`;
const envelope = JSON.parse(envelopeRaw);
const matrix = [
  ['WebSockets', false, 'WebSocketTransport'], ['WebSockets', true, 'WebSocketTransport'],
  ['ServerSentEvents', false, 'ServerSentEventsTransport'],
  ['LongPolling', false, 'LongPollingTransport'], ['LongPolling', true, 'LongPollingTransport'],
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
let failed = false;
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`page console.${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  await page.goto(process.argv[2]);
  for (const [transport, msgpack, cls] of matrix) {
    const name = `${transport}-${msgpack ? 'msgpack' : 'json'}`;
    try {
      const c = await page.evaluate(([n, t, m]) => window.connect(n, t, m), [name, transport, msgpack]);
      assert.equal(c.transport, cls);
      await toConn(c.id, envelopeRaw);
      await toConn(c.id, '{"n":2}');
      await page.waitForFunction((n) => window.clients[n].got.length >= 2, name, { timeout: 15000 });
      const got = await page.evaluate((n) => window.clients[n].got, name);
      assert.deepEqual(got, [envelope, { n: 2 }]);
      await page.evaluate((n) => window.clients[n].conn.stop(), name);
      console.log(`ok ${name}`);
    } catch (e) {
      failed = true;
      console.log(`FAIL ${name}: ${e.message}`);
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
