// Usage per organization in a region against each quota, as bars.

import { h, replace, field, fmtBytes, fmtCount, progress, errorBox } from './dom.js';
import { api, v1, session } from './api.js';

function quotaRow(label, q, fmt) {
  return h(
    'div.quota',
    {},
    h('div.quota-head', {}, h('span', {}, label), h('span', {}, `${fmt(q.used)} of ${fmt(q.limit)}`)),
    progress(q.used, q.limit, `${label}: ${fmt(q.used)} of ${fmt(q.limit)}`),
  );
}

export async function renderUsage(env) {
  const { main, regions, params, navigate } = env;
  const claims = session.claims;
  const region = regions.includes(params.get('region')) ? params.get('region') : regions[0];
  const sel = h(
    'select',
    { onchange: (e) => navigate('/usage', new URLSearchParams({ region: e.target.value })) },
    regions.map((r) => h('option', { value: r, selected: r === region }, r)),
  );
  const grid = h('div.usage-grid');
  replace(main, h('div.view-head', {}, h('h1', {}, 'Usage'), field('Region', sel)), grid);
  if (!claims.orgs.length) {
    replace(grid, h('p.notice', {}, 'This token names no organization; usage is kept per organization.'));
    return;
  }
  const cards = await Promise.all(
    claims.orgs.map(async (org) => {
      const card = h('section.card', { 'aria-label': `Usage of ${org}` }, h('h2', {}, org));
      try {
        const u = (await api(`${v1(org, region)}/usage`)).data;
        card.append(
          quotaRow('Images', u.images, fmtCount),
          quotaRow('Bytes', u.bytes, fmtBytes),
          quotaRow('Concurrent imports', u.concurrentImports, fmtCount),
        );
      } catch (e) {
        card.appendChild(e.status === 404 ? h('p.muted', {}, `Region ${region} is not open to ${org}.`) : errorBox(e));
      }
      return card;
    }),
  );
  replace(grid, cards);
}
