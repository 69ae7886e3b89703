// The page's views. Each takes the <main> element and returns an object with an optional
// `refresh(live)` the app calls when the store version or the proxies' stats change.

import { call, listAll, loadMesh, collectionPath, itemPath, KINDS } from './api.js';
import { buildGraph, renderGraph, legend } from './topology.js';
import { JsonEditor } from './editor.js';

const enc = encodeURIComponent;

// Small DOM builder: h('p', {class: 'x'}, 'text', child...). Text is always set as text.
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

export function when(epochSecs) {
  if (epochSecs == null) return '–';
  const d = typeof epochSecs === 'number' ? new Date(epochSecs * 1000) : new Date(epochSecs);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, `${e.type ? `${e.type.split(':')[0]}: ` : ''}${e.message}`);
}

export function status(text, ok = true) {
  return h('p', { class: ok ? 'ok-text' : 'error', role: ok ? 'status' : 'alert' }, text);
}

// ---- Meshes ------------------------------------------------------------------------------

export async function meshesView(main) {
  const meshes = await listAll('/v20190125/meshes', 'meshes');
  const input = h('input', { id: 'new-mesh', placeholder: 'mesh name', required: true });
  const out = h('div');
  const form = h('form', { class: 'inline', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await call('PUT', '/v20190125/meshes', { meshName: input.value.trim(), spec: {} });
      window.location.hash = `#/mesh/${enc(input.value.trim())}`;
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } }, h('label', { for: 'new-mesh' }, 'New mesh'), input, h('button', { type: 'submit' }, 'Create mesh'));
  main.replaceChildren(
    h('h1', {}, 'Meshes'),
    meshes.length === 0 ? h('p', { class: 'muted' }, 'No meshes yet.')
      : h('ul', { class: 'cards' }, meshes.map((m) => h('li', {},
        h('a', { href: `#/mesh/${enc(m.meshName)}`, class: 'card-link' }, m.meshName),
        h('span', { class: 'muted' }, ` version ${m.version} · updated ${when(m.lastUpdatedAt)}`)))),
    form, out);
  return { refresh: () => meshesView(main) };
}

// ---- One mesh: picture and resources -----------------------------------------------------

export async function meshView(main, mesh, live) {
  let data = await loadMesh(mesh);
  const picture = h('div', { class: 'picture' });
  const draw = () => {
    const graph = buildGraph(mesh, data, live.proxies, live.rates);
    picture.replaceChildren(renderGraph(graph, `Topology of mesh ${mesh}`));
  };
  draw();
  const list = (kind, items, parentField) => h('section', { 'aria-labelledby': `h-${kind}` },
    h('h3', { id: `h-${kind}` }, `${KINDS[kind].title}s`),
    items.length === 0 ? h('p', { class: 'muted' }, 'none') : h('ul', {}, items.map((r) => {
      const name = r[KINDS[kind].field];
      const parent = parentField ? r[parentField] : null;
      const href = `#/mesh/${enc(mesh)}/${kind}/${enc(name)}${parent ? `?parent=${enc(parent)}` : ''}`;
      return h('li', {}, h('a', { href }, parent ? `${parent} / ${name}` : name));
    })),
    kind === 'route' || kind === 'gatewayRoute'
      ? h('p', {}, (kind === 'route' ? data.routers : data.gateways).map((p) => {
        const pname = p[kind === 'route' ? 'virtualRouterName' : 'virtualGatewayName'];
        return h('a', { class: 'button small', href: `#/mesh/${enc(mesh)}/new/${kind}?parent=${enc(pname)}` }, `Add to ${pname}`);
      }))
      : h('p', {}, h('a', { class: 'button small', href: `#/mesh/${enc(mesh)}/new/${kind}` }, `Create ${KINDS[kind].title.toLowerCase()}`)));
  main.replaceChildren(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Meshes'), ' / ', mesh),
    h('h1', {}, `Mesh ${mesh}`, ' ', h('a', { class: 'button small', href: `#/mesh/${enc(mesh)}/mesh/${enc(mesh)}` }, 'Mesh JSON')),
    h('h2', {}, 'Topology'),
    legend(),
    picture,
    h('p', { class: 'muted' }, 'Edge labels: route weights, then requests/s and error rate from the proxies’ stats (refreshed every 2 s).'),
    h('h2', {}, 'Resources'),
    h('div', { class: 'grid' },
      list('virtualGateway', data.gateways),
      list('gatewayRoute', data.gatewayRoutes, 'virtualGatewayName'),
      list('virtualService', data.services),
      list('virtualRouter', data.routers),
      list('route', data.routes, 'virtualRouterName'),
      list('virtualNode', data.nodes)));
  return {
    refresh: async (what) => {
      if (what === 'store') data = await loadMesh(mesh);
      draw();
    },
  };
}

// ---- One resource: JSON, editor, delete; weights for routes ------------------------------

const BODY_TEMPLATES = {
  mesh: { meshName: '', spec: {} },
  virtualNode: { virtualNodeName: '', spec: { listeners: [{ portMapping: { port: 8080, protocol: 'http' } }], serviceDiscovery: { dns: { hostname: 'app.local' } } } },
  virtualRouter: { virtualRouterName: '', spec: { listeners: [{ portMapping: { port: 8080, protocol: 'http' } }] } },
  virtualService: { virtualServiceName: '', spec: { provider: { virtualRouter: { virtualRouterName: '' } } } },
  route: { routeName: '', spec: { httpRoute: { match: { prefix: '/' }, action: { weightedTargets: [{ virtualNode: '', weight: 1 }] } } } },
  virtualGateway: { virtualGatewayName: '', spec: { listeners: [{ portMapping: { port: 8080, protocol: 'http' } }] } },
  gatewayRoute: { gatewayRouteName: '', spec: { httpRoute: { match: { prefix: '/' }, action: { target: { virtualService: { virtualServiceName: '' } } } } } },
};

export async function createView(main, mesh, kind, parent) {
  const title = kind === 'mesh' ? 'Mesh' : KINDS[kind].title;
  const op = title.split(' ').map((w) => w[0].toUpperCase() + w.slice(1)).join('');
  const out = h('div');
  const holder = h('div');
  main.replaceChildren(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Meshes'), ' / ', h('a', { href: `#/mesh/${enc(mesh)}` }, mesh)),
    h('h1', {}, `New ${title.toLowerCase()}${parent ? ` in ${parent}` : ''}`),
    h('p', { class: 'muted' }, `The body of App Mesh’s Create${op} call.`),
    holder, out);
  const editor = new JsonEditor(holder, { id: 'create-editor', label: `Create ${title} request body (JSON)`, value: BODY_TEMPLATES[kind] });
  const save = h('button', { type: 'button', onclick: async () => {
    out.replaceChildren();
    let body;
    try { body = editor.value(); } catch (e) { editor.showError(e.message); return; }
    try {
      await call('PUT', collectionPath(mesh, kind, parent), body);
      const name = body[KINDS[kind].field];
      window.location.hash = `#/mesh/${enc(mesh)}/${kind}/${enc(name)}${parent ? `?parent=${enc(parent)}` : ''}`;
    } catch (e) { editor.showError(e.message); out.replaceChildren(errorBox(e)); }
  } }, 'Create');
  main.append(h('p', {}, save));
}

export async function resourceView(main, mesh, kind, name, parent) {
  const path = itemPath(mesh, kind, name, parent);
  let resource = await call('GET', path);
  const title = kind === 'mesh' ? 'Mesh' : KINDS[kind].title;
  const op = title.split(' ').map((w) => w[0].toUpperCase() + w.slice(1)).join('');
  const json = h('pre', { class: 'json', tabindex: '0', 'aria-label': `${title} ${name} as App Mesh JSON` });
  const out = h('div', { 'aria-live': 'polite' });
  const holder = h('div');
  const weights = h('div');
  const meta = h('p', { class: 'muted' });
  let editor = null;
  // Shows `resource` everywhere on the page; the editor only if it holds no unsaved edits.
  const render = () => {
    json.textContent = JSON.stringify(resource, null, 2);
    meta.textContent = `Version ${resource.metadata.version} · ${resource.status.status} · ${resource.metadata.arn}`;
    if (editor && !editor.dirty) {
      editor.area.value = JSON.stringify({ spec: resource.spec }, null, 2);
      editor.renderGutter();
    }
  };
  render();
  main.replaceChildren(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Meshes'), ' / ',
      h('a', { href: `#/mesh/${enc(mesh)}` }, mesh), parent ? ` / ${parent}` : ''),
    h('h1', {}, `${title} ${name}`),
    meta,
    weights);
  if (kind === 'route') weightsPanel(weights, path, () => resource, (r) => { resource = r; render(); });
  editor = new JsonEditor(holder, { id: 'spec-editor', label: `Update ${title} request body (JSON)`, value: { spec: resource.spec } });
  const save = h('button', { type: 'button', id: 'save-spec', onclick: async () => {
    out.replaceChildren();
    let body;
    try { body = editor.value(); } catch (e) { editor.showError(e.message); return; }
    try {
      resource = await call('PUT', path, body);
      editor.dirty = false;
      render();
      out.replaceChildren(status(`Saved: version ${resource.metadata.version}.`));
    } catch (e) { editor.showError(e.message); out.replaceChildren(errorBox(e)); }
  } }, `Save (Update${op})`);
  const del = h('button', { type: 'button', class: 'danger', onclick: async () => {
    if (!window.confirm(`Delete ${title.toLowerCase()} ${name}? App Mesh refuses while other resources use it.`)) return;
    try {
      await call('DELETE', path);
      window.location.hash = kind === 'mesh' ? '#/' : `#/mesh/${enc(mesh)}`;
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } }, `Delete ${title.toLowerCase()}`);
  main.append(
    h('div', { class: 'two' },
      h('section', { 'aria-labelledby': 'h-edit' }, h('h2', { id: 'h-edit' }, 'Edit'), holder, h('p', {}, save, ' ', del), out),
      h('section', { 'aria-labelledby': 'h-json' }, h('h2', { id: 'h-json' }, 'App Mesh JSON'), json)));
  return {
    refresh: async (what) => {
      if (what !== 'store') return;
      const fresh = await call('GET', path);
      if (fresh.metadata.version === resource.metadata.version) return;
      resource = fresh;
      render();
      if (editor.dirty) out.replaceChildren(status(`Changed elsewhere: now version ${fresh.metadata.version}. Your edits are kept; saving overwrites.`, false));
    },
  };
}

// Traffic shifting: one slider (and number box) per weighted target; saving sends one
// UpdateRoute with the route's spec and only the weights changed.
function weightsPanel(container, path, current, saved) {
  const member = ['httpRoute', 'http2Route', 'grpcRoute', 'tcpRoute'].find((m) => current().spec[m]);
  if (!member) return;
  const targets = ((current().spec[member].action || {}).weightedTargets) || [];
  if (targets.length === 0) return;
  const bar = h('div', { class: 'split', 'aria-hidden': 'true' });
  const out = h('div', { 'aria-live': 'polite' });
  const rows = targets.map((t, i) => {
    const id = `weight-${i}`;
    const slider = h('input', { type: 'range', id, min: '0', max: '100', step: '1', value: String(t.weight), 'aria-label': `Weight of ${t.virtualNode}` });
    const number = h('input', { type: 'number', id: `${id}-n`, min: '0', max: '100', value: String(t.weight), class: 'num', 'aria-label': `Weight of ${t.virtualNode} (number)` });
    const share = h('output', { for: id, class: 'share' });
    slider.addEventListener('input', () => { number.value = slider.value; update(); });
    number.addEventListener('input', () => { slider.value = number.value; update(); });
    return { t, slider, number, share, row: h('div', { class: 'weight-row' }, h('label', { for: id }, t.virtualNode), slider, number, share) };
  });
  function weightsNow() { return rows.map((r) => Math.max(0, Math.min(100, parseInt(r.number.value, 10) || 0))); }
  function update() {
    const w = weightsNow();
    const total = w.reduce((a, b) => a + b, 0);
    bar.replaceChildren(...rows.map((r, i) => {
      const pct = total ? (w[i] / total) * 100 : 0;
      r.share.textContent = `${Math.round(pct)}%`;
      const seg = h('span', { class: `seg seg-${i % 6}` }, pct >= 12 ? `${r.t.virtualNode} ${Math.round(pct)}%` : '');
      seg.style.width = `${pct}%`;
      return seg;
    }));
  }
  const save = h('button', { type: 'button', id: 'save-weights', onclick: async () => {
    const w = weightsNow();
    if (w.every((x) => x === 0)) { out.replaceChildren(status('At least one weight must be above 0.', false)); return; }
    const spec = JSON.parse(JSON.stringify(current().spec));
    spec[member].action.weightedTargets.forEach((t, i) => { t.weight = w[i]; });
    try {
      const r = await call('PUT', path, { spec });
      saved(r);
      out.replaceChildren(status(`Saved weights ${w.join(':')} (UpdateRoute, version ${r.metadata.version}).`));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } }, 'Save weights');
  update();
  container.replaceChildren(h('section', { class: 'weights', 'aria-labelledby': 'h-weights' },
    h('h2', { id: 'h-weights' }, 'Traffic shifting'),
    h('p', { class: 'muted' }, 'Weights are relative (0–100 each). Saving writes one UpdateRoute.'),
    ...rows.map((r) => r.row), bar, h('p', {}, save), out));
}

// ---- Proxies and the CA ------------------------------------------------------------------

export async function proxiesView(main, live) {
  const draw = () => {
    const proxies = live.proxies;
    main.replaceChildren(h('h1', {}, 'Proxies'),
      proxies.length === 0 ? h('p', { class: 'muted', id: 'no-proxies' }, 'No proxies connected.')
        : h('table', {}, h('caption', {}, `${proxies.length} connected`),
          h('thead', {}, h('tr', {}, ['Identity', 'Address', 'Health', 'Config sent / acked', 'Last nack', 'Certificate expires'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, proxies.map((p) => h('tr', {},
            h('th', { scope: 'row' }, p.identity),
            h('td', {}, p.address, p.advertise ? h('div', { class: 'muted' }, `advertises ${p.advertise}`) : ''),
            h('td', {}, h('span', { class: p.healthy ? 'ok-text' : 'error' }, p.healthy ? '✓ healthy' : '✕ unhealthy'),
              h('div', { class: 'muted' }, `since ${when(p.connectedAt)}`)),
            h('td', {}, `${p.configVersionSent ?? '–'} / ${p.configVersionAcked ?? '–'}`),
            h('td', {}, p.lastNack ? `v${p.lastNack.version} at ${when(p.lastNack.at)}: ${p.lastNack.error}` : 'none'),
            h('td', {}, when(p.certificateExpiresAt)))))));
  };
  draw();
  return { refresh: draw };
}

export async function caView(main, message) {
  const [ca, bundle] = await Promise.all([
    call('GET', '/appliance/v1/certificate-authority'),
    call('GET', '/appliance/v1/certificate-authority/bundle'),
  ]);
  const c = ca.CertificateAuthority;
  const out = h('div', { 'aria-live': 'polite' }, message ? status(message) : '');
  const rotate = (root) => h('button', { type: 'button', class: root ? 'danger' : '', onclick: async () => {
    const what = root ? 'the root (every proxy must pick up the new bundle)' : 'the intermediate';
    if (!window.confirm(`Rotate ${what}? The old one stays trusted until its leaves expire.`)) return;
    try {
      await call('POST', '/appliance/v1/certificate-authority/rotate', { Root: root });
      await caView(main, `Rotated ${root ? 'root' : 'intermediate'}.`);
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } }, root ? 'Rotate root' : 'Rotate intermediate');
  main.replaceChildren(h('h1', {}, 'Certificate authority'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'ARN'), h('dd', {}, c.Arn),
      h('dt', {}, 'Trust domain'), h('dd', {}, c.TrustDomain),
      h('dt', {}, 'Root expires'), h('dd', {}, when(c.NotAfter)),
      h('dt', {}, 'Last change'), h('dd', {}, when(c.LastStateChangeAt))),
    h('h2', {}, 'Rotation state'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Authority', 'Role', 'State', 'Expires', 'Leaves the bundle'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, (c.Authorities || []).map((a) => h('tr', {},
        h('th', { scope: 'row' }, a.id), h('td', {}, a.role), h('td', {}, a.status),
        h('td', {}, when(a.notAfter)), h('td', {}, a.leavesBundleAt ? when(a.leavesBundleAt) : '–'))))),
    h('p', {}, rotate(false), ' ', rotate(true)), out,
    h('h2', {}, 'Trust bundle'),
    h('pre', { class: 'json pem', tabindex: '0', 'aria-label': 'CA trust bundle (PEM)' }, typeof bundle === 'string' ? bundle : JSON.stringify(bundle)));
  return {};
}
