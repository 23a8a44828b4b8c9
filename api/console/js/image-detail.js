// One image: every field, provenance and reserved tags read-only, user tags and description
// editable with If-Match, protect/unprotect, delete with a confirmation naming the image.

import { h, replace, field, fmtBytes, fmtDate, errorBox, progress } from './dom.js';
import { api, enc, v1, session, uploadFile } from './api.js';
import { statusCell } from './images.js';
import { dl, mono, patcher } from './detail.js';

const RESERVED = 'strata.dev/';

export async function renderImageDetail(env, { region, org, id }) {
  const { main, navigate, setCleanup } = env;
  const base = `${v1(org, region)}/images/${enc(id)}`;
  const listHref = env.listHref || `#/images?region=${enc(region)}`;
  let img;
  let etag;
  let timer = null;
  let stopped = false;
  setCleanup(() => {
    stopped = true;
    clearTimeout(timer);
  });
  const notices = h('div', { 'aria-live': 'polite' });

  async function fetchImage() {
    const r = await api(base);
    img = r.data;
    etag = r.etag;
  }

  const { patch } = patcher({
    base,
    noun: 'image',
    notices,
    etag: () => etag,
    apply: (r) => {
      img = r.data;
      etag = r.etag;
    },
    render: () => render(),
    reload: () => reload(),
  });

  async function reload() {
    replace(notices);
    try {
      await fetchImage();
      render();
    } catch (e) {
      replace(notices, errorBox(e));
    }
  }

  function tagEditor() {
    const user = Object.entries(img.tags).filter(([k]) => !k.toLowerCase().startsWith(RESERVED));
    const rows = h('div.tag-rows');
    const addRow = (k = '', v = '') => {
      const key = h('input', { type: 'text', value: k, 'aria-label': 'Tag key', class: 'tag-key', maxlength: 63 });
      const val = h('input', { type: 'text', value: v, 'aria-label': 'Tag value', class: 'tag-value', maxlength: 255 });
      const row = h('div.tag-row', {}, key, h('span', { 'aria-hidden': 'true' }, '='), val);
      row.appendChild(h('button', { type: 'button', 'aria-label': `Remove tag ${k || 'row'}`, onclick: () => row.remove() }, '×'));
      rows.appendChild(row);
      return key;
    };
    user.forEach(([k, v]) => addRow(k, v));
    const save = async (e) => {
      e.preventDefault();
      const next = {};
      for (const r of rows.querySelectorAll('.tag-row')) {
        const k = r.querySelector('.tag-key').value.trim();
        if (k) next[k] = r.querySelector('.tag-value').value;
      }
      const tags = {};
      for (const [k] of user) if (!(k in next)) tags[k] = null;
      for (const [k, v] of Object.entries(next)) if (img.tags[k] !== v) tags[k] = v;
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
    ta.value = img.description || '';
    return h(
      'form',
      { onsubmit: (e) => { e.preventDefault(); patch({ description: ta.value === '' ? null : ta.value }, 'Description saved.'); } },
      ta,
      h('div.actions', {}, h('button', { type: 'submit' }, 'Save description')),
    );
  }

  // A pending upload image has no bytes yet (an earlier upload failed or never started).
  function uploadForm() {
    const file = h('input', { type: 'file', required: true });
    const out = h('div', { 'aria-live': 'polite' });
    const btn = h('button.primary', { type: 'submit' }, 'Upload');
    return h(
      'form.upload',
      {
        onsubmit: async (e) => {
          e.preventDefault();
          const f = file.files[0];
          if (!f) return;
          btn.disabled = true;
          const bar = h('div', {}, progress(0, f.size, 'Upload progress'));
          replace(out, bar);
          try {
            await uploadFile(`${base}/file`, f, (done, total) => replace(bar, progress(done, total, 'Upload progress')));
            await reload();
          } catch (err) {
            btn.disabled = false;
            replace(out, errorBox(err));
          }
        },
      },
      h('h3', {}, 'Upload the bytes'),
      field('Raw disk image file', file),
      btn,
      out,
    );
  }

  function confirmDelete() {
    const dlg = h('dialog.confirm', { 'aria-labelledby': 'del-title' });
    const err = h('div');
    const del = h('button.danger', { type: 'button' }, 'Delete');
    del.addEventListener('click', async () => {
      del.disabled = true;
      try {
        await api(base, { method: 'DELETE' });
        dlg.close();
        navigate('/images', new URLSearchParams({ region }));
      } catch (e) {
        del.disabled = false;
        if (e.code === 'image-in-use') {
          try {
            e.consumers = (await api(`${base}/consumers`)).data;
          } catch {
            // the message already names them
          }
        }
        replace(err, errorBox(e));
      }
    });
    dlg.append(
      h('h2', { id: 'del-title' }, `Delete image “${img.name}”?`),
      h('p', {}, `This deletes ${img.name} (${img.id}) in region ${img.regionId} and its bytes. It cannot be undone.`),
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
          : h('p.muted', {}, 'Nothing uses this image.'),
      );
    } catch (e) {
      box.appendChild(e.status === 404 ? h('p.muted', {}, 'Consumers are visible to the owning organization only.') : errorBox(e));
    }
    return box;
  }

  // Only the owning organization (or a platform admin, for global images) changes an image, and
  // only with images:write; others see it read-only instead of buttons the server would refuse.
  function mayEdit() {
    const c = session.claims;
    if (!c || !c.scopes.includes('images:write')) return false;
    return img.organizationId ? c.admin || c.orgs.includes(img.organizationId) : c.admin;
  }

  function readOnlyWhy() {
    const c = session.claims;
    if (!c || !c.scopes.includes('images:write')) return 'Read-only: the token lacks the images:write scope.';
    return 'Read-only: global images are changed by platform admins.';
  }

  function userTagsReadOnly() {
    const user = Object.entries(img.tags).filter(([k]) => !k.toLowerCase().startsWith(RESERVED));
    return user.length
      ? h('table.kv', {}, h('caption.visually-hidden', {}, 'User tags'), h('tbody', {}, user.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))))
      : h('p.muted', {}, 'None.');
  }

  async function render() {
    clearTimeout(timer);
    const editable = mayEdit();
    const reserved = Object.entries(img.tags).filter(([k]) => k.toLowerCase().startsWith(RESERVED));
    const s = img.status;
    const [reasonCode, ...reasonRest] = (s.reason || '').split(':');
    const reason = s.reason
      ? reasonRest.length && /^[a-z-]+$/.test(reasonCode)
        ? h('span', {}, h('code', {}, reasonCode), ` ${reasonRest.join(':').trim()}`)
        : s.reason
      : null;
    const protectBtn = h('button', {
      type: 'button',
      'aria-pressed': img.protected ? 'true' : 'false',
      onclick: () => patch({ protected: !img.protected }, img.protected ? 'Protection removed.' : 'Image protected.'),
    }, img.protected ? 'Unprotect' : 'Protect');
    const deleteBtn = h('button.danger', { type: 'button', onclick: confirmDelete }, 'Delete…');
    const consumers = h('div');
    const statusCard = h(
      'section.card',
      { 'aria-labelledby': 'st-h' },
      h('h2', { id: 'st-h' }, 'Status'),
      statusList(reason),
      editable && s.state === 'pending' && img.provenance.source === 'upload' ? uploadForm() : null,
    );
    replace(
      main,
      h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, h('a', { href: listHref }, 'Images'), ' / ', h('span', {}, img.name)),
      h(
        'div.view-head',
        {},
        h('h1', {}, img.name, img.protected ? h('span.badge.protected', {}, 'protected') : null),
        editable ? h('div.actions', {}, protectBtn, deleteBtn) : null,
      ),
      notices,
      h(
        'div.detail-grid',
        {},
        h('section.card', { 'aria-labelledby': 'ov-h' }, h('h2', { id: 'ov-h' }, 'Overview'), dl([
          ['ID', mono(img.id)],
          ['Organization', img.organizationId || 'global'],
          ['Region', img.regionId],
          ['Visibility', img.visibility],
          ['Kind', img.kind],
          ['Disk format', img.diskFormat],
          ['Architecture', img.architecture],
          ['Kernel', kernelLink()],
          (img.dockerTags || []).length
            ? ['Docker tags', img.dockerTags.map((t, i) => [i ? ' ' : null, h('code.wrap', {}, t)])]
            : null,
          ['OS', img.os ? [img.os.family, img.os.distro, img.os.version].filter(Boolean).join(' ') : null],
          ['Size', img.sizeBytes === null ? null : `${fmtBytes(img.sizeBytes)} (${img.sizeBytes.toLocaleString('en')} bytes)`],
          ['SHA-256', mono(img.sha256)],
          ['Protected', img.protected ? 'yes' : 'no'],
          ['Created', fmtDate(img.createdAt)],
          ['Updated', fmtDate(img.updatedAt)],
          ['Revision', String(img.revision)],
        ])),
        statusCard,
        h('section.card', { 'aria-labelledby': 'pv-h' }, h('h2', { id: 'pv-h' }, 'Provenance (read-only)'), dl([
          ['Source', img.provenance.source],
          ['Reference', mono(img.provenance.reference)],
          ['Digest', mono(img.provenance.digest)],
          ['Imported by', img.provenance.importedBy],
          ['Imported at', fmtDate(img.provenance.importedAt)],
        ]),
        h('h3', {}, 'Reserved tags'),
        reserved.length
          ? h('table.kv', {}, h('caption.visually-hidden', {}, 'Reserved tags'), h('tbody', {}, reserved.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))))
          : h('p.muted', {}, 'None.')),
        editable
          ? h('section.card', { 'aria-labelledby': 'tg-h' }, h('h2', { id: 'tg-h' }, 'User tags'), tagEditor())
          : h('section.card', { 'aria-labelledby': 'tg-h' }, h('h2', { id: 'tg-h' }, 'User tags'), userTagsReadOnly(), h('p.muted', {}, readOnlyWhy())),
        editable
          ? h('section.card', { 'aria-labelledby': 'ds-h' }, h('h2', { id: 'ds-h' }, 'Description'), descriptionEditor())
          : h('section.card', { 'aria-labelledby': 'ds-h' }, h('h2', { id: 'ds-h' }, 'Description'), h('p.description', {}, img.description || '—')),
        consumers,
      ),
    );
    consumersSection().then((c) => replace(consumers, c));
    if (s.state === 'importing') poll(statusCard);
  }

  // The kernel the image boots with, linked to its detail; its name is read through v1 under the
  // image's organization (global kernels under the organization the caller acts for).
  function kernelLink() {
    if (!img.kernelId) return h('span.muted', {}, 'none');
    const korg = img.organizationId || org;
    const a = h('a.kernel-link', { href: `#/kernel/${enc(img.regionId)}/${enc(korg)}/${enc(img.kernelId)}` }, h('code.wrap', {}, img.kernelId));
    api(`${v1(korg, img.regionId)}/kernels/${enc(img.kernelId)}`).then(
      (r) => replace(a, r.data.name, h('span.muted', {}, ` ${r.data.version} · ${r.data.architecture}${r.data.organizationId ? '' : ' · global'}`)),
      () => {},
    );
    return a;
  }

  function statusList(reason) {
    const s = img.status;
    return dl([
      ['State', s.state === 'failed' ? h(`span.state.state-${s.state}`, {}, s.state) : statusCell(img)],
      ['Reason', reason],
      ['Bytes', s.bytesTotal ? `${fmtBytes(s.bytesDone)} of ${fmtBytes(s.bytesTotal)}` : fmtBytes(s.bytesDone)],
    ]);
  }

  // While importing, only the status card is refreshed, so edits in progress elsewhere survive;
  // once the import ends the whole view is drawn again (size, digest, provenance are known).
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
        img = r.data;
        etag = r.etag;
        render();
        return;
      }
      // Progress alone moves the revision: adopt the new ETag only when nothing the editors show
      // has changed, so another person's edit still ends in a conflict, never in a silent overwrite.
      const editable = (i) => JSON.stringify([i.name, i.description, i.protected, i.tags]);
      if (editable(r.data) === editable(img)) {
        img = r.data;
        etag = r.etag;
      } else img = { ...img, status: r.data.status };
      replace(card, h('h2', { id: 'st-h' }, 'Status'), statusList(null));
      poll(card);
    }, 1000);
  }

  try {
    await fetchImage();
  } catch (e) {
    replace(main, h('nav.crumbs', {}, h('a', { href: listHref }, 'Images')), errorBox(e));
    return;
  }
  render();
}
