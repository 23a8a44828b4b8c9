// The import dialog: the sources this server supports (an upload, with a progress bar, or a URL
// the server fetches). A new source kind is one more entry in SOURCES.

import { h, replace, field, fmtBytes, progress, errorBox } from './dom.js';
import { api, v1, enc, uploadFile, session } from './api.js';

const SOURCES = [
  {
    id: 'upload',
    label: 'Upload a file',
    fields() {
      const file = h('input', { type: 'file', required: true });
      return { el: field('Raw disk image file', file, 'A raw disk with an MBR or GPT partition table.'), file };
    },
    source: () => ({ type: 'upload' }),
  },
  {
    id: 'url',
    label: 'Import from a URL',
    fields() {
      const url = h('input', { type: 'url', required: true, placeholder: 'https://example.com/disk.raw' });
      const sha = h('input', { type: 'text', pattern: '^(sha256:)?[0-9a-fA-F]{64}$', placeholder: 'optional' });
      return { el: h('div', {}, field('URL', url, 'The server fetches it in the background.'), field('Expected SHA-256', sha)), url, sha };
    },
    source: (f) => ({ type: 'url', url: f.url.value.trim(), ...(f.sha.value.trim() ? { sha256: f.sha.value.trim() } : {}) }),
  },
  {
    id: 'oci',
    label: 'Pull from an OCI registry',
    nameOptional: true,
    fields() {
      const reference = h('input', { type: 'text', required: true, placeholder: 'registry.example/library/debian:bookworm', maxlength: 512 });
      const platform = h('input', { type: 'text', placeholder: 'linux/amd64 (default: from the architecture)', pattern: '[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?' });
      const user = h('input', { type: 'text', autocomplete: 'off', placeholder: 'optional' });
      const pass = h('input', { type: 'password', autocomplete: 'off', placeholder: 'optional' });
      return {
        el: h(
          'div',
          {},
          field('Reference', reference, 'The server pulls it, flattens the layers and builds an ext4 root filesystem. Leave the name empty to derive it from the reference.'),
          field('Platform', platform),
          field('Registry username', user),
          field('Registry password', pass, 'Used for this pull only; never stored or shown.'),
        ),
        reference,
        platform,
        user,
        pass,
      };
    },
    source: (f) => ({
      type: 'oci',
      reference: f.reference.value.trim(),
      ...(f.platform.value.trim() ? { platform: f.platform.value.trim() } : {}),
      ...(f.user.value ? { credentials: { username: f.user.value, password: f.pass.value } } : {}),
    }),
  },
];

// The source types this server accepts, from its own OpenAPI document (fetched once): only
// those are offered.
let supported = null;
async function supportedSources() {
  if (!supported) {
    supported = fetch('/api/openapi.json')
      .then((r) => r.json())
      .then((doc) => new Set((doc.components.schemas.SourceSpec.oneOf || []).flatMap((v) => v.properties?.type?.enum || [])))
      .catch(() => new Set(['upload', 'url']));
  }
  return supported;
}

// Asked as soon as the console loads, so the dialog opens at once.
supportedSources();

export async function openImportDialog({ region, onCreated }) {
  const offered = await supportedSources();
  const sources = SOURCES.filter((s) => offered.has(s.id));
  const claims = session.claims;
  const dlg = h('dialog.import', { 'aria-labelledby': 'imp-title' });
  let created = null;
  // A platform admin's token may name no organization: then the admin types the one to act for.
  const org = claims.orgs.length
    ? h('select', { required: true }, claims.orgs.map((o) => h('option', { value: o }, o)))
    : h('input', { type: 'text', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._:\\-]{0,127}' });
  const global = claims.admin ? h('input', { type: 'checkbox' }) : null;
  const name = h('input', { type: 'text', required: true, pattern: '[a-z0-9]([a-z0-9._\\-]{0,61}[a-z0-9])?', placeholder: 'debian-12' });
  const arch = h('select', {}, h('option', { value: 'x86_64' }, 'x86_64'), h('option', { value: 'aarch64' }, 'aarch64'));
  const srcSlot = h('div');
  let current = null;
  let fields = null;
  const pick = (s) => {
    current = s;
    fields = s.fields();
    name.required = !s.nameOptional;
    replace(srcSlot, fields.el);
  };
  const radios = sources.map((s, i) =>
    h('label.check', {}, h('input', { type: 'radio', name: 'source', value: s.id, checked: i === 0, onchange: () => pick(s) }), s.label),
  );
  pick(sources[0]);
  const out = h('div', { 'aria-live': 'polite' });
  const submit = h('button.primary', { type: 'submit' }, 'Import');
  const cancel = h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel');
  const form = h(
    'form',
    {
      method: 'dialog',
      onsubmit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        replace(out);
        const orgId = org.value.trim();
        const body = { architecture: arch.value, source: current.source(fields) };
        if (name.value.trim()) body.name = name.value.trim();
        if (global && global.checked) body.visibility = 'global';
        let img;
        try {
          img = (await api(`${v1(orgId, region)}/images`, { method: 'POST', body })).data;
          created = img;
          cancel.textContent = 'Close';
        } catch (err) {
          submit.disabled = false;
          replace(out, errorBox(err));
          return;
        }
        if (current.id === 'upload') {
          const file = fields.file.files[0];
          const label = h('div.bytes', {}, `0 / ${fmtBytes(file.size)}`);
          const barSlot = h('div', {}, progress(0, file.size, 'Upload progress'));
          replace(out, h('p', {}, `Uploading ${file.name}…`), barSlot, label);
          try {
            await uploadFile(`${v1(orgId, region)}/images/${enc(img.id)}/file`, file, (done, total) => {
              replace(barSlot, progress(done, total, 'Upload progress'));
              label.textContent = `${fmtBytes(done)} / ${fmtBytes(total)}`;
            });
          } catch (err) {
            // The image exists now: a second submit would only be refused as name-taken.
            replace(out, errorBox(err), h('p', {}, `The image ${img.name} was created but has no bytes yet (pending): open it from the list to upload again or delete it.`));
            return;
          }
        }
        dlg.close();
      },
    },
    h('h2', { id: 'imp-title' }, `Import an image into ${region}`),
    field('Organization', org),
    global ? h('label.check', {}, global, 'Global image (visible to every organization)') : null,
    field('Name', name, '1-63 lowercase letters, digits, ".", "_" or "-".'),
    field('Architecture', arch),
    h('fieldset.group', {}, h('legend', {}, 'Source'), radios),
    srcSlot,
    out,
    h('div.actions', {}, cancel, submit),
  );
  dlg.appendChild(form);
  // The list is refreshed when the dialog closes after an image was created (also when its
  // upload failed and the operator read why), never under an error still being shown.
  dlg.addEventListener('close', () => {
    dlg.remove();
    if (created) onCreated(created);
  });
  document.body.appendChild(dlg);
  dlg.showModal();
  name.focus();
}
