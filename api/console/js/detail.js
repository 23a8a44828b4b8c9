// What the image and kernel details share: the property list, monospace values, and saving a
// change with If-Match (a conflict says someone else changed it and offers a reload).

import { h, replace, errorBox } from './dom.js';
import { api, ApiError } from './api.js';

export function dl(rows) {
  return h('dl.props', {}, rows.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export function mono(v) {
  return v ? h('code.wrap', {}, v) : '—';
}

// `etag()` reads the revision the page holds, `apply(r)` takes the answer of a saved change;
// `render` and `reload` are the page's own.
export function patcher({ base, noun, notices, etag, apply, render, reload }) {
  function conflict(e) {
    if (e instanceof ApiError && e.code === 'precondition-failed') {
      return h(
        'div.error',
        { role: 'alert' },
        h('strong', {}, `Someone else changed this ${noun} since you opened it.`),
        ' Your change was not saved. ',
        h('button', { type: 'button', onclick: () => reload() }, `Reload the ${noun}`),
        h('span.code', {}, ' (precondition-failed)'),
      );
    }
    return errorBox(e);
  }

  async function patch(body, okMessage) {
    replace(notices);
    try {
      apply(await api(base, { method: 'PATCH', body, ifMatch: etag() }));
      render();
      replace(notices, h('p.ok', { role: 'status' }, okMessage));
    } catch (e) {
      replace(notices, conflict(e));
    }
  }

  return { patch };
}
