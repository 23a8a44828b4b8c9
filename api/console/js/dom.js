// DOM helpers. Text always goes in through text nodes, never parsed as HTML, so names, tags and
// messages from the API cannot become markup.

/** h('tag.class', {attr: value, onclick: fn}, ...children): children are nodes or strings. */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = [el.className, v].filter(Boolean).join(' ');
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${UNITS[i]}`;
}

export function fmtDate(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/:\d\dZ$/, 'Z');
}

export function fmtCount(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString('en');
}

/** A labelled progress bar (role=progressbar); `total` may be unknown. */
export function progress(done, total, label) {
  const pct = total ? Math.min(100, Math.round((done / total) * 100)) : null;
  const bar = h('div.bar', {
    role: 'progressbar',
    'aria-label': label,
    'aria-valuemin': 0,
    'aria-valuemax': 100,
    'aria-valuenow': pct ?? undefined,
    'aria-valuetext': pct === null ? `${fmtBytes(done)} so far` : `${pct}%`,
  });
  const fill = h('div.bar-fill' + (pct === null ? '.indeterminate' : ''));
  if (pct !== null) fill.style.width = `${pct}%`;
  bar.appendChild(fill);
  return bar;
}

let seq = 0;
export function uid(prefix) {
  seq += 1;
  return `${prefix}-${seq}`;
}

/** A <label> + control pair; returns {wrap, control}. */
export function field(labelText, control, hint) {
  if (!control.id) control.id = uid('f');
  const wrap = h('div.field', {}, h('label', { for: control.id }, labelText), control);
  if (hint) {
    const hid = uid('hint');
    control.setAttribute('aria-describedby', hid);
    wrap.appendChild(h('div.hint', { id: hid }, hint));
  }
  return wrap;
}

/** An API error as the operator should see it: message, code, and consumers for image-in-use. */
export function errorBox(err) {
  const box = h('div.error', { role: 'alert' });
  if (!err) return box;
  box.appendChild(h('strong', {}, err.message || 'Request failed'));
  if (err.code) box.appendChild(h('span.code', {}, ` (${err.code}${err.status ? `, HTTP ${err.status}` : ''})`));
  if (err.code === 'image-in-use' && Array.isArray(err.consumers) && err.consumers.length) {
    box.appendChild(h('div', {}, 'Used by:'));
    box.appendChild(
      h('ul', {}, err.consumers.map((c) => h('li', {}, [c.kind, c.id, c.organizationId && `(${c.organizationId})`].filter(Boolean).join(' / ')))),
    );
  }
  if (err.code === 'kernel-in-use') box.appendChild(kernelInUse(err));
  if (err.requestId) box.appendChild(h('div.hint', {}, `request id ${err.requestId}`));
  return box;
}

/**
 * `409 kernel-in-use`: the message gives the number of images booting with the kernel, the ids of
 * those the caller may see, and the consumers. Shown as a count and a list (linked when the caller
 * passes `err.imageHref(id)`).
 */
export function parseKernelInUse(message) {
  const m = /(\d+) image\(s\) reference it(?: \(those visible to you: ([^)]*)\))?/.exec(message || '');
  const c = /consumers are registered: ([^;]*)/.exec(message || '');
  return {
    images: m ? Number(m[1]) : 0,
    visible: m && m[2] ? m[2].split(',').map((x) => x.trim()).filter(Boolean) : [],
    consumers: c ? c[1].split(',').map((x) => x.trim()).filter(Boolean) : [],
  };
}

function kernelInUse(err) {
  const u = parseKernelInUse(err.message);
  const out = h('div.in-use');
  if (u.images) {
    const hidden = u.images - u.visible.length;
    out.appendChild(h('div', {}, `${u.images} image${u.images === 1 ? '' : 's'} boot${u.images === 1 ? 's' : ''} with this kernel${hidden > 0 ? ` (${hidden} not visible to you)` : ''}:`));
    if (u.visible.length) {
      out.appendChild(h('ul.in-use-images', { 'aria-label': 'Images using this kernel' }, u.visible.map((id) =>
        h('li', {}, err.imageHref ? h('a', { href: err.imageHref(id) }, h('code', {}, id)) : h('code', {}, id)))));
    }
  }
  if (u.consumers.length) {
    out.appendChild(h('div', {}, 'Consumers:'));
    out.appendChild(h('ul', {}, u.consumers.map((c) => h('li', {}, c))));
  }
  return out;
}
