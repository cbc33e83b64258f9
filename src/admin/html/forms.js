// Forms built from schemas: an action's input, a create, an edit, and the
// filter bar of a collection.

let fieldSeq = 0;

// The field types a line of text holds. The others that are not numbers,
// booleans or options (maps, lists, nested types) get a textarea: lines
// of key=value, lines, or JSON.
const TEXT_TYPES = ['string', 'password', 'date', 'blob'];

// The input for one field (a schema's resourceFields entry) holding
// `value`, and what must sit beside it (a reference's suggestions).
function fieldInput(name, field, value) {
  const type = String(field.type || 'string');
  const initial = value !== undefined && value !== null ? value : field.default;
  const id = 'field-' + (++fieldSeq);
  let input;
  let extra = null;
  if (type === 'boolean') {
    input = h('input', { type: 'checkbox', checked: initial === true });
  } else if (type === 'int' || type === 'float') {
    const step = type === 'int' ? '1' : 'any';
    input = h('input', { type: 'number', step, value: initial ?? '', min: field.min, max: field.max });
  } else if (type === 'enum' || Array.isArray(field.options)) {
    const options = Array.isArray(field.options) ? field.options : [];
    input = h('select', {},
      h('option', { value: '' }, ''),
      options.map((o) => h('option', { value: String(o), selected: String(o) === String(initial) }, String(o))));
  } else if (!TEXT_TYPES.includes(type) && !referenceTarget(type)) {
    // map[x], array[x], json, and nested types (a schema of their own).
    input = h('textarea', { rows: 3, value: structuredText(type, initial), placeholder: structuredHint(type) });
  } else {
    input = h('input', { type: type === 'password' ? 'password' : 'text', value: initial ?? '' });
    if (typeof field.maxLength === 'number') input.maxLength = field.maxLength;
    const target = referenceTarget(type);
    if (target) {
      extra = h('datalist', { id: id + '-options' });
      input.setAttribute('list', extra.id);
      fillReference(extra, target);
    }
  }
  input.id = id;
  input.name = name;
  // What the textarea holds when the type is unknown: JSON.
  input.dataset.type = input.tagName === 'TEXTAREA' && !/^(map|array)\[/.test(type) ? 'json' : type;
  return { input, extra };
}

function structuredText(type, v) {
  if (v === undefined || v === null) return '';
  if (type.startsWith('map[') && typeof v === 'object') {
    return Object.entries(v).map(([k, x]) => k + '=' + x).join('\n');
  }
  if (type.startsWith('array[') && Array.isArray(v)) return v.join('\n');
  return JSON.stringify(v, null, 2);
}

function structuredHint(type) {
  if (type.startsWith('map[')) return 'key=value, one per line';
  if (type.startsWith('array[')) return 'one per line';
  return 'JSON';
}

// Suggestions for a reference field: the first page of the referenced
// collection (`schemas[x].links.collection`).
async function fillReference(list, target) {
  const schema = await Schemas.get(target);
  const url = schema && schema.links && schema.links.collection;
  if (!url) return;
  const res = await api('GET', url);
  const items = res.ok && res.json && Array.isArray(res.json.data) ? res.json.data : [];
  list.replaceChildren(...items.slice(0, 1000).map((r) =>
    h('option', { value: String(r.id), label: r.name ? String(r.name) : String(r.id) })));
}

class FieldError extends Error {
  constructor(field, message) {
    super(field + ': ' + message);
    this.field = field;
  }
}

// An input's value to send, or undefined when left empty; `cleared` is
// what an emptied field means when editing (empty means "unset" then).
function readInput(input, cleared) {
  const type = input.dataset.type;
  if (type === 'boolean') return input.checked;
  const text = input.value;
  if (text.trim() === '') return cleared;
  if (type === 'int' || type === 'float') {
    const n = Number(text);
    if (!isFinite(n) || (type === 'int' && !Number.isInteger(n))) {
      throw new FieldError(input.name, 'not a ' + (type === 'int' ? 'whole ' : '') + 'number');
    }
    return n;
  }
  if (type.startsWith('map[')) {
    const map = {};
    for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf('=');
      if (at < 1) throw new FieldError(input.name, 'each line is key=value: ' + line);
      map[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return map;
  }
  if (type.startsWith('array[')) return text.split('\n').map((l) => l.trim()).filter(Boolean);
  if (type === 'json') {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new FieldError(input.name, 'not JSON: ' + e.message);
    }
  }
  return text;
}

function emptyValue(field) {
  const type = String(field.type || '');
  if (field.nullable) return null;
  if (type.startsWith('map[')) return {};
  if (type.startsWith('array[')) return [];
  return '';
}

// A form over `fields` (name → field schema), or over one JSON body when
// `fields` is null (no schema to build it from). `send(body)` resolves to
// an api() answer; `done(answer, out)` runs on success, and a failure shows
// in the form, at the field it names. With `changedOnly`, only edited
// fields are sent (an update).
function schemaForm({ title, fields, values, submit, send, done, changedOnly }) {
  // Required fields first, then by name.
  const known = fields
    ? Object.entries(fields).sort(([a, fa], [b, fb]) => Number(!!(fb && fb.required)) - Number(!!(fa && fa.required)) || a.localeCompare(b))
    : [['body', { type: 'json', description: 'the JSON body' }]];
  const entries = known.map(([name, field]) => {
    field = field && typeof field === 'object' ? field : {};
    const { input, extra } = fieldInput(name, field, values ? values[name] : undefined);
    const before = input.type === 'checkbox' ? String(input.checked) : input.value;
    return { name, field, input, extra, before };
  });
  const rows = entries.map(({ name, field, input, extra }) => h('div', { class: 'field' },
    h('label', { for: input.id }, name, field.required ? ' *' : ''),
    input, extra,
    field.description ? h('small', {}, prose(field.description)) : null));
  const out = h('div', { class: 'answer', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit' }, submit);

  async function onsubmit(ev) {
    ev.preventDefault();
    out.replaceChildren();
    for (const e of entries) e.input.removeAttribute('aria-invalid');
    let body = {};
    try {
      for (const e of entries) {
        const now = e.input.type === 'checkbox' ? String(e.input.checked) : e.input.value;
        if (changedOnly && now === e.before) continue;
        const v = readInput(e.input, changedOnly ? emptyValue(e.field) : undefined);
        if (v !== undefined) body[e.name] = v;
      }
    } catch (e) {
      out.append(errorPanel({ code: 'InvalidFormat', message: e.message, fieldName: e.field }));
      return;
    }
    if (!fields) body = body.body || {};
    if (changedOnly && Object.keys(body).length === 0) {
      out.append(h('p', {}, 'Nothing changed.'));
      return;
    }
    button.disabled = true;
    const res = await send(body);
    button.disabled = false;
    if (res.ok) {
      done(res, out);
      return;
    }
    out.append(h('p', {}, 'HTTP ' + res.status), errorPanel(res.json || {}));
    const bad = res.json && entries.find((e) => e.name === res.json.fieldName);
    if (bad) {
      bad.input.setAttribute('aria-invalid', 'true');
      bad.input.focus();
    }
  }

  return h('form', { class: 'schema-form', onsubmit },
    title ? h('h3', {}, title) : null, rows, h('div', {}, button), out);
}

// The filter bar of a collection: a field, one of its modifiers and a
// value become `?field_modifier=value` (`?field=value` for eq), added to
// the filters already in the URL.
function filterForm(c, schema) {
  const filters = (schema && schema.collectionFilters) || {};
  let names = Object.keys(filters);
  if (!names.length) names = Object.keys((c.filters && typeof c.filters === 'object') ? c.filters : {});
  // The fields one filters by most, first.
  names = [...new Set(['name', 'state', ...names])].filter((n) => names.includes(n));
  if (!names.length) return null;
  const field = h('select', { name: 'field', 'aria-label': 'field' }, names.map((n) => h('option', { value: n }, n)));
  const modifier = h('select', { name: 'modifier', 'aria-label': 'modifier' });
  const valueBox = h('span');
  const update = () => {
    const f = filters[field.value] || {};
    const mods = Array.isArray(f.modifiers) && f.modifiers.length ? f.modifiers : ['eq'];
    modifier.replaceChildren(...mods.map((m) => h('option', { value: String(m) }, String(m))));
    valueBox.replaceChildren(Array.isArray(f.options)
      ? h('select', { name: 'value', 'aria-label': 'value' }, f.options.map((o) => h('option', { value: String(o) }, String(o))))
      : h('input', { name: 'value', type: 'text', 'aria-label': 'value' }));
  };
  field.addEventListener('change', update);
  update();
  const onsubmit = (ev) => {
    ev.preventDefault();
    const params = new URLSearchParams(location.search);
    // A new filter starts again from the first page.
    params.delete('marker');
    const mod = modifier.value;
    const key = mod === 'eq' ? field.value : field.value + '_' + mod;
    const value = mod === 'null' || mod === 'notnull' ? '' : valueBox.firstChild.value;
    params.append(key, value);
    location.assign(location.origin + location.pathname + '?' + params.toString());
  };
  return h('form', { class: 'filter', onsubmit },
    h('span', {}, 'Filter: '), field, modifier, valueBox, h('button', { type: 'submit' }, 'Apply'),
    location.search ? h('a', { href: location.origin + location.pathname }, 'clear') : null);
}

// The filters in force (`c.filters`: field → null or [{modifier, value}]),
// each with a link that drops it.
function activeFilters(c) {
  const chips = [];
  for (const [name, conds] of Object.entries((c.filters && typeof c.filters === 'object') ? c.filters : {})) {
    for (const cond of Array.isArray(conds) ? conds : []) {
      const mod = cond && cond.modifier ? String(cond.modifier) : 'eq';
      const key = mod === 'eq' ? name : name + '_' + mod;
      const params = new URLSearchParams(location.search);
      params.delete(key);
      params.delete('marker');
      const rest = params.toString();
      chips.push(h('span', { class: 'chip' }, name + ' ' + mod + ' ' + cellText('', cond ? cond.value : ''), ' ',
        h('a', { href: location.origin + location.pathname + (rest ? '?' + rest : ''), title: 'drop this filter' }, '×')));
    }
  }
  return chips.length ? h('p', { class: 'filters' }, chips) : null;
}
