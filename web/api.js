// The page's only way to the control plane: same-origin fetches with the session cookie,
// and the session's CSRF token on every write (the server refuses writes without it).

let csrfToken = '';

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

// Reads who is signed in and the CSRF token. Returns null when there is no session.
export async function loadSession() {
  const response = await fetch('/appliance/v1/admin/session', { credentials: 'same-origin' });
  if (!response.ok) return null;
  const body = await response.json();
  csrfToken = body.csrfToken;
  return body;
}

export async function signOut() {
  await call('DELETE', '/appliance/v1/admin/session');
  window.location.assign('/signin');
}

// One API call. Resolves to the JSON body (or text); rejects with an ApiError carrying the
// API's message, so views can show App Mesh's own validation text.
export async function call(method, path, body) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = text;
  try { data = text ? JSON.parse(text) : {}; } catch (_) { /* PEM and other text */ }
  if (!response.ok) {
    const type = response.headers.get('x-amzn-ErrorType') || '';
    if (response.status === 401 || type.startsWith('MissingAuthenticationToken')) {
      window.location.assign('/signin');
    }
    throw new ApiError(response.status, type, (data && data.message) || `HTTP ${response.status}`);
  }
  return data;
}

// App Mesh's REST paths for each resource kind, so views never build URLs by hand.
const enc = encodeURIComponent;
export const KINDS = {
  virtualGateway: { title: 'Virtual gateway', list: 'virtualGateways', field: 'virtualGatewayName' },
  gatewayRoute: { title: 'Gateway route', list: 'gatewayRoutes', field: 'gatewayRouteName', parent: 'virtualGateway' },
  virtualService: { title: 'Virtual service', list: 'virtualServices', field: 'virtualServiceName' },
  virtualRouter: { title: 'Virtual router', list: 'virtualRouters', field: 'virtualRouterName' },
  route: { title: 'Route', list: 'routes', field: 'routeName', parent: 'virtualRouter' },
  virtualNode: { title: 'Virtual node', list: 'virtualNodes', field: 'virtualNodeName' },
};

export function collectionPath(mesh, kind, parent) {
  const k = KINDS[kind];
  if (k.parent) return `/v20190125/meshes/${enc(mesh)}/${k.parent}/${enc(parent)}/${k.list}`;
  return `/v20190125/meshes/${enc(mesh)}/${k.list}`;
}

export function itemPath(mesh, kind, name, parent) {
  if (kind === 'mesh') return `/v20190125/meshes/${enc(mesh)}`;
  return `${collectionPath(mesh, kind, parent)}/${enc(name)}`;
}

// Every page of a List call.
export async function listAll(path, key) {
  let items = [];
  let token = '';
  do {
    const page = await call('GET', token ? `${path}?nextToken=${enc(token)}` : path);
    items = items.concat(page[key] || []);
    token = page.nextToken || '';
  } while (token);
  return items;
}

// Every resource of a mesh, described (the topology needs the specs, not just the names).
export async function loadMesh(mesh) {
  const describe = (kind, name, parent) => call('GET', itemPath(mesh, kind, name, parent));
  const top = async (kind) => {
    const refs = await listAll(collectionPath(mesh, kind), KINDS[kind].list);
    return Promise.all(refs.map((r) => describe(kind, r[KINDS[kind].field])));
  };
  const [gateways, services, routers, nodes] = await Promise.all(
    ['virtualGateway', 'virtualService', 'virtualRouter', 'virtualNode'].map(top));
  const nested = async (kind, parents, parentField) => {
    const all = await Promise.all(parents.map(async (p) => {
      const name = p[parentField];
      const refs = await listAll(collectionPath(mesh, kind, name), KINDS[kind].list);
      return Promise.all(refs.map((r) => describe(kind, r[KINDS[kind].field], name)));
    }));
    return all.flat();
  };
  const [gatewayRoutes, routes] = await Promise.all([
    nested('gatewayRoute', gateways, 'virtualGatewayName'),
    nested('route', routers, 'virtualRouterName'),
  ]);
  return { gateways, gatewayRoutes, services, routers, routes, nodes };
}

// Connected proxies. The endpoint is newer than this page; a 404 means none are known.
export async function loadProxies() {
  try {
    const body = await call('GET', '/appliance/v1/proxies');
    return body.proxies || [];
  } catch (e) {
    if (e.status === 404) return [];
    throw e;
  }
}
