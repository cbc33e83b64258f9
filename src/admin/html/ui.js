// The API page: renders the JSON of #data (a resource, a collection or an
// error) with the schemas from the URL in #schemas.

const app = document.getElementById('app');
// The data on screen, so that a stale poll does not repaint a newer page.
let shown = null;

// The columns of a collection beyond id, name and state, per type.
const COLUMNS = {
  volume: ['storagePoolId', 'sizeBytes', 'usedBytes', 'mountCount', 'transitioningMessage'],
  snapshot: ['volumeId', 'sizeBytes', 'created'],
  backup: ['volumeName', 'backupTargetId', 'sizeBytes', 'created'],
  storagePool: ['backend', 'capacityBytes', 'usedBytes', 'volumeCount'],
  schema: ['collectionMethods', 'resourceMethods'],
};

function methods(list) {
  return Array.isArray(list) ? list.map(String) : [];
}

async function render(data, notice) {
  shown = data;
  let body;
  if (!data || typeof data !== 'object') {
    body = [h('p', {}, 'This answer has no data.')];
  } else if (data.type === 'error') {
    document.title = 'Error ' + (data.status ?? '') + ' · ballast';
    body = [h('h1', {}, 'Error ', String(data.status ?? '')), errorPanel(data)];
  } else if (data.type === 'collection') {
    body = await collectionView(data);
  } else {
    body = await resourceView(data);
  }
  if (shown !== data) return;
  // replaceChildren would print a null as text.
  app.replaceChildren(...[navBar(), notice, ...body, rawJson(data)].filter(Boolean));
}

// The JSON itself, printed only when opened (a list may be megabytes).
function rawJson(data) {
  const pre = h('pre', {});
  const details = h('details', { class: 'raw' }, h('summary', {}, 'JSON'), pre);
  details.addEventListener('toggle', () => {
    if (details.open && !pre.textContent) pre.textContent = JSON.stringify(data, null, 2);
  });
  return details;
}

function valueCell(key, v, field) {
  if (v === null || v === undefined) return h('span', { class: 'null' }, 'null');
  const target = field && referenceTarget(field.type);
  const ref = target && Schemas.byId.get(target);
  if (typeof v === 'string' && ref && ref.links && ref.links.collection) {
    return h('a', { href: ref.links.collection + '/' + encodeURIComponent(v) }, v);
  }
  if (typeof v === 'object') return h('pre', {}, JSON.stringify(v, null, 2));
  if (typeof v === 'number' && /Bytes$/.test(key)) return v + ' (' + bytes(v) + ')';
  return String(v);
}

async function resourceView(r) {
  const schema = await Schemas.get(r.type);
  const fields = (schema && schema.resourceFields) || {};
  const label = r.name || r.id || '';
  document.title = (r.type || 'resource') + ' ' + label + ' · ballast';
  // Who it is and how it is first; the rest as the server ordered it.
  const keys = [...new Set(['id', 'type', 'name', 'state', ...Object.keys(r)])]
    .filter((k) => k in r && k !== 'links' && k !== 'actions');
  const rows = keys.map((k) => [k, r[k]])
    .map(([k, v]) => h('tr', { 'data-field': k }, h('th', {}, k), h('td', {}, valueCell(k, v, fields[k]))));
  const links = Object.entries(r.links && typeof r.links === 'object' ? r.links : {})
    .filter(([, url]) => local(url))
    .map(([name, url]) => h('li', {}, h('a', { href: url, rel: name }, name)));
  const panel = h('div', { class: 'panel' });
  const parts = [
    h('h1', {}, h('span', { class: 'kind' }, String(r.type || 'resource')), ' ', String(label)),
    r.transitioning === 'yes' ? progressLine(r) : null,
    h('div', { class: 'bar' }, actionButtons(r, schema, panel)),
    panel,
    h('table', { class: 'fields' }, h('tbody', {}, rows)),
    r.type === 'volume' ? related('Snapshots', r.links && r.links.snapshots) : null,
    r.type === 'volume' ? related('Backups', r.links && r.links.backups) : null,
    links.length ? h('section', {}, h('h2', {}, 'Links'), h('ul', { class: 'links' }, links)) : null,
  ];
  if (r.transitioning === 'yes') watch(r, panel);
  return parts;
}

// A collection that belongs to the resource shown (a volume's snapshots
// and backups), listed under it once loaded.
function related(title, url) {
  if (!local(url)) return null;
  const body = h('p', {}, 'loading…');
  const section = h('section', { 'data-related': title.toLowerCase() }, h('h2', {}, title), body);
  api('GET', url).then((res) => {
    const rows = res.ok && res.json && Array.isArray(res.json.data) ? res.json.data : null;
    if (!rows) return body.replaceChildren(errorPanel(res.json || { status: res.status }));
    if (!rows.length) return body.replaceChildren('none');
    const cols = columns(rows[0].type, rows);
    body.replaceWith(h('table', { class: 'related' },
      h('thead', {}, h('tr', {}, cols.map((k) => h('th', {}, k)))),
      h('tbody', {}, rows.map((r) => h('tr', { 'data-id': String(r.id) }, cols.map((k) => tableCell(k, r)))))));
  });
  return section;
}

function progressLine(r) {
  const pct = percent(r);
  return h('p', { class: 'progress' },
    pct === null ? null : h('progress', { max: 100, value: pct }), ' ', String(r.transitioningMessage || 'working…'));
}

// While a resource is transitioning, reload it every 2 s; repaint when it
// settles, unless a form is open there.
function watch(r, panel) {
  const self = r.links && r.links.self;
  if (!local(self)) return;
  setTimeout(async () => {
    if (shown !== r) return;
    const res = await api('GET', self);
    if (shown !== r || !res.ok || !res.json) return;
    if (panel.childElementCount === 0) render(res.json);
    else watch(r, panel);
  }, 2000);
}

// Actions as people name them, with what each does (a volume's remove
// and Delete side by side must not look alike); the key is the type's
// action, or the action of any type.
const ACTIONS = {
  'volume.remove': ['Remove (to trash)', 'Moves the volume to the trash: Restore brings it back until it is purged'],
  'volume.restore': ['Restore (from trash)', 'Brings the removed volume back'],
  'volume.purge': ['Purge (for good)', "Deletes the removed volume's data for good"],
  'volume.reverttosnapshot': ['Revert to snapshot', "Makes the volume's content a snapshot's (unmounted volumes only)"],
  'volume.restorefrombackup': ['Restore from backup', "Replaces the volume's content with a backup's"],
  'volume.deallocate': ['Deallocate', 'Gives its storage back: the data goes'],
  'backup.restore': ['Restore to a volume', 'Makes a volume of the backup'],
};
const DELETES = {
  volume: ['Delete (to trash)', 'The same as Remove: the volume goes to the trash; Purge deletes its data for good'],
};

function actionLabel(type, name) {
  const known = ACTIONS[type + '.' + name];
  if (known) return known;
  const words = name.replace(/([a-z])(to|from)([a-z])/g, '$1 $2 $3');
  return [words.charAt(0).toUpperCase() + words.slice(1), ''];
}

function actionButtons(r, schema, panel) {
  const open = (form) => {
    panel.replaceChildren(form);
    const first = form.querySelector('input, select, textarea, button');
    if (first) first.focus();
  };
  const buttons = Object.entries(r.actions && typeof r.actions === 'object' ? r.actions : {})
    .filter(([, url]) => local(url))
    .map(([name, url]) => {
      const [label, hint] = actionLabel(r.type, name);
      return h('button', {
        type: 'button', 'data-action': name, title: hint || name,
        onclick: async () => open(await actionForm(r, schema, name, url)),
      }, label);
    });
  const self = r.links && r.links.self;
  const update = Object.entries((schema && schema.resourceFields) || {}).filter(([, f]) => f && f.update === true);
  if (schema && methods(schema.resourceMethods).includes('PUT') && update.length && local(self)) {
    buttons.push(h('button', {
      type: 'button', 'data-action': 'edit',
      onclick: () => open(schemaForm({
        title: 'Edit', fields: Object.fromEntries(update), values: r, submit: 'Save', changedOnly: true,
        send: (body) => api('PUT', self, body),
        done: (res) => render(res.json, h('p', { class: 'ok' }, 'Saved.')),
      })),
    }, 'Edit'));
  }
  if (schema && methods(schema.resourceMethods).includes('DELETE') && local(self)) {
    const [label, hint] = DELETES[r.type] || ['Delete', 'Deletes it for good'];
    buttons.push(h('button', {
      type: 'button', 'data-action': 'delete', class: 'danger', title: hint,
      onclick: () => open(deleteForm(r, schema, self)),
    }, label));
  }
  return buttons;
}

// An action's form, from its input schema; without a schema, a JSON body.
async function actionForm(r, schema, name, url) {
  const spec = (schema && schema.resourceActions && schema.resourceActions[name]) || null;
  let fields = null;
  if (spec) {
    const input = spec.input ? await Schemas.get(spec.input) : null;
    fields = (input && input.resourceFields) || (spec.input ? null : {});
  }
  return schemaForm({
    title: actionLabel(r.type, name)[0], fields, submit: actionLabel(r.type, name)[0],
    send: (body) => api('POST', url, body),
    done: showResult,
  });
}

// A success: the answer, then the resource it names, if any.
function showResult(res, out) {
  const next = local(res.json && res.json.links && res.json.links.self);
  out.replaceChildren(h('p', { class: 'ok' }, 'HTTP ' + res.status + (next ? ', opening the result…' : '')),
    h('pre', {}, JSON.stringify(res.json, null, 2)));
  if (next) location.assign(next);
}

// Delete asks once more, in the page (a modal dialog would block).
function deleteForm(r, schema, self) {
  const out = h('div', { class: 'answer' });
  const go = async () => {
    const res = await api('DELETE', self);
    if (!res.ok) {
      out.replaceChildren(errorPanel(res.json || { status: res.status }));
    } else if (res.json && res.json.links && local(res.json.links.self)) {
      render(res.json, h('p', { class: 'ok' }, 'Deleted.'));
    } else {
      const up = schema.links && schema.links.collection;
      if (local(up)) location.assign(local(up));
      else out.replaceChildren(h('p', { class: 'ok' }, 'Deleted.'));
    }
  };
  return h('div', {}, h('p', {}, 'Delete ' + (r.type || '') + ' ' + (r.name || r.id || '') + '?'),
    h('button', { type: 'button', class: 'danger', 'data-action': 'confirm-delete', onclick: go }, 'Really delete'), out);
}

function columns(type, rows) {
  let extra = COLUMNS[type];
  if (!extra) {
    const first = rows.find((r) => r && typeof r === 'object') || {};
    extra = Object.keys(first).filter((k) => first[k] === null || typeof first[k] !== 'object').slice(0, 6);
  }
  const all = [...new Set(['id', 'name', 'state', ...extra])].filter((k) => k !== 'type');
  return all.filter((k) => rows.some((r) => r && r[k] !== undefined));
}

function headerCell(c, k) {
  const sort = c.sort && typeof c.sort === 'object' ? c.sort : {};
  if (sort.name === k) {
    const arrow = sort.order === 'desc' ? ' ▼' : ' ▲';
    return h('th', { 'aria-sort': sort.order === 'desc' ? 'descending' : 'ascending' },
      local(sort.reverse) ? h('a', { href: sort.reverse, title: 'reverse the order' }, k + arrow) : k + arrow);
  }
  const link = c.sortLinks && c.sortLinks[k];
  return h('th', {}, local(link) ? h('a', { href: link, title: 'sort by ' + k }, k) : k);
}

function tableCell(k, r) {
  const v = r[k];
  // The name leads to the resource as the id does: people read names.
  if ((k === 'id' || k === 'name') && r.links && local(r.links.self)) return h('td', {}, h('a', { href: r.links.self }, cellText(k, v)));
  if (k === 'state') {
    const busy = r.transitioning === 'yes' ? ' …' : r.transitioning === 'error' ? ' !' : '';
    return h('td', { class: 'state state-' + String(v) }, cellText(k, v) + busy);
  }
  return h('td', {}, cellText(k, v));
}

function pager(c, count) {
  const p = c.pagination && typeof c.pagination === 'object' ? c.pagination : null;
  if (!p) return null;
  const links = ['first', 'previous', 'next', 'last']
    .filter((k) => local(p[k]))
    .map((k) => h('a', { href: p[k], rel: k }, k));
  const total = typeof p.total === 'number' ? ' of ' + p.total : '';
  return h('nav', { class: 'pager' }, count + total + (p.partial ? ' (partial)' : ''), ' ', links);
}

function createForm(c, schema) {
  const methodsOk = schema && methods(schema.collectionMethods).includes('POST');
  const types = c.createTypes && typeof c.createTypes === 'object' ? c.createTypes : {};
  const url = types[c.resourceType] || Object.values(types)[0] || (methodsOk && c.links && c.links.self);
  if (!local(url) || (schema && !methodsOk)) return null;
  const fields = schema
    ? Object.fromEntries(Object.entries(schema.resourceFields || {}).filter(([, f]) => f && f.create === true))
    : null;
  return h('section', { class: 'create' }, schemaForm({
    title: 'Create ' + c.resourceType, fields, submit: 'Create',
    send: (body) => api('POST', url, body),
    done: async (res) => {
      const made = res.json || {};
      const notice = h('p', { class: 'ok' }, 'Created ', h('a', { href: made.links && made.links.self }, String(made.name || made.id || '')), '.');
      const again = await api('GET', location.href);
      render(again.ok ? again.json : c, notice);
    },
  }));
}

async function collectionView(c) {
  const schema = await Schemas.get(c.resourceType);
  const rows = (Array.isArray(c.data) ? c.data : []).filter((r) => r && typeof r === 'object');
  document.title = String(c.resourceType || '') + ' collection · ballast';
  const cols = columns(c.resourceType, rows);
  const table = rows.length
    ? h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, cols.map((k) => headerCell(c, k)))),
      h('tbody', {}, rows.map((r) => h('tr', { 'data-id': String(r.id ?? '') }, cols.map((k) => tableCell(k, r))))))
    : h('p', { class: 'empty' }, 'None.');
  return [
    h('h1', {}, h('span', { class: 'kind' }, 'collection'), ' ', String(c.resourceType || '')),
    activeFilters(c),
    filterForm(c, schema),
    table,
    pager(c, rows.length),
    createForm(c, schema),
  ];
}

Schemas.load(readData('schemas'));
render(readData('data'));
