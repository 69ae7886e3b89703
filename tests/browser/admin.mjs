// Drives the admin page in headless Chromium (Debian's `chromium`, through playwright-core).
// Run by tests/admin_page.rs against a control plane holding the walkthrough mesh:
//
//   node tests/browser/admin.mjs URL ACCESS_KEY_ID SECRET SCREENSHOT_DIR
//
// Prints `PASS <step>` per checked behaviour; exits 1 with `FAIL <step>: <why>` on the first
// failure, after a screenshot of the page as it was.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [url, keyId, secret, shots] = process.argv.slice(2);
if (!url || !keyId || !secret || !shots) {
  console.error('usage: admin.mjs URL ACCESS_KEY_ID SECRET SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 15000;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Containers run as root without user namespaces; the sandbox cannot start there.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
// A laptop screen: the page must be readable at 1366x768.
const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);
const consoleErrors = [];
// Refused requests (the tests make several on purpose) log "Failed to load resource";
// anything else is a bug in the page.
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(e.message));

let step = 'start';
async function check(name, fn) {
  step = name;
  await fn();
  console.log(`PASS ${name}`);
}
const shot = (name, fullPage = false) => page.screenshot({ path: join(shots, `${name}.png`), fullPage });
function expect(cond, why) { if (!cond) throw new Error(why); }

// A fetch from inside the page (same origin, with whatever cookie the browser holds).
const pageFetch = (method, path, headers = {}, body) => page.evaluate(async ([m, p, h, b]) => {
  const r = await fetch(p, { method: m, headers: h, body: b, credentials: 'same-origin' });
  return { status: r.status, type: r.headers.get('x-amzn-ErrorType'), text: await r.text() };
}, [method, path, headers, body]);

try {
  await check('a page fetched without a session is refused', async () => {
    const anon = await browser.newContext();
    const app = await anon.request.get(`${url}/ui/app.js`);
    expect(app.status() === 401, `GET /ui/app.js without a session: ${app.status()}`);
    const json = await anon.request.get(`${url}/v20190125/meshes`);
    expect(json.status() === 403, `GET /v20190125/meshes without a session: ${json.status()}`);
    const root = await anon.request.get(`${url}/`, { maxRedirects: 0 });
    expect(root.status() === 303 && root.headers().location === '/signin', `GET / without a session: ${root.status()}`);
    const version = await anon.request.get(`${url}/appliance/v1/admin/version`);
    expect(version.status() === 403, `GET version without a session: ${version.status()}`);
    await anon.close();
  });

  await check('the sign-in page carries the security headers', async () => {
    const response = await page.goto(url);
    expect(page.url().endsWith('/signin'), `landed on ${page.url()}`);
    const h = response.headers();
    expect(h['x-frame-options'] === 'DENY', 'X-Frame-Options');
    expect((h['content-security-policy'] || '').includes("script-src 'self'"), 'CSP');
    await shot('01-signin');
  });

  await check('a wrong secret is refused', async () => {
    await page.getByLabel('Access key id or user name').fill(keyId);
    await page.getByLabel('Secret access key or password').fill(`${secret}-wrong`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'do not match' }).waitFor();
    expect(page.url().endsWith('/signin'), 'still on the sign-in page');
    await shot('02-signin-refused');
  });

  await check('signing in with the access key shows the meshes', async () => {
    await page.getByLabel('Secret access key or password').fill(secret);
    await page.keyboard.press('Enter'); // the form works from the keyboard
    await page.getByRole('heading', { name: 'Meshes' }).waitFor();
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'appliance_session');
    expect(session && session.httpOnly && session.sameSite === 'Strict', `cookie ${JSON.stringify(session)}`);
    await page.getByRole('link', { name: 'ColorApp' }).waitFor();
    await shot('03-meshes');
  });

  await check("the walkthrough mesh's picture shows every resource with weights", async () => {
    await page.getByRole('link', { name: 'ColorApp' }).click();
    await page.locator('svg.topology').waitFor();
    const labels = await page.locator('svg.topology .node').evaluateAll((ns) => ns.map((n) => n.getAttribute('aria-label')));
    for (const want of ['Virtual gateway colorgateway-vg', 'Gateway route colorgateway-route-1', 'Virtual service colorteller-1',
      'Virtual router colorteller-vr-1', 'Route colorteller-route-1', 'Virtual node colorteller-white-vn', 'Endpoint colorteller-white']) {
      expect(labels.some((l) => l.startsWith(want)), `no node "${want}" in ${JSON.stringify(labels)}`);
    }
    expect(labels.length === 17, `17 boxes expected, got ${labels.length}`);
    const edges = await page.locator('svg.topology .edge title').allTextContents();
    expect(edges.some((t) => t.includes('colorteller-route-1 → Virtual node colorteller-white-vn: w 1 · 50%')), `edges: ${edges.join(' | ')}`);
    expect(edges.every((t) => /req\/s/.test(t)), 'every edge has a traffic label');
    await shot('04-topology', true);
  });

  // States real proxies seldom show on cue (an unhealthy app, a nacked config, errors on
  // half the requests): the browser is served /appliance/v1/proxies's shape with counters
  // that grow on every poll. The same view on the demo's real proxies is
  // tests/browser/live.mjs, run by tests/demo.rs.
  await check('proxy stats become live rates and health colours', async () => {
    let polls = 0;
    const at = new Date().toISOString();
    await page.route('**/appliance/v1/proxies', (r) => {
      polls += 1;
      const n = polls * 40; // 40 requests per 2 s poll: 20 req/s
      r.fulfill({ contentType: 'application/json', body: JSON.stringify({ proxies: [
        { identity: 'mesh/ColorApp/virtualGateway/colorgateway-vg', address: '127.0.0.1:40001', advertise: null, healthy: true,
          connectedAt: at, configVersionSent: 14, configVersionAcked: 14, lastNack: null, certificateExpiresAt: '2030-01-01T00:00:00Z',
          stats: { targets: { 'colorteller-white-vn': { requests: n, errors: 0 }, 'colorteller-blue-vn': { requests: n, errors: n / 2 } } } },
        { identity: 'mesh/ColorApp/virtualNode/colorteller-white-vn', address: '127.0.0.1:40002', advertise: '127.0.0.1:9080', healthy: true,
          connectedAt: at, configVersionSent: 14, configVersionAcked: 14, lastNack: null, certificateExpiresAt: '2030-01-01T00:00:00Z', stats: { targets: {} } },
        { identity: 'mesh/ColorApp/virtualNode/colorteller-blue-vn', address: '127.0.0.1:40003', advertise: '127.0.0.1:9081', healthy: false,
          connectedAt: at, configVersionSent: 14, configVersionAcked: 13, lastNack: { version: 14, error: 'listener port 9080: address in use', at },
          certificateExpiresAt: '2030-01-01T00:00:00Z', stats: { targets: {} } },
      ] }) });
    });
    const white = page.locator('svg.topology .edge title', { hasText: 'colorteller-route-1 → Virtual node colorteller-white-vn' });
    await page.waitForFunction(() => [...document.querySelectorAll('svg.topology .edge title')]
      .some((t) => /colorteller-route-1 → Virtual node colorteller-blue-vn: .* [1-9][\d.]* req\/s, 50\.0% err/.test(t.textContent)));
    expect(/ [1-9][\d.]* req\/s, 0\.0% err/.test(await white.textContent()), await white.textContent());
    const cls = (label) => page.locator(`svg.topology .node[aria-label^="${label}"]`).getAttribute('class');
    expect((await cls('Virtual node colorteller-blue-vn')).includes('n-bad'), 'an unhealthy proxy makes its node red');
    expect((await cls('Virtual node colorteller-white-vn')).includes('n-ok'), 'a healthy proxy makes its node green');
    expect((await cls('Virtual gateway colorgateway-vg')).includes('n-ok'), 'the gateway is green');
    expect((await cls('Endpoint 127.0.0.1:9080')).includes('n-ok'), 'a registered sidecar is the endpoint');
    await shot('05-topology-live', true);
  });

  await check('a store change redraws the picture without a reload', async () => {
    const { csrfToken } = JSON.parse((await pageFetch('GET', '/appliance/v1/admin/session')).text);
    const body = JSON.stringify({ virtualNodeName: 'live-check-vn', spec: { listeners: [{ portMapping: { port: 8080, protocol: 'http' } }], serviceDiscovery: { dns: { hostname: 'live.local' } } } });
    const made = await pageFetch('PUT', '/v20190125/meshes/ColorApp/virtualNodes', { 'X-CSRF-Token': csrfToken, 'Content-Type': 'application/json' }, body);
    expect(made.status === 200, `create: ${made.status} ${made.text}`);
    await page.locator('svg.topology [aria-label^="Virtual node live-check-vn"]').waitFor();
    const gone = await pageFetch('DELETE', '/v20190125/meshes/ColorApp/virtualNodes/live-check-vn', { 'X-CSRF-Token': csrfToken });
    expect(gone.status === 200, `delete: ${gone.status} ${gone.text}`);
    await page.locator('svg.topology [aria-label^="Virtual node live-check-vn"]').waitFor({ state: 'detached' });
  });

  await check('a route opens from the picture with the keyboard', async () => {
    await page.locator('svg.topology a[aria-label^="Route colorteller-route-1"]').focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Route colorteller-route-1' }).waitFor();
    await page.getByRole('heading', { name: 'Traffic shifting' }).waitFor();
    await shot('06-route');
  });

  await check('moving the weights to 100:0 writes one UpdateRoute', async () => {
    const puts = [];
    page.on('request', (r) => { if (r.method() === 'PUT') puts.push(r.url()); });
    // The sliders, from the keyboard: End is the maximum (100), Home the minimum (0).
    await page.getByLabel('Weight of colorteller-white-vn', { exact: true }).focus();
    await page.keyboard.press('End');
    await page.getByLabel('Weight of colorteller-blue-vn', { exact: true }).focus();
    await page.keyboard.press('Home');
    expect(await page.getByLabel('Weight of colorteller-white-vn (number)').inputValue() === '100', 'number follows slider');
    await shot('07-weights-moved');
    await page.getByRole('button', { name: 'Save weights' }).click();
    await page.getByRole('status').filter({ hasText: 'Saved weights 100:0' }).waitFor();
    expect(puts.length === 1 && puts[0].endsWith('/virtualRouter/colorteller-vr-1/routes/colorteller-route-1'), `PUTs: ${puts}`);
    const shown = await page.locator('pre.json').textContent();
    expect(/"weight": 100/.test(shown) && /"weight": 0/.test(shown), 'the JSON view shows the new weights');
    const edited = await page.getByLabel('Update Route request body (JSON)').inputValue();
    expect(/"weight": 100/.test(edited), 'the editor shows the new weights');
    await shot('08-weights-saved');
  });

  await check("a validation error is shown next to its field", async () => {
    await page.goto(`${url}/#/mesh/ColorApp/virtualNode/colorteller-white-vn`);
    const editor = page.getByLabel('Update Virtual node request body (JSON)');
    await editor.waitFor();
    const text = await editor.inputValue();
    await editor.fill(text.replace('"intervalMillis": 5000', '"intervalMillis": 10'));
    await page.getByRole('button', { name: /^Save/ }).click();
    const marker = page.locator('.field-error.at-line');
    await marker.waitFor();
    const message = await marker.textContent();
    expect(message.startsWith('spec.listeners[0].healthCheck.intervalMillis:'), `message: ${message}`);
    // Next to the field: the marker's top is within a line of the field's line.
    const lines = text.split('\n');
    const line = lines.findIndex((l) => l.includes('"intervalMillis"')) + 1;
    const top = await marker.evaluate((m) => parseFloat(m.style.top));
    const scroll = await editor.evaluate((t) => t.scrollTop);
    expect(Math.abs(top - (8 + (line - 1) * 20 - scroll)) < 2, `marker at ${top}px, field on line ${line}`);
    const gutter = await page.locator('.editor .gutter').textContent();
    expect(gutter.split('\n')[line - 1] === `! ${line}`, 'the gutter marks the line');
    await shot('09-validation-error');
  });

  await check('the proxies view lists proxies, and none without the endpoint', async () => {
    await page.getByRole('link', { name: 'Proxies' }).click();
    await page.getByRole('heading', { name: 'Proxies' }).waitFor();
    // Still served the simulated list from above.
    const row = page.getByRole('row', { name: /colorteller-blue-vn/ });
    await row.waitFor();
    expect((await row.textContent()).includes('v14') && (await row.textContent()).includes('address in use'), 'the nack and its error');
    await shot('10-proxies');
    await page.unroute('**/appliance/v1/proxies');
    await page.reload();
    await page.locator('#no-proxies').waitFor(); // the real endpoint: no proxy is connected
  });

  await check('the CA view shows the bundle and rotates the intermediate', async () => {
    await page.getByRole('link', { name: 'Certificate authority' }).click();
    await page.getByRole('heading', { name: 'Certificate authority' }).waitFor();
    expect((await page.locator('pre.pem').textContent()).includes('BEGIN CERTIFICATE'), 'bundle shown');
    const before = await page.locator('main table tbody tr').count();
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Rotate intermediate' }).click();
    await page.getByRole('status').filter({ hasText: 'Rotated intermediate' }).waitFor();
    const after = await page.locator('main table tbody tr').count();
    expect(after === before + 1, `authorities ${before} -> ${after}`);
    await shot('11-ca', true);
  });

  await check('the admins view adds a user, sets a new password and removes the user', async () => {
    await page.getByRole('link', { name: 'Admins' }).click();
    await page.getByRole('heading', { name: 'Admins' }).waitFor();
    await page.getByLabel('User name').fill('ops');
    await page.getByLabel('Password', { exact: true }).fill('first-password-1');
    await page.getByRole('button', { name: 'Add admin' }).click();
    await page.getByRole('status').filter({ hasText: 'Added ops.' }).waitFor();
    await page.getByRole('row', { name: /^ops/ }).waitFor();
    // A password under the length rule is refused with the API's words, and nothing changes.
    await page.getByLabel('New password for ops').fill('short');
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByRole('alert').filter({ hasText: 'Password: must be' }).waitFor();
    await page.getByLabel('New password for ops').fill('second-password-2');
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByRole('status').filter({ hasText: 'New password set for ops' }).waitFor();
    await shot('12-admins', true);
    // The new password signs in; the old one does not.
    const other = await browser.newContext();
    const signIn = async (password) => (await other.request.post(`${url}/appliance/v1/admin/session`, {
      data: { user: 'ops', secret: password }, failOnStatusCode: false })).status();
    expect(await signIn('first-password-1') === 401, 'the old password still signs in');
    expect(await signIn('second-password-2') === 200, 'the new password does not sign in');
    await other.close();
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Remove ops' }).click();
    await page.getByRole('status').filter({ hasText: 'Removed ops.' }).waitFor();
    await page.locator('#no-admins').waitFor();
  });

  await check('a write without the CSRF token is refused', async () => {
    const r = await pageFetch('PUT', '/v20190125/meshes', { 'Content-Type': 'application/json' }, JSON.stringify({ meshName: 'csrf-mesh' }));
    expect(r.status === 403 && r.text.includes('X-CSRF-Token'), `${r.status} ${r.text}`);
    const wrong = await pageFetch('PUT', '/v20190125/meshes', { 'Content-Type': 'application/json', 'X-CSRF-Token': 'guess' }, JSON.stringify({ meshName: 'csrf-mesh' }));
    expect(wrong.status === 403, `wrong token: ${wrong.status}`);
    const list = await pageFetch('GET', '/v20190125/meshes');
    expect(!list.text.includes('csrf-mesh'), 'nothing was written');
  });

  await check('signing out ends the session', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/signin$/);
    const r = await pageFetch('GET', '/v20190125/meshes');
    expect(r.status === 403, `after sign-out: ${r.status}`);
  });

  await check('the page logged no script errors', async () => {
    expect(consoleErrors.length === 0, consoleErrors.join('\n'));
  });
} catch (e) {
  console.log(`FAIL ${step}: ${e.message}`);
  await shot('failure', true).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log('ALL PASSED');
