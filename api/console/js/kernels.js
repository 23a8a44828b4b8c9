// The kernels view: a v2 query page (`GET /api/v2/regions/{r}/kernels`) with filters, sort and
// keyset paging in the URL, like images; below it the operator's kernel catalog with a Pull
// button per entry. Pulls (and any importing kernel on the page) are re-read every second, so
// their progress moves live.

import { h, replace, field, fmtBytes, fmtDate, errorBox, uid, progress } from './dom.js';
import { api, enc, v1, session } from './api.js';
import { resourceTable, pager } from './table.js';
import { statusCell } from './images.js';

const STATES = ['pending', 'importing', 'ready', 'failed'];
const ARCHES = ['x86_64', 'aarch64'];
const PAGE_SIZE = 50;
const RESERVED = 'strata.dev/';
const pageTokens = new Map();

export function kernelHref(k, fallbackOrg) {
  return `#/kernel/${enc(k.regionId)}/${enc(k.organizationId || fallbackOrg)}/${enc(k.id)}`;
}

/** The files a kernel has, with sizes: "vmlinux 8.0 KiB · initrd 2.0 MiB". */
export function filesSummary(k) {
  const parts = ['vmlinux', 'initrd', 'modules']
    .filter((a) => k.artifacts && k.artifacts[a])
    .map((a) => h('li', {}, `${a} ${fmtBytes(k.artifacts[a].sizeBytes)}`));
  return parts.length ? h('ul.files-list', { 'aria-label': 'Files' }, parts) : h('span.muted', {}, 'none yet');
}

function nameCell(k, fallbackOrg) {
  const tags = Object.entries(k.tags).filter(([t]) => !t.toLowerCase().startsWith(RESERVED));
  return h(
    'div.name-cell',
    {},
    h('a.name', { href: kernelHref(k, fallbackOrg) }, k.name),
    tags.length ? h('ul.row-tags', { 'aria-label': 'Tags' }, tags.slice(0, 4).map(([t, v]) => h('li', { title: `${t}=${v}` }, `${t}=${v}`)), tags.length > 4 ? h('li', {}, `+${tags.length - 4}`) : null) : null,
  );
}

function queryFrom(params) {
  const q = new URLSearchParams();
  for (const o of params.getAll('org')) q.append('organizationID', o);
  for (const s of params.getAll('status')) q.append('status', s);
  for (const t of params.getAll('tag')) q.append('tag', t);
  if (params.get('arch')) q.set('architecture', params.get('arch'));
  if (params.get('name')) q.set('name', params.get('name'));
  if (params.get('scope')) q.set('scope', params.get('scope'));
  q.set('sort', params.get('sort') || 'name');
  q.set('limit', String(PAGE_SIZE));
  return q;
}

function multi(params, go, key, values, legend) {
  const id = uid(key);
  return h(
    'fieldset.group',
    { 'aria-labelledby': id },
    h('legend', { id }, legend),
    values.map((v) =>
      h('label.check', {}, h('input', {
        type: 'checkbox',
        checked: params.getAll(key).includes(v),
        onchange: (e) => go((p) => {
          const cur = p.getAll(key).filter((x) => x !== v);
          if (e.target.checked) cur.push(v);
          p.delete(key);
          cur.forEach((x) => p.append(key, x));
        }),
      }), v),
    ),
  );
}

export async function renderKernels(env) {
  const { main, regions, params, navigate, setCleanup } = env;
  const claims = session.claims;
  if (!regions.length) {
    replace(main, h('p.notice', {}, 'No region is open to your organizations.'));
    return;
  }
  const region = regions.includes(params.get('region')) ? params.get('region') : regions[0];
  const sort = params.get('sort') || 'name';
  const go = (mutate, keepPage = false) => {
    const p = new URLSearchParams(params);
    p.set('region', region);
    mutate(p);
    if (!keepPage) p.delete('page');
    navigate('/kernels', p);
  };

  const regionSel = h(
    'select',
    { onchange: (e) => go((p) => { p.set('region', e.target.value); }) },
    regions.map((r) => h('option', { value: r, selected: r === region }, r)),
  );
  const archSel = h(
    'select',
    { onchange: (e) => go((p) => (e.target.value ? p.set('arch', e.target.value) : p.delete('arch'))) },
    h('option', { value: '' }, 'any'),
    ARCHES.map((a) => h('option', { value: a, selected: params.get('arch') === a }, a)),
  );
  const nameIn = h('input', {
    type: 'search',
    value: params.get('name') || '',
    placeholder: 'exact name',
    onchange: (e) => go((p) => (e.target.value.trim() ? p.set('name', e.target.value.trim()) : p.delete('name'))),
  });
  const tagIn = h('input', { type: 'text', placeholder: 'key=value or key' });
  const chips = h(
    'ul.chips',
    { 'aria-label': 'Tag filters' },
    params.getAll('tag').map((t) =>
      h('li.chip', {}, h('span', {}, t), h('button', {
        type: 'button',
        'aria-label': `Remove tag filter ${t}`,
        onclick: () => go((p) => {
          const rest = p.getAll('tag').filter((x) => x !== t);
          p.delete('tag');
          rest.forEach((x) => p.append('tag', x));
        }),
      }, '×')),
    ),
  );
  const active = ['org', 'status', 'tag', 'arch', 'name', 'scope'].reduce((n, k) => n + params.getAll(k).length, 0);
  const filters = h(
    'details.filters',
    { open: active > 0 || window.matchMedia('(min-width: 641px)').matches },
    h('summary', {}, active ? `Filters (${active} active)` : 'Filters'),
    field('Region', regionSel),
    claims.orgs.length ? multi(params, go, 'org', claims.orgs, 'Organization') : null,
    h('label.check.scope', {}, h('input', {
      type: 'checkbox',
      checked: params.get('scope') === 'owned',
      onchange: (e) => go((p) => (e.target.checked ? p.set('scope', 'owned') : p.delete('scope'))),
    }), 'Hide global kernels'),
    multi(params, go, 'status', STATES, 'Status'),
    field('Architecture', archSel),
    field('Name', nameIn),
    h('form.tag-form', {
      onsubmit: (e) => {
        e.preventDefault();
        const v = tagIn.value.trim();
        if (v) go((p) => { if (!p.getAll('tag').includes(v)) p.append('tag', v); });
      },
    }, field('Tag', tagIn), h('button', { type: 'submit' }, 'Add tag filter')),
    chips,
    h('div.filter-actions', {}, h('button.link', { type: 'button', onclick: () => navigate('/kernels', new URLSearchParams({ region })) }, 'Clear filters')),
  );

  const fallbackOrg = claims.orgs[0] || 'platform';
  const table = resourceTable({
    caption: `Kernels in region ${region}`,
    sort,
    onSort: (next) => go((p) => p.set('sort', next)),
    empty: 'No kernels match these filters.',
    columns: [
      { label: 'Name', sort: { asc: 'name' }, render: (k) => nameCell(k, fallbackOrg) },
      { label: 'Organization', render: (k) => k.organizationId || h('span.badge.global', {}, 'global') },
      { label: 'Version', render: (k) => h('div.version-cell', {}, h('code.wrap', {}, k.version), h('span.distro', {}, [k.distro, k.architecture].filter(Boolean).join(' · '))) },
      { label: 'Status', render: statusCell },
      { label: 'Files', render: filesSummary },
      { label: 'Created', className: 'nowrap', sort: { asc: 'createdAt', desc: '-createdAt' }, render: (k) => h('time', { datetime: k.createdAt, title: fmtDate(k.createdAt) }, fmtDate(k.createdAt).slice(0, 10)) },
      { label: 'Source', render: (k) => h('span', { title: k.provenance.reference || '' }, k.provenance.source) },
    ],
  });

  const query = queryFrom(params);
  const qkey = `${region}?${query}`;
  const stack = pageTokens.get(qkey) || [];
  pageTokens.set(qkey, stack);
  const pageToken = params.get('page');
  const pageNo = pageToken ? Math.max(stack.indexOf(pageToken), 0) + 2 : 1;
  if (pageToken) query.set('pageToken', pageToken);
  const status = h('div', { 'aria-live': 'polite' });
  const pagerSlot = h('div');
  const catalogSlot = h('section.card.catalog', { 'aria-labelledby': 'cat-h' }, h('h2', { id: 'cat-h' }, 'Kernel catalog'), h('p.muted', {}, 'Loading…'));

  replace(
    main,
    h('div.view-head', {}, h('h1', {}, 'Kernels')),
    h('div.images-layout', {}, filters, h('div.results-col', {},
      h('section.results', { 'aria-label': 'Results' }, status, table.el, pagerSlot),
      catalogSlot,
    )),
  );

  let timer = null;
  let aborter = null;
  let stopped = false;
  setCleanup(() => {
    stopped = true;
    clearTimeout(timer);
    if (aborter) aborter.abort();
  });

  async function load() {
    aborter = new AbortController();
    table.setBusy(true);
    let page;
    try {
      page = (await api(`/api/v2/regions/${enc(region)}/kernels?${query}`, { signal: aborter.signal })).data;
    } catch (e) {
      if (e.name === 'AbortError') return;
      table.setBusy(false);
      replace(status, errorBox(e));
      return;
    }
    if (stopped) return;
    table.setItems(page.items);
    table.setBusy(false);
    catalog.sync(page.items);
    {
      replace(
        pagerSlot,
        pager({
          page: pageNo,
          count: page.items.length,
          hasPrev: Boolean(pageToken),
          hasNext: Boolean(page.nextPageToken),
          onPrev: () => go((p) => {
            const i = stack.indexOf(pageToken);
            const prev = i > 0 ? stack[i - 1] : null;
            if (prev) p.set('page', prev);
            else p.delete('page');
          }, true),
          onNext: () => go((p) => {
            const i = pageToken ? stack.indexOf(pageToken) : -1;
            stack.splice(i + 1, stack.length, page.nextPageToken);
            p.set('page', page.nextPageToken);
          }, true),
        }),
      );
    }
    if (page.items.some((k) => k.status.state === 'importing') && !stopped) timer = setTimeout(load, 1000);
  }

  const catalog = { sync: () => {} };
  renderCatalog(catalogSlot, catalog, { region, claims, isStopped: () => stopped, onPulled: () => { clearTimeout(timer); load(); } });
  await load();
}

/**
 * The catalog of one organization (the catalog's pulled/available state is per organization):
 * a picker when the token has several, a Pull button per entry, and the pull's progress.
 */
async function renderCatalog(slot, hooks, { region, claims, isStopped, onPulled }) {
  const heading = h('h2', { id: 'cat-h' }, 'Kernel catalog');
  const orgs = claims.orgs;
  if (!orgs.length) {
    replace(slot, heading, h('p.muted', {}, 'The catalog is shown per organization; this token names none.'));
    return;
  }
  let org = orgs[0];
  const mayWrite = claims.scopes.includes('kernels:write');
  const body = h('div');
  const orgSel = orgs.length > 1
    ? field('Organization', h('select', { onchange: (e) => { org = e.target.value; load(); } }, orgs.map((o) => h('option', { value: o }, o))))
    : null;
  replace(
    slot,
    h('div.catalog-head', {}, heading, orgSel),
    h('p.muted', {}, 'Kernel bundles this server offers. Pull one to get a kernel of your own in this organization and region.'),
    body,
  );
  // entry name -> {kernel, error}: pulls started from this view, polled until they end.
  const pulls = new Map();

  function stateCell(e) {
    const p = pulls.get(e.name);
    if (p && p.kernel) {
      const k = p.kernel;
      if (k.status.state === 'importing' || k.status.state === 'pending') {
        return h('div.importing', {}, h('span.state.state-importing', {}, 'pulling'),
          progress(k.status.bytesDone || 0, k.status.bytesTotal, `Pull progress of ${e.name}`),
          h('span.bytes', {}, k.status.bytesTotal ? `${fmtBytes(k.status.bytesDone || 0)} / ${fmtBytes(k.status.bytesTotal)}` : `${fmtBytes(k.status.bytesDone || 0)} received`));
      }
      if (k.status.state === 'failed') return statusCell(k);
    }
    const out = h('div.catalog-state');
    if (e.inOrganization) out.appendChild(h('span.state.state-ready', {}, `pulled in ${org}`));
    if (e.globalExists) out.appendChild(h('span.badge.global', {}, 'global copy exists'));
    if (!e.inOrganization && !e.globalExists) out.appendChild(h('span.state.state-pending', {}, 'available'));
    return out;
  }

  async function pull(e, nameIn, btn, out) {
    btn.disabled = true;
    replace(out);
    try {
      const name = nameIn.value.trim() || e.name;
      const r = await api(`${v1(org, region)}/kernels`, { method: 'POST', body: { name, source: { type: 'catalog', entry: e.name } } });
      pulls.set(e.name, { kernel: r.data });
      render(lastItems);
      onPulled();
      watch(e.name, org);
    } catch (err) {
      btn.disabled = false;
      replace(out, errorBox(err));
    }
  }

  function watch(name, pullOrg) {
    setTimeout(async () => {
      if (isStopped()) return;
      const p = pulls.get(name);
      if (!p) return;
      try {
        p.kernel = (await api(`${v1(pullOrg, region)}/kernels/${enc(p.kernel.id)}`)).data;
      } catch {
        pulls.delete(name);
        return load();
      }
      if (p.kernel.status.state === 'importing') {
        render(lastItems);
        watch(name, pullOrg);
      } else {
        if (p.kernel.status.state === 'ready') pulls.delete(name);
        onPulled();
        load();
      }
    }, 1000);
  }

  let lastItems = [];
  // Names typed into the pull forms survive the re-renders progress causes.
  const typed = new Map();
  // The table's live reloads carry the same kernels: the catalog's bars move with them.
  hooks.sync = (kernels) => {
    let changed = false;
    for (const p of pulls.values()) {
      const k = kernels.find((x) => p.kernel && x.id === p.kernel.id);
      if (k && k.revision >= p.kernel.revision && k.status.state === 'importing') {
        p.kernel = k;
        changed = true;
      }
    }
    if (changed) render(lastItems);
  };
  function render(items) {
    lastItems = items;
    if (!items.length) {
      replace(body, h('p.muted', {}, 'This server offers no catalog kernels (operators list them under [[kernel_catalog]]).'));
      return;
    }
    replace(body, h('ul.catalog-list', { 'aria-label': 'Catalog entries' }, items.map((e) => {
      const out = h('div', { 'aria-live': 'polite' });
      const pulling = pulls.get(e.name)?.kernel?.status.state === 'importing';
      // The new kernel's name: the entry's by default; another one to pull the entry again.
      const nameIn = h('input.pull-name', { type: 'text', value: typed.get(e.name) ?? e.name, maxlength: 63, oninput: (ev) => typed.set(e.name, ev.target.value), 'aria-label': `Kernel name for ${e.name}`, title: 'Name of the new kernel' });
      const btn = mayWrite
        ? h('button.primary', { type: 'button', disabled: pulling, 'aria-label': `Pull ${e.name}`, onclick: () => pull(e, nameIn, btn, out) }, e.inOrganization ? 'Pull again' : 'Pull')
        : null;
      return h(
        'li.catalog-entry',
        { 'data-entry': e.name },
        h('div.catalog-main', {},
          h('div.catalog-title', {}, h('strong', {}, e.name), ' ', h('span.muted', {}, [e.distro, e.version, e.architecture].filter(Boolean).join(' · '))),
          e.description ? h('p.catalog-desc', {}, e.description) : null,
          h('div.catalog-meta', {}, `${fmtBytes(e.sizeBytes)} · sha256 `, h('code', { title: e.sha256 }, `${e.sha256.slice(0, 12)}…`))),
        h('div.catalog-side', {}, stateCell(e), mayWrite ? h('form.pull', { onsubmit: (ev) => { ev.preventDefault(); if (!btn.disabled) pull(e, nameIn, btn, out); } }, nameIn, btn) : null),
        out,
      );
    })));
  }

  async function load() {
    try {
      const items = (await api(`${v1(org, region)}/kernel-catalog`)).data;
      if (!isStopped()) render(items);
    } catch (err) {
      replace(body, errorBox(err));
    }
  }
  await load();
}
