// One kernel: every field, its files with sizes and downloads, status with reasonCode, consumers;
// protect/unprotect, tags and description with If-Match, delete behind a confirmation naming the
// kernel (409 kernel-in-use shows the count and the visible images).

import { h, replace, fmtBytes, fmtDate, errorBox } from './dom.js';
import { api, enc, v1, ApiError, session } from './api.js';
import { statusCell } from './images.js';
import { dl, mono, patcher } from './detail.js';

const RESERVED = 'strata.dev/';
const ARTIFACTS = [
  ['vmlinux', 'vmlinux'],
  ['initrd', 'initrd.img'],
  ['modules', 'modules.tar'],
];

export async function renderKernelDetail(env, { region, org, id }) {
  const { main, navigate, setCleanup } = env;
  const base = `${v1(org, region)}/kernels/${enc(id)}`;
  const listHref = env.kernelsHref || `#/kernels?region=${enc(region)}`;
  let k;
  let etag;
  let timer = null;
  let stopped = false;
  setCleanup(() => {
    stopped = true;
    clearTimeout(timer);
  });
  const notices = h('div', { 'aria-live': 'polite' });

  async function fetchKernel() {
    const r = await api(base);
    k = r.data;
    etag = r.etag;
  }

  const { patch } = patcher({
    base,
    noun: 'kernel',
    notices,
    etag: () => etag,
    apply: (r) => {
      k = r.data;
      etag = r.etag;
    },
    render: () => render(),
    reload: () => reload(),
  });

  async function reload() {
    replace(notices);
    try {
      await fetchKernel();
      render();
    } catch (e) {
      replace(notices, errorBox(e));
    }
  }

  // Files need the bearer token, which never goes into a URL: fetch, then save the blob.
  async function download(artifact, filename, btn, out) {
    btn.disabled = true;
    replace(out);
    try {
      const res = await fetch(`${base}/${artifact}`, {
        headers: { Authorization: `Bearer ${session.token}` },
        cache: 'no-store',
        credentials: 'omit',
      });
      if (!res.ok) {
        let body = null;
        try {
          body = await res.json();
        } catch {
          body = null;
        }
        throw new ApiError(res.status, body);
      }
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: `${k.name}-${filename}` });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      replace(out, errorBox(e));
    } finally {
      btn.disabled = false;
    }
  }

  function filesCard() {
    const out = h('div', { 'aria-live': 'polite' });
    const rows = ARTIFACTS.filter(([a]) => k.artifacts[a]).map(([a, filename]) => {
      const f = k.artifacts[a];
      const btn = h('button', { type: 'button', 'aria-label': `Download ${a}` }, 'Download');
      btn.addEventListener('click', () => download(a, filename, btn, out));
      return h('tr', {}, h('th.nowrap', { scope: 'row' }, a), h('td.nowrap', {}, `${fmtBytes(f.sizeBytes)}`, h('div.hint', {}, `${f.sizeBytes.toLocaleString('en')} bytes`)), h('td', {}, h('code.wrap', { title: f.sha256 }, f.sha256)), h('td.nowrap', {}, btn));
    });
    return h(
      'section.card',
      { 'aria-labelledby': 'fl-h' },
      h('h2', { id: 'fl-h' }, 'Files'),
      rows.length
        ? h('table.kv.files', {}, h('caption.visually-hidden', {}, 'Kernel files'), h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'File'), h('th', { scope: 'col' }, 'Size'), h('th', { scope: 'col' }, 'SHA-256'), h('th', { scope: 'col' }, h('span.visually-hidden', {}, 'Download')))), h('tbody', {}, rows))
        : h('p.muted', {}, k.status.state === 'ready' ? 'No files.' : 'No files yet: they are stored when the upload or pull ends.'),
      out,
    );
  }

  function tagEditor() {
    const user = Object.entries(k.tags).filter(([t]) => !t.toLowerCase().startsWith(RESERVED));
    const rows = h('div.tag-rows');
    const addRow = (key0 = '', val0 = '') => {
      const key = h('input', { type: 'text', value: key0, 'aria-label': 'Tag key', class: 'tag-key', maxlength: 63 });
      const val = h('input', { type: 'text', value: val0, 'aria-label': 'Tag value', class: 'tag-value', maxlength: 255 });
      const row = h('div.tag-row', {}, key, h('span', { 'aria-hidden': 'true' }, '='), val);
      row.appendChild(h('button', { type: 'button', 'aria-label': `Remove tag ${key0 || 'row'}`, onclick: () => row.remove() }, '×'));
      rows.appendChild(row);
      return key;
    };
    user.forEach(([t, v]) => addRow(t, v));
    const save = async (e) => {
      e.preventDefault();
      const next = {};
      for (const r of rows.querySelectorAll('.tag-row')) {
        const t = r.querySelector('.tag-key').value.trim();
        if (t) next[t] = r.querySelector('.tag-value').value;
      }
      const tags = {};
      for (const [t] of user) if (!(t in next)) tags[t] = null;
      for (const [t, v] of Object.entries(next)) if (k.tags[t] !== v) tags[t] = v;
      await patch({ tags }, 'Tags saved.');
    };
    return h(
      'form.tags-edit',
      { onsubmit: save, 'aria-label': 'User tags' },
      rows,
      h('div.actions', {}, h('button', { type: 'button', onclick: () => addRow().focus() }, 'Add tag'), h('button.primary', { type: 'submit' }, 'Save tags')),
    );
  }

  function descriptionEditor() {
    const ta = h('textarea', { rows: 3, maxlength: 1024, 'aria-labelledby': 'ds-h' });
    ta.value = k.description || '';
    return h(
      'form',
      { onsubmit: (e) => { e.preventDefault(); patch({ description: ta.value === '' ? null : ta.value }, 'Description saved.'); } },
      ta,
      h('div.actions', {}, h('button', { type: 'submit' }, 'Save description')),
    );
  }

  const imageHref = (imageId) => `#/image/${enc(k.regionId)}/${enc(k.organizationId || org)}/${enc(imageId)}`;

  function confirmDelete() {
    const dlg = h('dialog.confirm', { 'aria-labelledby': 'del-title' });
    const err = h('div');
    const del = h('button.danger', { type: 'button' }, 'Delete');
    del.addEventListener('click', async () => {
      del.disabled = true;
      try {
        await api(base, { method: 'DELETE' });
        dlg.close();
        navigate('/kernels', new URLSearchParams({ region }));
      } catch (e) {
        del.disabled = false;
        e.imageHref = imageHref;
        replace(err, errorBox(e));
        // A link to an image closes the dialog on the way there.
        for (const a of err.querySelectorAll('a')) a.addEventListener('click', () => dlg.close());
      }
    });
    dlg.append(
      h('h2', { id: 'del-title' }, `Delete kernel “${k.name}”?`),
      h('p', {}, `This deletes ${k.name} ${k.version} (${k.id}) in region ${k.regionId} and its files. It cannot be undone.`),
      err,
      h('div.actions', {}, h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'), del),
    );
    dlg.addEventListener('close', () => dlg.remove());
    document.body.appendChild(dlg);
    dlg.showModal();
  }

  async function consumersSection() {
    const box = h('section.card', { 'aria-labelledby': 'cons-h' }, h('h2', { id: 'cons-h' }, 'Consumers'));
    try {
      const list = (await api(`${base}/consumers`)).data;
      box.appendChild(
        list.length
          ? h('ul.consumers', {}, list.map((c) => h('li', {}, h('strong', {}, c.kind), ' ', h('code', {}, c.id), c.description ? ` — ${c.description}` : '', ` (${c.organizationId})`)))
          : h('p.muted', {}, 'No consumers are registered.'),
      );
    } catch (e) {
      box.appendChild(e.status === 404 ? h('p.muted', {}, 'Consumers are visible to the owning organization only.') : errorBox(e));
    }
    return box;
  }

  function mayEdit() {
    const c = session.claims;
    if (!c || !c.scopes.includes('kernels:write')) return false;
    return k.organizationId ? c.admin || c.orgs.includes(k.organizationId) : c.admin;
  }

  function readOnlyWhy() {
    const c = session.claims;
    if (!c || !c.scopes.includes('kernels:write')) return 'Read-only: the token lacks the kernels:write scope.';
    return 'Read-only: global kernels are changed by platform admins.';
  }

  function kv(entries, caption) {
    return entries.length
      ? h('table.kv', {}, h('caption.visually-hidden', {}, caption), h('tbody', {}, entries.map(([t, v]) => h('tr', {}, h('th', { scope: 'row' }, t), h('td', {}, v)))))
      : h('p.muted', {}, 'None.');
  }

  function statusList() {
    const s = k.status;
    return dl([
      ['State', s.state === 'failed' ? h(`span.state.state-${s.state}`, {}, s.state) : statusCell(k)],
      ['Reason', s.reasonCode && s.reason && s.reason.startsWith(`${s.reasonCode}:`) ? s.reason.slice(s.reasonCode.length + 1).trim() : s.reason],
      s.reasonCode ? ['Reason code', h('code', {}, s.reasonCode)] : null,
      ['Bytes', s.bytesTotal ? `${fmtBytes(s.bytesDone)} of ${fmtBytes(s.bytesTotal)}` : fmtBytes(s.bytesDone)],
    ]);
  }

  function render() {
    clearTimeout(timer);
    const editable = mayEdit();
    const user = Object.entries(k.tags).filter(([t]) => !t.toLowerCase().startsWith(RESERVED));
    const reserved = Object.entries(k.tags).filter(([t]) => t.toLowerCase().startsWith(RESERVED));
    const protectBtn = h('button', {
      type: 'button',
      'aria-pressed': k.protected ? 'true' : 'false',
      onclick: () => patch({ protected: !k.protected }, k.protected ? 'Protection removed.' : 'Kernel protected.'),
    }, k.protected ? 'Unprotect' : 'Protect');
    const deleteBtn = h('button.danger', { type: 'button', onclick: confirmDelete }, 'Delete…');
    const consumers = h('div');
    const statusCard = h('section.card', { 'aria-labelledby': 'st-h' }, h('h2', { id: 'st-h' }, 'Status'), statusList());
    replace(
      main,
      h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, h('a', { href: listHref }, 'Kernels'), ' / ', h('span', {}, k.name)),
      h(
        'div.view-head',
        {},
        h('h1', {}, k.name, k.protected ? h('span.badge.protected', {}, 'protected') : null),
        editable ? h('div.actions', {}, protectBtn, deleteBtn) : null,
      ),
      notices,
      h(
        'div.detail-grid',
        {},
        h('section.card', { 'aria-labelledby': 'ov-h' }, h('h2', { id: 'ov-h' }, 'Overview'), dl([
          ['ID', mono(k.id)],
          ['Organization', k.organizationId || 'global'],
          ['Region', k.regionId],
          ['Visibility', k.visibility],
          ['Version', mono(k.version)],
          ['Distro', k.distro],
          ['Architecture', k.architecture],
          ['Format', k.format],
          ['Protected', k.protected ? 'yes' : 'no'],
          ['Created', fmtDate(k.createdAt)],
          ['Updated', fmtDate(k.updatedAt)],
          ['Revision', String(k.revision)],
        ])),
        h('div.stack', {}, statusCard, filesCard()),
        h('section.card', { 'aria-labelledby': 'pv-h' }, h('h2', { id: 'pv-h' }, 'Provenance (read-only)'), dl([
          ['Source', k.provenance.source],
          ['Reference', mono(k.provenance.reference)],
          ['Digest', mono(k.provenance.digest)],
          ['Imported by', k.provenance.importedBy],
          ['Imported at', fmtDate(k.provenance.importedAt)],
        ]), h('h3', {}, 'Reserved tags'), kv(reserved, 'Reserved tags')),
        editable
          ? h('section.card', { 'aria-labelledby': 'tg-h' }, h('h2', { id: 'tg-h' }, 'User tags'), tagEditor())
          : h('section.card', { 'aria-labelledby': 'tg-h' }, h('h2', { id: 'tg-h' }, 'User tags'), kv(user, 'User tags'), h('p.muted', {}, readOnlyWhy())),
        editable
          ? h('section.card', { 'aria-labelledby': 'ds-h' }, h('h2', { id: 'ds-h' }, 'Description'), descriptionEditor())
          : h('section.card', { 'aria-labelledby': 'ds-h' }, h('h2', { id: 'ds-h' }, 'Description'), h('p.description', {}, k.description || '—')),
        consumers,
      ),
    );
    consumersSection().then((c) => replace(consumers, c));
    if (k.status.state === 'importing') poll(statusCard);
  }

  // While a pull runs only the status card is refreshed; when it ends the view is drawn again.
  function poll(card) {
    if (stopped) return;
    timer = setTimeout(async () => {
      let r;
      try {
        r = await api(base);
      } catch (e) {
        replace(notices, errorBox(e));
        return;
      }
      if (stopped) return;
      if (r.data.status.state !== 'importing') {
        k = r.data;
        etag = r.etag;
        render();
        return;
      }
      const editable = (x) => JSON.stringify([x.name, x.description, x.protected, x.tags]);
      if (editable(r.data) === editable(k)) {
        k = r.data;
        etag = r.etag;
      } else k = { ...k, status: r.data.status };
      replace(card, h('h2', { id: 'st-h' }, 'Status'), statusList());
      poll(card);
    }, 1000);
  }

  try {
    await fetchKernel();
  } catch (e) {
    replace(main, h('nav.crumbs', {}, h('a', { href: listHref }, 'Kernels')), errorBox(e));
    return;
  }
  render();
}
