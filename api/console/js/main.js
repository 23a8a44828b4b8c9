// Boot and routing. Routes live in the hash (#/images?region=...), so the filters are in the URL
// (shareable, reloadable) while the token never is.

import { h, replace } from './dom.js';
import { api, session } from './api.js';
import { renderSignIn } from './signin.js';
import { renderImages } from './images.js';
import { renderImageDetail } from './image-detail.js';
import { renderUsage } from './usage.js';
import { renderKernels } from './kernels.js';
import { renderKernelDetail } from './kernel-detail.js';

const root = document.getElementById('app');
const ctx = { regions: null, cleanup: null, gen: 0 };

export function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/images';
  const [path, query = ''] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

export function navigate(path, params, { replace: rep = false } = {}) {
  const q = params && params.toString();
  const hash = `#${path}${q ? `?${q}` : ''}`;
  if (location.hash === hash) route();
  else if (rep) {
    history.replaceState(null, '', hash);
    route();
  } else location.hash = hash;
}

function fmtExpiry(exp) {
  if (exp === null) return 'no expiry';
  const secs = Math.round(exp - Date.now() / 1000);
  const at = new Date(exp * 1000).toISOString().slice(11, 16);
  if (secs <= 0) return 'expired';
  if (secs < 3600) return `expires in ${Math.ceil(secs / 60)} min (${at} UTC)`;
  return `expires in ${Math.floor(secs / 3600)} h ${Math.round((secs % 3600) / 60)} min (${at} UTC)`;
}

function header(active) {
  const c = session.claims;
  const link = (href, label, key) =>
    h('a', { href, 'aria-current': active === key ? 'page' : undefined }, label);
  const expiry = h('span.expiry', { title: 'Token expiry' }, fmtExpiry(c.exp));
  const timer = setInterval(() => {
    if (session.expired()) session.signOut('Your token has expired. Paste a new one to continue.');
    else expiry.textContent = fmtExpiry(c.exp);
  }, 5000);
  ctx.headerTimer = timer;
  return h(
    'header.top',
    {},
    h('a.skip', { href: '#main', onclick: (e) => { e.preventDefault(); document.getElementById('main')?.focus(); } }, 'Skip to content'),
    h('span.brand', {}, 'Strata'),
    h('nav.main-nav', { 'aria-label': 'Views' }, link(ctx.lastImages || '#/images', 'Images', 'images'), link(ctx.lastKernels || '#/kernels', 'Kernels', 'kernels'), link('#/usage', 'Usage', 'usage')),
    h(
      'div.who',
      { role: 'group', 'aria-label': 'Signed in as' },
      h('span.sub', { title: 'Token subject' }, c.sub || '(no subject)'),
      c.admin ? h('span.badge.admin', {}, 'platform admin') : null,
      h('span.orgs', { title: 'Organizations' }, c.orgs.length ? c.orgs.join(', ') : 'no organizations'),
      expiry,
      h('button.link', { type: 'button', onclick: () => session.signOut('Signed out.') }, 'Sign out'),
    ),
  );
}

async function regions() {
  if (!ctx.regions) ctx.regions = (await api('/api/v2/regions')).data.items.map((r) => r.id);
  return ctx.regions;
}

export async function route() {
  // A newer navigation supersedes this one: its timers are stopped at once, its late results dropped.
  ctx.gen += 1;
  const gen = ctx.gen;
  if (ctx.cleanup) ctx.cleanup();
  ctx.cleanup = null;
  // A dialog of the previous view (import, delete) must not stay over the next one (sign-in).
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  clearInterval(ctx.headerTimer);
  if (!session.token || session.expired()) {
    const message = session.token ? 'Your token has expired. Paste a new one to continue.' : ctx.signOutMessage;
    session.forget();
    ctx.regions = null;
    return renderSignIn(root, {
      message,
      onSignedIn: (items) => {
        ctx.regions = items.map((r) => r.id);
        ctx.signOutMessage = null;
        if (location.hash.startsWith('#/signin') || !location.hash) navigate('/images', null, { replace: true });
        else route();
      },
    });
  }
  const { parts, params } = parseHash();
  const view = parts[0] || 'images';
  // The Images link and the detail's breadcrumb go back to the list as it was left.
  if (view === 'images') ctx.lastImages = location.hash;
  if (view === 'kernels') ctx.lastKernels = location.hash;
  const main = h('main', { id: 'main', tabindex: '-1' });
  replace(root, header({ image: 'images', kernel: 'kernels' }[view] || view), main);
  let list;
  try {
    list = await regions();
    if (gen !== ctx.gen) return undefined;
  } catch (e) {
    if (!session.token) return undefined;
    replace(main, h('div.error', { role: 'alert' }, e.message));
    return undefined;
  }
  const env = { main, regions: list, params, navigate, listHref: ctx.lastImages, kernelsHref: ctx.lastKernels, setCleanup: (fn) => {
    if (gen === ctx.gen) ctx.cleanup = fn;
    else fn();
  } };
  if (view === 'image' && parts.length === 4) return renderImageDetail(env, { region: parts[1], org: parts[2], id: parts[3] });
  if (view === 'kernel' && parts.length === 4) return renderKernelDetail(env, { region: parts[1], org: parts[2], id: parts[3] });
  if (view === 'kernels') return renderKernels(env);
  if (view === 'usage') return renderUsage(env);
  return renderImages(env);
}

session.onSignOut((message) => {
  ctx.signOutMessage = message;
  ctx.regions = null;
  ctx.lastImages = null;
  ctx.lastKernels = null;
  route();
});
window.addEventListener('hashchange', route);
route();
