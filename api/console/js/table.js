// A generic resource table: columns, sortable headers, keyset paging, live row updates. Views
// (images today; kernels later) describe their columns and supply pages; this module owns
// markup, keyboard behaviour and the small-screen card layout (data-label on each cell).

import { h, replace } from './dom.js';

/**
 * columns: [{label, render(item) -> Node|string, sort?: {asc, desc}, className?}]
 * sort: the current sort value; onSort(value) is called with the next one.
 */
export function resourceTable({ caption, columns, sort, onSort, empty = 'Nothing here.' }) {
  const thead = h(
    'thead',
    {},
    h(
      'tr',
      {},
      columns.map((c) => {
        if (!c.sort) return h('th', { scope: 'col' }, c.label);
        const dir = sort === c.sort.asc ? 'ascending' : sort === c.sort.desc ? 'descending' : 'none';
        const next = dir === 'ascending' && c.sort.desc ? c.sort.desc : c.sort.asc;
        const arrow = dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : '';
        return h(
          'th',
          { scope: 'col', 'aria-sort': dir },
          h(
            'button.sort',
            { type: 'button', onclick: () => onSort(next), title: `Sort by ${c.label.toLowerCase()}` },
            c.label,
            h('span', { 'aria-hidden': 'true' }, arrow),
          ),
        );
      }),
    ),
  );
  const tbody = h('tbody');
  const table = h('table.resources', {}, h('caption.visually-hidden', {}, caption), thead, tbody);
  const wrap = h('div.table-wrap', {}, table);

  function row(item) {
    return h(
      'tr',
      {},
      columns.map((c) => h('td', { 'data-label': c.label, class: c.className }, c.render(item))),
    );
  }

  return {
    el: wrap,
    setItems(items) {
      if (!items.length) replace(tbody, h('tr', {}, h('td.empty', { colspan: columns.length }, empty)));
      else replace(tbody, items.map(row));
    },
    setBusy(busy) {
      table.setAttribute('aria-busy', busy ? 'true' : 'false');
    },
  };
}

/** Previous / next buttons for keyset paging. */
export function pager({ page, hasPrev, hasNext, onPrev, onNext, count }) {
  return h(
    'nav.pager',
    { 'aria-label': 'Pages' },
    h('button', { type: 'button', disabled: !hasPrev, onclick: onPrev }, '← Previous'),
    h('span.page-info', { 'aria-live': 'polite' }, `Page ${page} · ${count} shown`),
    h('button', { type: 'button', disabled: !hasNext, onclick: onNext }, 'Next →'),
  );
}
