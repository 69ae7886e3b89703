// The mesh as a picture: seven columns (gateways | gateway routes | virtual services |
// routers | routes | virtual nodes | endpoints), each box coloured by health, each edge
// labelled with live requests/s and error rate. Laid out here, drawn as inline SVG.

const SVG = 'http://www.w3.org/2000/svg';
const COLUMNS = ['Gateways', 'Gateway routes', 'Virtual services', 'Routers', 'Routes', 'Virtual nodes', 'Endpoints'];
const BOX_W = 130;
const BOX_H = 44;
const COL_W = 222; // box plus room for the edge labels between columns
const LABEL_W = 66;
const LINE = 13; // edge label line height
const ROW_H = 62;
const TOP = 44;
const HEALTH_TEXT = { ok: 'healthy', warn: 'degraded', bad: 'failing', unknown: 'no proxy' };
const HEALTH_MARK = { ok: '✓', warn: '!', bad: '✕', unknown: '?' };

const enc = encodeURIComponent;
const routeSpec = (spec) => spec.httpRoute || spec.http2Route || spec.grpcRoute || spec.tcpRoute || {};

// Health of one proxy identity from the proxies list, or null when none is connected.
function proxyHealth(proxies, identity) {
  const mine = proxies.filter((p) => p.identity === identity);
  if (mine.length === 0) return null;
  if (mine.some((p) => !p.healthy)) return 'bad';
  const nacked = mine.some((p) => p.lastNack && (p.configVersionAcked == null || p.lastNack.version > p.configVersionAcked));
  return nacked ? 'warn' : 'ok';
}

function trafficHealth(rate, fallback) {
  if (!rate || rate.rps === 0) return fallback;
  if (rate.errorRate > 0.05) return 'bad';
  if (rate.errorRate > 0) return 'warn';
  return 'ok';
}

function sumRates(rates) {
  const known = rates.filter(Boolean);
  if (known.length === 0) return null;
  const rps = known.reduce((a, r) => a + r.rps, 0);
  const eps = known.reduce((a, r) => a + r.rps * r.errorRate, 0);
  return { rps, errorRate: rps > 0 ? eps / rps : 0 };
}

// No rate: no proxy reports stats for this edge (none connected, or too soon to tell).
function rateText(rate) {
  if (!rate) return ['– req/s'];
  return [`${rate.rps.toFixed(1)} req/s`, `${(rate.errorRate * 100).toFixed(1)}% err`];
}

// Nodes and edges of the picture. `rates` maps a virtual node name to {rps, errorRate}.
export function buildGraph(mesh, data, proxies, rates) {
  const nodes = new Map();
  const edges = [];
  const add = (id, col, label, sub, href, health, kind) => {
    if (!nodes.has(id)) nodes.set(id, { id, col, label, sub, href, health, kind });
    return nodes.get(id);
  };
  const status = (r) => ((r.status || {}).status === 'ACTIVE' ? 'ok' : 'warn');
  const base = `#/mesh/${enc(mesh)}`;
  const nodeRate = (name) => rates[name] || null;
  const svcRate = {};
  const routerRoutes = {}; // router name -> its routes' rates
  const routeRate = {};

  for (const n of data.nodes) {
    const name = n.virtualNodeName;
    const health = proxyHealth(proxies, `mesh/${mesh}/virtualNode/${name}`) || trafficHealth(nodeRate(name), 'unknown');
    const ports = (n.spec.listeners || []).map((l) => `${l.portMapping.protocol}:${l.portMapping.port}`).join(' ');
    add(`vn:${name}`, 5, name, ports, `${base}/virtualNode/${enc(name)}`, health, 'Virtual node');
    const sd = n.spec.serviceDiscovery || {};
    const port = ((n.spec.listeners || [])[0] || { portMapping: {} }).portMapping.port;
    const registered = proxies.filter((p) => p.identity === `mesh/${mesh}/virtualNode/${name}`);
    const endpoints = registered.length > 0
      ? registered.map((p) => ({ label: p.advertise || p.address, health: p.healthy ? 'ok' : 'bad', sub: 'registered' }))
      : sd.dns ? [{ label: `${sd.dns.hostname}${port ? `:${port}` : ''}`, health: 'unknown', sub: 'DNS' }]
        : sd.awsCloudMap ? [{ label: `${sd.awsCloudMap.serviceName}.${sd.awsCloudMap.namespaceName}`, health: 'unknown', sub: 'Cloud Map' }]
          : [];
    for (const ep of endpoints) {
      add(`ep:${name}:${ep.label}`, 6, ep.label, ep.sub, null, ep.health, 'Endpoint');
      edges.push({ from: `vn:${name}`, to: `ep:${name}:${ep.label}`, rate: nodeRate(name) });
    }
  }
  for (const r of data.routes) {
    const router = r.virtualRouterName;
    const spec = routeSpec(r.spec);
    const targets = ((spec.action || {}).weightedTargets) || [];
    const total = targets.reduce((a, t) => a + t.weight, 0);
    const rate = sumRates(targets.filter((t) => t.weight > 0).map((t) => nodeRate(t.virtualNode)));
    const m = spec.match || {};
    const sub = m.prefix ? `prefix ${m.prefix}` : m.path ? `path ${m.path.exact || m.path.regex}` : m.serviceName ? `service ${m.serviceName}` : '';
    add(`rt:${router}/${r.routeName}`, 4, r.routeName, sub,
      `${base}/route/${enc(r.routeName)}?parent=${enc(router)}`, trafficHealth(rate, status(r)), 'Route');
    (routerRoutes[router] = routerRoutes[router] || []).push(rate);
    routeRate[`rt:${router}/${r.routeName}`] = rate;
    for (const t of targets) {
      const pct = total > 0 ? Math.round((t.weight / total) * 100) : 0;
      edges.push({
        from: `rt:${router}/${r.routeName}`, to: `vn:${t.virtualNode}`,
        rate: t.weight > 0 ? nodeRate(t.virtualNode) : null, weight: `w ${t.weight} · ${pct}%`,
      });
    }
  }
  for (const r of data.routers) {
    const name = r.virtualRouterName;
    const ports = (r.spec.listeners || []).map((l) => `${l.portMapping.protocol}:${l.portMapping.port}`).join(' ');
    add(`vr:${name}`, 3, name, ports, `${base}/virtualRouter/${enc(name)}`, status(r), 'Virtual router');
    for (const r2 of data.routes.filter((x) => x.virtualRouterName === name)) {
      const id = `rt:${name}/${r2.routeName}`;
      edges.push({ from: `vr:${name}`, to: id, rate: routeRate[id] || null });
    }
  }
  for (const s of data.services) {
    const name = s.virtualServiceName;
    const provider = s.spec.provider || {};
    add(`vs:${name}`, 2, name, provider.virtualRouter ? 'via router' : provider.virtualNode ? 'via node' : 'no provider',
      `${base}/virtualService/${enc(name)}`, status(s), 'Virtual service');
    if (provider.virtualRouter) {
      const router = provider.virtualRouter.virtualRouterName;
      svcRate[name] = sumRates(routerRoutes[router] || []);
      edges.push({ from: `vs:${name}`, to: `vr:${router}`, rate: svcRate[name] });
    } else if (provider.virtualNode) {
      svcRate[name] = nodeRate(provider.virtualNode.virtualNodeName);
      edges.push({ from: `vs:${name}`, to: `vn:${provider.virtualNode.virtualNodeName}`, rate: svcRate[name] });
    }
  }
  for (const g of data.gateways) {
    const name = g.virtualGatewayName;
    const health = proxyHealth(proxies, `mesh/${mesh}/virtualGateway/${name}`) || 'unknown';
    const ports = (g.spec.listeners || []).map((l) => `${l.portMapping.protocol}:${l.portMapping.port}`).join(' ');
    add(`vg:${name}`, 0, name, ports, `${base}/virtualGateway/${enc(name)}`, health, 'Virtual gateway');
  }
  for (const gr of data.gatewayRoutes) {
    const gw = gr.virtualGatewayName;
    const spec = routeSpec(gr.spec);
    const svc = ((((spec.action || {}).target || {}).virtualService) || {}).virtualServiceName;
    const m = spec.match || {};
    const sub = m.prefix ? `prefix ${m.prefix}` : m.serviceName ? `service ${m.serviceName}` : '';
    const id = `gr:${gw}/${gr.gatewayRouteName}`;
    const rate = svc ? svcRate[svc] || null : null;
    add(id, 1, gr.gatewayRouteName, sub, `${base}/gatewayRoute/${enc(gr.gatewayRouteName)}?parent=${enc(gw)}`,
      trafficHealth(rate, status(gr)), 'Gateway route');
    edges.push({ from: `vg:${gw}`, to: id, rate });
    if (svc) edges.push({ from: id, to: `vs:${svc}`, rate });
  }
  // Edges to things the mesh does not hold (a deleted node still named by a route) are
  // dropped rather than drawn to nowhere.
  return { nodes: [...nodes.values()], edges: edges.filter((e) => nodes.has(e.from) && nodes.has(e.to)) };
}

// Row order: each column sorted by the mean row of its parents, so edges mostly run
// straight and the walkthrough's two halves do not cross.
function layout(graph) {
  const byCol = COLUMNS.map(() => []);
  for (const n of graph.nodes) byCol[n.col].push(n);
  const parents = new Map(graph.nodes.map((n) => [n.id, []]));
  for (const e of graph.edges) parents.get(e.to).push(e.from);
  const row = new Map();
  byCol.forEach((col, c) => {
    const key = (n) => {
      const ps = parents.get(n.id).filter((p) => row.has(p));
      return ps.length ? ps.reduce((a, p) => a + row.get(p), 0) / ps.length : (c === 0 ? 0 : 1e9);
    };
    col.sort((a, b) => key(a) - key(b) || a.label.localeCompare(b.label));
    col.forEach((n, i) => row.set(n.id, i));
  });
  const rows = Math.max(1, ...byCol.map((c) => c.length));
  for (const n of graph.nodes) {
    const count = byCol[n.col].length;
    // Short columns are centred against the tallest.
    const offset = ((rows - count) * ROW_H) / 2;
    n.x = 10 + n.col * COL_W;
    n.y = TOP + offset + row.get(n.id) * ROW_H;
  }
  return { width: 20 + (COLUMNS.length - 1) * COL_W + BOX_W, height: TOP + rows * ROW_H - 8 };
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Fits a name in a box. Hyphenated names differ at the end (`colorteller-white-vn`), so
// those keep their tail; DNS names differ in their first label, so those keep their head.
// The full name is in the box's title and aria-label, and in the lists below the picture.
function clip(text, max) {
  if (text.length <= max) return text;
  const dot = text.indexOf('.');
  if (dot > 0) {
    const head = text.slice(0, dot);
    return head.length < max - 2 ? `${head}.…` : `${head.slice(0, max - 1)}…`;
  }
  return `…${text.slice(text.length - (max - 1))}`;
}

// The SVG element for a graph.
export function renderGraph(graph, title) {
  const size = layout(graph);
  const svg = el('svg', {
    viewBox: `0 0 ${size.width} ${size.height}`, class: 'topology', role: 'group',
    'aria-label': title, width: size.width, height: size.height,
  });
  COLUMNS.forEach((c, i) => svg.append(el('text', { x: 10 + i * COL_W, y: 18, class: 'col-head' }, c)));
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const edgeLayer = el('g', { class: 'edges' });
  const labelLayer = el('g', { class: 'edge-labels' });
  for (const e of graph.edges) {
    const a = byId.get(e.from);
    const b = byId.get(e.to);
    const [x1, y1, x2, y2] = [a.x + BOX_W, a.y + BOX_H / 2, b.x, b.y + BOX_H / 2];
    // The curve bends before the label, then runs straight through it into the box.
    const xe = x2 - LABEL_W - 6;
    const mx = (x1 + xe) / 2;
    const traffic = rateText(e.rate);
    const idle = e.weight !== undefined && e.weight.startsWith('w 0 ');
    const g = el('g', { class: `edge${e.rate && e.rate.errorRate > 0.05 ? ' edge-bad' : ''}${idle ? ' edge-idle' : ''}` });
    g.append(el('title', {}, `${a.kind} ${a.label} → ${b.kind} ${b.label}: ${e.weight ? `${e.weight}, ` : ''}${traffic.join(', ')}`));
    g.append(el('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${xe},${y2} L${x2},${y2}` }));
    edgeLayer.append(g);
    // Labels sit just left of their target, centred on its row: rows are ROW_H apart, so
    // labels never overlap, and fan-outs are told apart where they arrive. A target with
    // several incoming edges stacks their labels.
    const incoming = graph.edges.filter((x) => x.to === e.to);
    const k = incoming.indexOf(e);
    const lines = e.weight ? [e.weight, ...traffic] : traffic;
    const h = LINE * lines.length + 4;
    const lx = x2 - LABEL_W / 2 - 3;
    const ly = y2 + (k - (incoming.length - 1) / 2) * (h + 2);
    const label = el('g', { class: 'edge-label', 'aria-hidden': 'true' });
    label.append(el('rect', { x: lx - LABEL_W / 2, y: ly - h / 2, width: LABEL_W, height: h, rx: 3 }));
    lines.forEach((line, i) => label.append(el('text', { x: lx, y: ly - h / 2 + 2 + LINE * (i + 1) - 3 }, line)));
    labelLayer.append(label);
  }
  svg.append(edgeLayer);
  for (const n of graph.nodes) {
    const state = HEALTH_TEXT[n.health];
    const box = el(n.href ? 'a' : 'g', {
      class: `node n-${n.health}`, 'aria-label': `${n.kind} ${n.label}, ${state}${n.sub ? `, ${n.sub}` : ''}`,
      'data-id': n.id,
    });
    if (n.href) box.setAttribute('href', n.href);
    else { box.setAttribute('role', 'img'); box.setAttribute('tabindex', '0'); }
    box.append(el('title', {}, `${n.kind} ${n.label} (${state})`));
    box.append(el('rect', { x: n.x, y: n.y, width: BOX_W, height: BOX_H, rx: 6 }));
    box.append(el('text', { x: n.x + 8, y: n.y + 18, class: 'node-name' }, clip(n.label, 16)));
    const sub = `${HEALTH_MARK[n.health]} ${state}${n.sub ? ` · ${n.sub}` : ''}`;
    box.append(el('text', { x: n.x + 8, y: n.y + 35, class: 'node-sub' }, sub.length > 23 ? `${sub.slice(0, 22)}…` : sub));
    svg.append(box);
  }
  svg.append(labelLayer);
  return svg;
}

// A legend, so colour is never the only cue.
export function legend() {
  const div = document.createElement('p');
  div.className = 'legend';
  for (const [k, text] of Object.entries(HEALTH_TEXT)) {
    const s = document.createElement('span');
    s.className = `swatch n-${k}`;
    s.textContent = `${HEALTH_MARK[k]} ${text}`;
    div.append(s);
  }
  return div;
}
