// The images view: a v2 query page with filters, sort and keyset paging, all reflected in the URL.
// Pages with importing images are polled (the same single page) so progress moves live.

import { h, replace, field, fmtBytes, fmtDate, progress, errorBox, uid } from './dom.js';
import { api, enc, session } from './api.js';
import { resourceTable, pager } from './table.js';
import { openImportDialog } from './import.js';

const STATES = ['pending', 'importing', 'ready', 'failed'];
const ARCHES = ['x86_64', 'aarch64'];
const KINDS = ['disk', 'rootfs'];
const PAGE_SIZE = 50;
// Keyset paging only goes forward; the tokens of earlier pages are remembered per query.
const pageTokens = new Map();

export function statusCell(img) {
  const s = img.status;
  const badge = h(`span.state.state-${s.state}`, {}, s.state);
  // `phase` (e.g. an OCI pull's current step) is rendered only when the server sends it.
  const phase = typeof s.phase === 'string' && s.phase ? h('span.phase', {}, s.phase) : null;
  if (s.state !== 'importing') {
    if (s.state === 'failed' && (s.reason || s.reasonCode)) {
      // The reason often repeats the code as its prefix ("checksum-mismatch: expected ..."): once is enough.
      const reason = s.reasonCode && s.reason && s.reason.startsWith(`${s.reasonCode}:`) ? s.reason.slice(s.reasonCode.length + 1).trim() : s.reason;
      return h('span', {}, badge, s.reasonCode ? h('code.reason-code', {}, ` ${s.reasonCode}`) : null, reason ? h('span.reason', { title: reason }, ` ${reason}`) : null);
    }
    return phase ? h('span', {}, badge, ' ', phase) : badge;
  }
  const done = s.bytesDone || 0;
  const total = s.bytesTotal;
  return h(
    'div.importing',
    {},
    h('div.state-line', {}, badge, phase),
    progress(done, total, `Import progress of ${img.name}`),
    h('span.bytes', {}, total ? `${fmtBytes(done)} / ${fmtBytes(total)} (${Math.min(100, Math.floor((done / total) * 100))}%)` : `${fmtBytes(done)} received`),
  );
}

export function imageHref(img, fallbackOrg) {
  return `#/image/${enc(img.regionId)}/${enc(img.organizationId || fallbackOrg)}/${enc(img.id)}`;
}

const RESERVED = 'strata.dev/';

/** The name links to the detail; the user tags follow, small, so a tag filter can be checked. */
function nameCell(img, fallbackOrg) {
  const tags = Object.entries(img.tags).filter(([k]) => !k.toLowerCase().startsWith(RESERVED));
  return h(
    'div.name-cell',
    {},
    h('a.name', { href: imageHref(img, fallbackOrg) }, img.name),
    tags.length ? h('ul.row-tags', { 'aria-label': 'Tags' }, tags.slice(0, 4).map(([k, v]) => h('li', { title: `${k}=${v}` }, `${k}=${v}`)), tags.length > 4 ? h('li', {}, `+${tags.length - 4}`) : null) : null,
  );
}

function queryFrom(params) {
  const q = new URLSearchParams();
  for (const o of params.getAll('org')) q.append('organizationID', o);
  for (const s of params.getAll('status')) q.append('status', s);
  for (const t of params.getAll('tag')) q.append('tag', t);
  if (params.get('arch')) q.set('architecture', params.get('arch'));
  if (params.get('kind')) q.set('kind', params.get('kind'));
  if (params.get('name')) q.set('name', params.get('name'));
  if (params.get('scope')) q.set('scope', params.get('scope'));
  q.set('sort', params.get('sort') || '-createdAt');
  q.set('limit', String(PAGE_SIZE));
  return q;
}

export async function renderImages(env) {
  const { main, regions, params, navigate, setCleanup } = env;
  const claims = session.claims;
  if (!regions.length) {
    replace(main, h('p.notice', {}, 'No region is open to your organizations.'));
    return;
  }
  const region = regions.includes(params.get('region')) ? params.get('region') : regions[0];
  const sort = params.get('sort') || '-createdAt';
  const go = (mutate, keepPage = false) => {
    const p = new URLSearchParams(params);
    p.set('region', region);
    mutate(p);
    if (!keepPage) p.delete('page');
    navigate('/images', p);
  };

  // Filters
  const regionSel = h(
    'select',
    { onchange: (e) => go((p) => { p.set('region', e.target.value); }) },
    regions.map((r) => h('option', { value: r, selected: r === region }, r)),
  );
  const orgBoxes = claims.orgs.map((o) =>
    h('label.check', {}, h('input', {
      type: 'checkbox',
      checked: params.getAll('org').includes(o),
      onchange: (e) => go((p) => {
        const cur = p.getAll('org').filter((x) => x !== o);
        if (e.target.checked) cur.push(o);
        p.delete('org');
        cur.forEach((x) => p.append('org', x));
      }),
    }), o),
  );
  const stateBoxes = STATES.map((s) =>
    h('label.check', {}, h('input', {
      type: 'checkbox',
      checked: params.getAll('status').includes(s),
      onchange: (e) => go((p) => {
        const cur = p.getAll('status').filter((x) => x !== s);
        if (e.target.checked) cur.push(s);
        p.delete('status');
        cur.forEach((x) => p.append('status', x));
      }),
    }), s),
  );
  const archSel = h(
    'select',
    { onchange: (e) => go((p) => (e.target.value ? p.set('arch', e.target.value) : p.delete('arch'))) },
    h('option', { value: '' }, 'any'),
    ARCHES.map((a) => h('option', { value: a, selected: params.get('arch') === a }, a)),
  );
  const kindSel = h(
    'select',
    { onchange: (e) => go((p) => (e.target.value ? p.set('kind', e.target.value) : p.delete('kind'))) },
    h('option', { value: '' }, 'any'),
    KINDS.map((k) => h('option', { value: k, selected: params.get('kind') === k }, k)),
  );
  const nameIn = h('input', {
    type: 'search',
    value: params.get('name') || '',
    placeholder: 'exact name',
    onchange: (e) => go((p) => (e.target.value.trim() ? p.set('name', e.target.value.trim()) : p.delete('name'))),
  });
  const tagIn = h('input', { type: 'text', placeholder: 'key=value or key' });
  const addTag = (e) => {
    e.preventDefault();
    const v = tagIn.value.trim();
    if (v) go((p) => { if (!p.getAll('tag').includes(v)) p.append('tag', v); });
  };
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
  const orgGroupId = uid('orgs');
  const stateGroupId = uid('states');
  const active = ['org', 'status', 'tag', 'arch', 'kind', 'name', 'scope'].reduce((n, k) => n + params.getAll(k).length, 0);
  const filters = h(
    'details.filters',
    { open: active > 0 || window.matchMedia('(min-width: 641px)').matches },
    h('summary', {}, active ? `Filters (${active} active)` : 'Filters'),
    field('Region', regionSel),
    claims.orgs.length
      ? h('fieldset.group', { 'aria-labelledby': orgGroupId }, h('legend', { id: orgGroupId }, 'Organization'), orgBoxes)
      : null,
    h('label.check.scope', {}, h('input', {
      type: 'checkbox',
      checked: params.get('scope') === 'owned',
      onchange: (e) => go((p) => (e.target.checked ? p.set('scope', 'owned') : p.delete('scope'))),
    }), 'Hide global images'),
    h('fieldset.group', { 'aria-labelledby': stateGroupId }, h('legend', { id: stateGroupId }, 'Status'), stateBoxes),
    field('Architecture', archSel),
    field('Kind', kindSel),
    field('Name', nameIn),
    h('form.tag-form', { onsubmit: addTag }, field('Tag', tagIn), h('button', { type: 'submit' }, 'Add tag filter')),
    chips,
    h('div.filter-actions', {}, h('button.link', { type: 'button', onclick: () => navigate('/images', new URLSearchParams({ region })) }, 'Clear filters')),
  );

  // Table
  // Global images are read through v1 under an organization the caller acts for: one of the
  // token's, or for an admin token naming none, any (platform admins act for every organization).
  const fallbackOrg = claims.orgs[0] || 'platform';
  const table = resourceTable({
    caption: `Images in region ${region}`,
    sort,
    onSort: (next) => go((p) => p.set('sort', next)),
    empty: 'No images match these filters.',
    columns: [
      { label: 'Name', sort: { asc: 'name' }, render: (i) => nameCell(i, fallbackOrg) },
      { label: 'Organization', render: (i) => i.organizationId || h('span.badge.global', {}, 'global') },
      { label: 'Kind', render: (i) => i.kind },
      { label: 'Arch', render: (i) => i.architecture },
      { label: 'Status', render: statusCell },
      { label: 'Size', className: 'nowrap', render: (i) => fmtBytes(i.sizeBytes ?? (i.status.bytesTotal || null)) },
      { label: 'Created', className: 'nowrap', sort: { asc: 'createdAt', desc: '-createdAt' }, render: (i) => h('time', { datetime: i.createdAt }, fmtDate(i.createdAt)) },
      { label: 'Source', render: (i) => h('span', { title: i.provenance.reference || '' }, i.provenance.source) },
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

  const mayWrite = claims.scopes.includes('images:write');
  const importBtn = mayWrite && h('button.primary', {
    type: 'button',
    onclick: () => openImportDialog({ region, onCreated: () => go((p) => p.set('sort', '-createdAt')) }),
  }, 'Import image…');
  replace(
    main,
    h('div.view-head', {}, h('h1', {}, 'Images'), importBtn),
    h('div.images-layout', {}, filters, h('section.results', { 'aria-label': 'Results' }, status, table.el, pagerSlot)),
  );

  let timer = null;
  let aborter = null;
  let stopped = false;
  setCleanup(() => {
    stopped = true;
    clearTimeout(timer);
    if (aborter) aborter.abort();
  });

  async function load(first) {
    aborter = new AbortController();
    table.setBusy(true);
    let page;
    try {
      page = (await api(`/api/v2/regions/${enc(region)}/images?${query}`, { signal: aborter.signal })).data;
    } catch (e) {
      if (e.name === 'AbortError') return;
      table.setBusy(false);
      // A server whose v2 query has no `kind` filter yet says so with 400 invalid-input on `kind`.
      if (params.get('kind') && e.status === 400 && /\bkind\b/.test(e.message)) {
        table.setItems([]);
        replace(status, h('div.notice', { role: 'alert' }, 'This server cannot filter images by kind yet. ', h('button.link', { type: 'button', onclick: () => go((p) => p.delete('kind')) }, 'Show every kind')), errorBox(e));
        return;
      }
      replace(status, errorBox(e));
      return;
    }
    table.setItems(page.items);
    table.setBusy(false);
    if (first) {
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
    const moving = page.items.some((i) => i.status.state === 'importing' || (i.status.state === 'pending' && i.provenance.source !== 'upload'));
    if (moving && !stopped) timer = setTimeout(() => load(false), 1000);
  }
  await load(true);
}
