// Drives the demo page in headless Chromium for the tests of
// browser_test.go: node page.mjs URL
//
// It opens URL, waits until the page is live (connected, snapshot loaded),
// prints {"ready":true,...,"beforeLive":{"empty":bool,"loading":bool}} (what
// the page showed before it was live) on stdout, then answers one JSON command per
// stdin line with one JSON line on stdout:
//   {"cmd":"rows"}                                  → {"ok":true,"rows":{id:{col:text}}}
//   {"cmd":"wait","id":"7","cells":{"status":"x"}}  → waits until row 7 shows those cells
//   {"cmd":"gone","id":"7"}                         → waits until row 7 is no longer shown
//   {"cmd":"state","state":"live"}                  → waits until the page shows that state
//   {"cmd":"state","states":["stopped","error"]}    → … one of those states
//   {"cmd":"doc","id":"7"}                          → {"ok":true,"doc":...}: the client's document
//   {"cmd":"stats"}                                 → the state, the client's counters and the page's
//   {"cmd":"offline"}                               → refuses the page's negotiate requests, then
//                                                     closes its WebSockets (code 4000): the client
//                                                     reconnects, and cannot until "online";
//                                                     with "close":false it only refuses negotiate
//   {"cmd":"online"}                                → lets negotiate through again
//   {"cmd":"screenshot","path":"/tmp/x.png"}
//   {"cmd":"quit"}
// Commands take an optional "timeout" in milliseconds (default
// PAGE_TIMEOUT_MS, 15 s). Page console messages and errors go to stderr.
import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const url = process.argv[2];
const defaultTimeout = Number(process.env.PAGE_TIMEOUT_MS || 15000);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic'],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  page.on('console', (m) => process.stderr.write(`page console.${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  page.on('requestfailed', (r) => process.stderr.write(`page request failed: ${r.url()} ${r.failure()?.errorText}\n`));
  // Keep the page's WebSockets, so that "offline" can drop them the way a
  // network does, without reaching into @microsoft/signalr's internals.
  await page.addInitScript(() => {
    // What the page said before it was live: "No orders" there is wrong
    // (the snapshot is not in yet), a loading line is right.
    window.__beforeLive = { empty: false, loading: false };
    const watch = () => {
      const state = document.querySelector('#state')?.dataset.state;
      if (state === 'live') return;
      const shown = (sel) => { const el = document.querySelector(sel); return !!el && !el.hidden; };
      if (shown('#empty')) window.__beforeLive.empty = true;
      if (shown('#loading')) window.__beforeLive.loading = true;
      requestAnimationFrame(watch);
    };
    requestAnimationFrame(watch);
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });

  // rows reads the table as shown: rows being removed (class deleted) are gone.
  const rows = () => page.evaluate(() => {
    const o = {};
    for (const tr of document.querySelectorAll('#orders tbody tr:not(.deleted)')) {
      const cells = {};
      for (const td of tr.querySelectorAll('td[data-col]')) cells[td.dataset.col] = td.textContent;
      o[tr.dataset.id] = cells;
    }
    return o;
  });
  const stats = () => page.evaluate(() => {
    const c = window.changecastDemo?.client;
    const counters = {};
    for (const el of document.querySelectorAll('.counters b[id^="c-"]')) counters[el.id.slice(2)] = el.textContent;
    return {
      state: document.querySelector('#state').dataset.state, connectionId: c?.connection?.connectionId ?? '',
      stats: c?.replicaStats, client: c?.stats, counters,
    };
  });
  const waitState = (states, timeout) => page.waitForFunction((ss) => ss.includes(document.querySelector('#state')?.dataset.state), [].concat(states), { timeout });

  // Refuses negotiate (the app negotiate and the hub's) while offline.
  let offline = false;
  await page.route((u) => u.pathname.endsWith('/negotiate'), (route) => (offline ? route.abort('internetdisconnected') : route.fallback()));

  await page.goto(url);
  await waitState('live', defaultTimeout);
  out({ ready: true, ...(await stats()), rows: await rows(), beforeLive: await page.evaluate(() => window.__beforeLive) });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    const timeout = c.timeout || defaultTimeout;
    try {
      switch (c.cmd) {
        case 'rows':
          out({ ok: true, rows: await rows() });
          break;
        case 'wait':
          await page.waitForFunction(({ id, cells }) => {
            const tr = document.querySelector(`#orders tbody tr[data-id="${CSS.escape(id)}"]:not(.deleted)`);
            if (!tr) return false;
            return Object.entries(cells).every(([col, text]) => tr.querySelector(`td[data-col="${col}"]`)?.textContent === text);
          }, { id: c.id, cells: c.cells || {} }, { timeout });
          out({ ok: true, rows: await rows() });
          break;
        case 'gone':
          await page.waitForFunction((id) => !document.querySelector(`#orders tbody tr[data-id="${CSS.escape(id)}"]:not(.deleted)`), c.id, { timeout });
          out({ ok: true, rows: await rows() });
          break;
        case 'state':
          await waitState(c.states || c.state, timeout);
          out({ ok: true, ...(await stats()), rows: await rows() });
          break;
        case 'doc':
          out({ ok: true, doc: await page.evaluate((id) => window.changecastDemo.client.get('public.orders', id) ?? null, c.id) });
          break;
        case 'stats':
          out({ ok: true, ...(await stats()) });
          break;
        case 'offline': {
          offline = true;
          if (c.close === false) {
            out({ ok: true });
            break;
          }
          const n = await page.evaluate(() => {
            const open = window.__sockets.filter((ws) => ws.readyState === WebSocket.OPEN);
            for (const ws of open) ws.close(4000, 'dropped by the test');
            return open.length;
          });
          if (n === 0) throw new Error('the page has no open WebSocket');
          out({ ok: true, closed: n });
          break;
        }
        case 'online':
          offline = false;
          out({ ok: true });
          break;
        case 'screenshot':
          await page.screenshot({ path: c.path, fullPage: true });
          out({ ok: true });
          break;
        case 'quit':
          out({ ok: true });
          rl.close();
          break;
        default:
          out({ ok: false, error: `unknown command ${c.cmd}` });
      }
    } catch (err) {
      out({ ok: false, error: String(err?.message ?? err), rows: await rows().catch(() => null), ...(await stats().catch(() => ({}))) });
    }
  }
} catch (err) {
  process.stderr.write(`page.mjs: ${err?.stack ?? err}\n`);
  out({ ready: false, error: String(err?.message ?? err) });
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
