// Shared by the API pages and the dashboard. Everything the server sent is
// data: it reaches the page as text nodes and property values only, never
// as markup.
'use strict';

// The JSON the server put in an inert element (a script of type
// application/json, which never runs).
function readData(id) {
  const el = document.getElementById(id);
  if (!el) return null;
  try {
    return JSON.parse(el.textContent);
  } catch (e) {
    return { type: 'error', status: 0, code: 'NotJSON', message: 'the page data is not JSON: ' + e };
  }
}

// A URL of the API on this page's own origin: the path and query of `url`
// after `location.origin`. No scheme, host or user:password from the data
// reaches an anchor or a fetch (the browser resends the basic-auth
// credentials it holds for this origin by itself), and a javascript: or
// data: URL becomes no link at all.
function local(url) {
  if (typeof url !== 'string' || url === '') return null;
  let u;
  try {
    u = new URL(url, location.href);
  } catch (e) {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  return location.origin + u.pathname + u.search;
}

// An element with properties and children (nodes, or text). `href` always
// goes through local(); `on*` properties are handlers; `list` is read-only
// as a property and so set as an attribute.
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'href') {
      const url = local(v);
      if (url) el.href = url;
    } else if (k === 'class') {
      el.className = v;
    } else if (k.startsWith('on')) {
      el.addEventListener(k.slice(2), v);
    } else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'list' || !(k in el)) {
      el.setAttribute(k, String(v));
    } else {
      el[k] = v;
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// Text whose `quoted` parts are code, as the schemas write them: nodes
// for h(), never markup.
function prose(text) {
  return String(text).split('`').map((part, i) => (i % 2 ? h('code', {}, part) : part));
}

// One request to the API, as JSON. The Accept header is needed: a fetch
// says `*/*` from a browser's User-Agent, which the server answers with a
// page.
async function api(method, url, body) {
  const target = local(url);
  if (!target) throw new Error('not a URL of this API: ' + String(url));
  const init = {
    method,
    headers: { Accept: 'application/json' },
    credentials: 'same-origin',
    cache: 'no-store',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(target, init);
  } catch (e) {
    return { status: 0, ok: false, json: { type: 'error', code: 'NetworkError', message: String(e) } };
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (e) {
    json = { type: 'error', status: res.status, code: 'NotJSON', message: text.slice(0, 2000) };
  }
  return { status: res.status, ok: res.ok, json };
}

// Where the API lives on this origin (under a prefix behind a proxy): the
// schemas URL the server gave, less its /v1/schemas.
const API_ROOT = (local(readData('schemas')) || location.origin + '/v1/schemas').replace(/\/v1\/schemas$/, '');

// The schemas, from the URL the server gave, each fetched at most once.
const Schemas = {
  url: null,
  byId: new Map(),
  all: null,
  load(url) {
    this.url = local(url);
    this.all = this.url
      ? api('GET', this.url).then((res) => {
        for (const s of (res.ok && res.json && Array.isArray(res.json.data)) ? res.json.data : []) {
          if (s && typeof s.id === 'string') this.byId.set(s.id, s);
        }
      })
      : Promise.resolve();
    return this.all;
  },
  // The schema `id`, or null when there is none (the page then shows what
  // the data alone allows).
  async get(id) {
    if (typeof id !== 'string' || id === '') return null;
    await this.all;
    if (!this.byId.has(id) && this.url) {
      const res = await api('GET', this.url + '/' + encodeURIComponent(id));
      this.byId.set(id, res.ok && res.json && res.json.type === 'schema' ? res.json : null);
    }
    return this.byId.get(id) || null;
  },
};

// The x of a field type `reference[x]`.
function referenceTarget(type) {
  const m = /^reference\[(.+)\]$/.exec(String(type || ''));
  return m ? m[1] : null;
}

function bytes(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
}

// A value as short text for a table cell: sizes readable, lists and maps
// as compact JSON.
function cellText(key, v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number' && /Bytes$/.test(key)) return bytes(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// A running job's percent done, as the resource tells it
// (`transitioningProgress`, null when the job tells none).
function percent(r) {
  const p = r ? r.transitioningProgress : null;
  return typeof p === 'number' && isFinite(p) ? Math.max(0, Math.min(100, p)) : null;
}

// The error shapes of the API: status, code, message, detail, fieldName.
function errorPanel(e) {
  e = e && typeof e === 'object' ? e : { message: String(e) };
  const rows = ['status', 'code', 'message', 'detail', 'fieldName']
    .filter((k) => e[k] !== undefined && e[k] !== null && e[k] !== '')
    .map((k) => h('div', {}, h('dt', {}, k), h('dd', { class: 'err-' + k }, cellText(k, e[k]))));
  return h('div', { class: 'error', role: 'alert' }, h('dl', {}, rows));
}

// The top bar: the dashboard and the collections.
function navBar() {
  const links = ['volumes', 'snapshots', 'backups', 'storagepools', 'backuptargets', 'schemas'];
  return h('nav', { class: 'top' },
    h('a', { href: API_ROOT + '/', class: 'home' }, 'ballast'),
    links.map((c) => h('a', { href: API_ROOT + '/v1/' + c }, c)));
}
