// The app: session, hash routing, and live updates. Every 2 s it polls the store version
// (a change redraws the view from the API) and the proxies' cumulative stats (their
// deltas become the requests/s and error rates on the picture's edges).

import { loadSession, signOut, call, loadProxies } from './api.js';
import { meshesView, meshView, resourceView, createView, proxiesView, caView, h } from './views.js';
import { adminsView } from './admins.js';

const POLL_MS = 2000;
const main = document.getElementById('main');
const live = { proxies: [], rates: {}, version: null };
let view = null;
let previous = null; // last stats sample: {at, totals: {node: {requests, errors}}}

function route() {
  const [path, query] = window.location.hash.replace(/^#/, '').split('?');
  const parts = (path || '/').split('/').filter(Boolean).map(decodeURIComponent);
  const parent = new URLSearchParams(query || '').get('parent');
  return { parts, parent };
}

async function render() {
  const { parts, parent } = route();
  const section = ['proxies', 'ca', 'admins'].includes(parts[0]) ? parts[0] : 'meshes';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    if (parts[0] === 'proxies') view = await proxiesView(main, live);
    else if (parts[0] === 'ca') view = await caView(main);
    else if (parts[0] === 'admins') view = await adminsView(main);
    else if (parts[0] === 'mesh' && parts.length === 2) view = await meshView(main, parts[1], live);
    else if (parts[0] === 'mesh' && parts[2] === 'new') view = await createView(main, parts[1], parts[3], parent);
    else if (parts[0] === 'mesh' && parts.length === 4) view = await resourceView(main, parts[1], parts[2], parts[3], parent);
    else view = await meshesView(main);
    document.title = `${main.querySelector('h1')?.textContent || 'appliance'} · appliance`;
  } catch (e) {
    view = null;
    main.replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

// Per virtual node: requests/s and error rate since the last sample, summed over proxies.
function sampleRates(proxies) {
  const totals = {};
  for (const p of proxies) {
    for (const [node, s] of Object.entries((p.stats || {}).targets || {})) {
      const t = totals[node] || (totals[node] = { requests: 0, errors: 0 });
      t.requests += s.requests || 0;
      t.errors += s.errors || 0;
    }
  }
  const at = performance.now();
  const rates = {};
  if (previous) {
    const secs = (at - previous.at) / 1000;
    for (const [node, t] of Object.entries(totals)) {
      const before = previous.totals[node] || { requests: 0, errors: 0 };
      // A proxy restart resets its counters; a negative delta counts as a fresh start.
      const dr = t.requests >= before.requests ? t.requests - before.requests : t.requests;
      const de = t.errors >= before.errors ? t.errors - before.errors : t.errors;
      rates[node] = { rps: secs > 0 ? dr / secs : 0, errorRate: dr > 0 ? de / dr : 0 };
    }
  }
  previous = { at, totals };
  return rates;
}

async function poll() {
  const indicator = document.getElementById('live');
  try {
    const [{ version }, proxies] = await Promise.all([
      call('GET', '/appliance/v1/admin/version'),
      loadProxies(),
    ]);
    live.proxies = proxies;
    live.rates = sampleRates(proxies);
    const changed = live.version !== null && version !== live.version;
    live.version = version;
    indicator.textContent = `live · store v${version}`;
    if (view && view.refresh) await view.refresh(changed ? 'store' : 'stats');
  } catch (e) {
    indicator.textContent = `offline: ${e.message}`;
  }
  window.setTimeout(poll, POLL_MS);
}

async function start() {
  const session = await loadSession();
  if (!session) {
    window.location.assign('/signin');
    return;
  }
  document.getElementById('who').textContent = `signed in as ${session.user}`;
  document.getElementById('signout').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', async () => {
    await render();
    main.focus(); // screen readers and keyboard users land on the new content
  });
  await render();
  poll();
}

start();
