// The admin page's live view against real proxies: signs in to a running `appliance demo`
// (every proxy enrolled over QUIC, traffic flowing through its gateway) and waits for the
// proxies' own stats to become rates on the picture's edges and their health to colour the
// boxes. Run by tests/demo.rs:
//
//   node tests/browser/live.mjs URL ACCESS_KEY_ID SECRET SCREENSHOT_DIR
//
// Prints `PASS <step>` per checked behaviour; exits 1 with `FAIL <step>: <why>` on the first
// failure, after a screenshot of the page as it was.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [url, keyId, secret, shots] = process.argv.slice(2);
if (!url || !keyId || !secret || !shots) {
  console.error('usage: live.mjs URL ACCESS_KEY_ID SECRET SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const page = await (await browser.newContext({ viewport: { width: 1366, height: 768 } })).newPage();
// Polls run every 2 s; the first rate needs two samples.
page.setDefaultTimeout(30000);
let step = 'start';
async function check(name, fn) {
  step = name;
  await fn();
  console.log(`PASS ${name}`);
}
function expect(cond, why) { if (!cond) throw new Error(why); }

try {
  await check('signing in shows the demo mesh', async () => {
    await page.goto(url);
    await page.getByLabel('Access key id or user name').fill(keyId);
    await page.getByLabel('Secret access key or password').fill(secret);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('link', { name: 'ColorApp' }).click();
    await page.locator('svg.topology').waitFor();
  });

  await check("real proxies' stats become rates on the edges", async () => {
    await page.waitForFunction(() => [...document.querySelectorAll('svg.topology .edge title')]
      .some((t) => /colorteller-route-1 → Virtual node colorteller-(white|blue)-vn: .* [1-9][\d.]* req\/s/.test(t.textContent)));
  });

  await check('connected, healthy proxies colour their boxes green', async () => {
    const cls = (label) => page.locator(`svg.topology .node[aria-label^="${label}"]`).first().getAttribute('class');
    for (const label of ['Virtual gateway colorgateway-vg', 'Virtual node colorteller-white-vn', 'Virtual node colorteller-blue-vn']) {
      const c = await cls(label);
      expect(c.includes('n-ok'), `${label}: ${c}`);
    }
    await page.screenshot({ path: join(shots, 'live-topology.png'), fullPage: true });
  });

  await check('the proxies view lists the five enrolled proxies', async () => {
    await page.getByRole('link', { name: 'Proxies' }).click();
    for (const id of ['virtualGateway/colorgateway-vg', 'virtualNode/colorteller-white-vn', 'virtualNode/colorteller-red-vn']) {
      await page.getByRole('row', { name: new RegExp(id) }).waitFor();
    }
    await page.screenshot({ path: join(shots, 'live-proxies.png'), fullPage: true });
  });
} catch (e) {
  console.log(`FAIL ${step}: ${e.message}`);
  await page.screenshot({ path: join(shots, 'live-failure.png'), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log('ALL PASSED');
