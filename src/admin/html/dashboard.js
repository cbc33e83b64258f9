// The dashboard: the pools with their capacity, the volumes, and the work
// under way, read from the JSON API every 2 s.

const POLL_MS = 2000;
const app = document.getElementById('app');
const sections = {
  status: h('p', { class: 'status', 'aria-live': 'polite' }, 'Loading…'),
  pools: h('section', { id: 'pools' }),
  work: h('section', { id: 'work' }),
  volumes: h('section', { id: 'volumes' }),
};
// The JSON each section was last drawn from: a section whose data did not
// change is left alone, so that a selection in it survives the poll.
const drawn = new Map();

function draw(name, data, build) {
  const key = JSON.stringify(data);
  if (drawn.get(name) === key) return;
  drawn.set(name, key);
  sections[name].replaceChildren(...build().filter(Boolean));
}

function rowsOf(settled) {
  const json = settled.status === 'fulfilled' ? settled.value : null;
  return json && Array.isArray(json.data) ? json.data.filter((r) => r && typeof r === 'object') : [];
}

async function list(path) {
  const res = await api('GET', API_ROOT + path);
  if (!res.ok) throw res.json || { status: res.status };
  return res.json;
}

function nameLink(r) {
  const self = r.links && r.links.self;
  const label = String(r.name || r.id || '?');
  return local(self) ? h('a', { href: self }, label) : label;
}

function table(head, rows) {
  return h('table', { class: 'list' },
    h('thead', {}, h('tr', {}, head.map((t) => h('th', {}, t)))),
    h('tbody', {}, rows));
}

function capacity(p) {
  const cap = typeof p.capacityBytes === 'number' ? p.capacityBytes : 0;
  const used = typeof p.usedBytes === 'number' ? p.usedBytes : 0;
  if (cap <= 0) return h('td', {}, 'unknown');
  // A loop pool is as full as its images' sizes promise, not as its disk.
  if (typeof p.reservedBytes === 'number' && typeof p.allowedBytes === 'number') {
    const allowed = p.allowedBytes, reserved = p.reservedBytes;
    const pct = allowed > 0 ? Math.round((reserved / allowed) * 100) : 0;
    return h('td', {},
      h('meter', { class: 'capacity', min: 0, max: allowed, low: allowed * 0.7, high: allowed * 0.9, optimum: 0, value: reserved }),
      ' ', 'reserved ' + bytes(reserved) + ' of ' + bytes(allowed) + ' images (' + pct + '%) on a ' +
      bytes(cap) + ' disk, ' + bytes(used) + ' used');
  }
  const pct = Math.round((used / cap) * 100);
  // max before value: a meter clamps its value to the max it has then.
  return h('td', {},
    h('meter', { class: 'capacity', min: 0, max: cap, low: cap * 0.7, high: cap * 0.9, optimum: 0, value: used }),
    ' ', bytes(used) + ' of ' + bytes(cap) + ' (' + pct + '%)');
}

function drawPools(settled) {
  const pools = rowsOf(settled);
  draw('pools', [settled.status, pools], () => [
    h('h2', {}, h('a', { href: API_ROOT + '/v1/storagepools' }, 'Storage pools')),
    settled.status === 'rejected' ? errorPanel(settled.reason) : null,
    table(['pool', 'backend', 'state', 'capacity', 'volumes'], pools.map((p) => h('tr', { 'data-id': String(p.id ?? '') },
      h('td', {}, nameLink(p)), h('td', {}, cellText('', p.backend)), h('td', {}, cellText('', p.state)),
      capacity(p), h('td', {}, cellText('', p.volumeCount))))),
  ]);
}

function drawVolumes(settled) {
  const volumes = rowsOf(settled);
  const page = settled.status === 'fulfilled' && settled.value && settled.value.pagination;
  const total = page && typeof page.total === 'number' && page.total > volumes.length ? ' (first ' + volumes.length + ' of ' + page.total + ')' : '';
  draw('volumes', [settled.status, volumes, total], () => [
    h('h2', {}, h('a', { href: API_ROOT + '/v1/volumes' }, 'Volumes'), total),
    settled.status === 'rejected' ? errorPanel(settled.reason) : null,
    table(['volume', 'state', 'mounts', 'used / size', 'pool'], volumes.map((v) => h('tr', { 'data-id': String(v.id ?? '') },
      h('td', {}, nameLink(v)),
      h('td', { class: 'state state-' + String(v.state) }, cellText('', v.state) + (v.transitioning === 'yes' ? ' …' : '')),
      h('td', {}, cellText('', v.mountCount)),
      h('td', {}, bytes(v.usedBytes) + ' / ' + (typeof v.sizeBytes === 'number' ? bytes(v.sizeBytes) : 'unbounded')),
      h('td', {}, cellText('', v.storagePoolId))))),
  ]);
}

function drawWork(kinds) {
  const running = [];
  for (const [kind, settled] of kinds) {
    for (const r of rowsOf(settled)) running.push([kind, r]);
  }
  const failed = kinds.filter(([, s]) => s.status === 'rejected').map(([, s]) => errorPanel(s.reason));
  draw('work', [running, failed.length], () => [
    h('h2', {}, 'Running'),
    ...failed,
    running.length
      ? table(['kind', 'name', 'progress'], running.map(([kind, r]) => {
        const pct = percent(r);
        return h('tr', { 'data-id': String(r.id ?? '') }, h('td', {}, kind), h('td', {}, nameLink(r)),
          h('td', {}, pct === null ? null : h('progress', { max: 100, value: pct }), ' ', cellText('', r.transitioningMessage)));
      }))
      : h('p', { class: 'empty' }, 'Nothing running.'),
  ]);
}

async function poll() {
  const [pools, volumes, snapshots, backups, busy] = await Promise.allSettled([
    list('/v1/storagepools'),
    list('/v1/volumes'),
    list('/v1/snapshots?state=creating'),
    list('/v1/backups?state=creating'),
    list('/v1/volumes?transitioning=yes'),
  ]);
  drawPools(pools);
  drawVolumes(volumes);
  drawWork([['snapshot', snapshots], ['backup', backups], ['volume', busy]]);
  sections.status.textContent = 'Updated ' + new Date().toLocaleTimeString() + '; every 2 s.';
  setTimeout(poll, POLL_MS);
}

document.title = 'ballast dashboard';
app.replaceChildren(navBar(), h('h1', {}, 'Dashboard'), sections.status, sections.pools, sections.work, sections.volumes);
poll();
