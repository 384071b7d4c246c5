// Drives changecast's web console in headless Chromium for console_test.go:
//   node console.mjs CONSOLE_URL SLOT [SCREENSHOT]
// It first opens the console with a wrong token (it must ask for one
// again), then CONSOLE_URL (with #token=…), waits until the slot SLOT and the
// hub show, then resets the checkpoint to "now" through the page (accepting
// its confirmation) and waits for the admin API's answer, and prints one
// JSON line: {"ok":true,"stream":…,"hub":…,"dialog":…,"result":…}, or
// {"ok":false,"error":…}. With SCREENSHOT it saves a PNG of the page.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [url, slot, shot] = process.argv.slice(2);
const timeout = Number(process.env.PAGE_TIMEOUT_MS || 20000);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
});
let code = 0;
try {
  // A wrong token: the page asks for one again.
  const wrong = await browser.newPage();
  await wrong.goto(url.replace(/#token=.*/, '#token=wrong'));
  await wrong.locator('#login-error', { hasText: 'refused' }).waitFor({ timeout });
  const refused = await wrong.locator('#main').isHidden();
  await wrong.close();

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (m) => process.stderr.write(`page console.${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  await page.goto(url);
  const text = (sel) => page.locator(sel).innerText();
  await page.locator('#streams tbody tr', { hasText: slot }).waitFor({ timeout });
  await page.locator('#hubs tbody tr', { hasText: 'orders' }).waitFor({ timeout });
  await page.locator('#changes tbody tr').first().waitFor({ timeout });
  const stream = await text('#streams tbody tr');
  const hub = await text('#hubs tbody tr');
  const changes = await text('#changes tbody');
  const stored = await page.evaluate(() => ({ token: !!sessionStorage.getItem('changecast.adminToken'), hash: location.hash }));

  let dialog = '';
  page.once('dialog', (d) => { dialog = d.message(); d.accept(); });
  await page.selectOption('#reset-to', 'now');
  await page.click('#reset');
  await page.locator('#action-result.ok').waitFor({ timeout });
  const result = await text('#action-result');
  // The page refreshes after the reset: the slot's row shows it.
  await page.waitForTimeout(Number(process.env.CONSOLE_SHOT_DELAY_MS || 0));
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  out({ ok: true, refused, stream, hub, changes, dialog, result, stored });
} catch (e) {
  out({ ok: false, error: String(e?.stack || e) });
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
