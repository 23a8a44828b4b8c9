import { h, errorBox, field } from './dom.js';
import { api, session } from './api.js';

export async function renderSignIn(root, { message, onSignedIn }) {
  const token = h('textarea', {
    rows: 5,
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'eyJhbGciOi…',
  });
  const err = h('div');
  const hint = h('div.devkey');
  const form = h(
    'form.card.signin',
    {
      onsubmit: async (e) => {
        e.preventDefault();
        err.replaceChildren();
        const value = token.value.trim();
        try {
          session.signIn(value);
        } catch (e2) {
          err.replaceChildren(errorBox({ message: e2.message, code: 'invalid-token' }));
          return;
        }
        if (session.expired()) {
          session.forget();
          err.replaceChildren(errorBox({ message: 'This token has already expired.', code: 'token-expired' }));
          return;
        }
        try {
          const { data } = await api('/api/v2/regions');
          onSignedIn(data.items);
        } catch (e3) {
          err.replaceChildren(errorBox(e3));
        }
      },
    },
    h('h1', {}, 'Sign in to Strata'),
    message ? h('p.notice', { role: 'status' }, message) : null,
    field('Bearer token', token, 'Kept in this browser tab only (sessionStorage); never put in a URL.'),
    h('button.primary', { type: 'submit' }, 'Sign in'),
    err,
    hint,
  );
  root.replaceChildren(h('main.narrow', { id: 'main' }, form));
  token.focus();
  try {
    const { data } = await api('/api/v2/sign-in', { auth: false });
    if (data.devKey) {
      hint.replaceChildren(
        h('h2', {}, 'Development key enabled'),
        h('p', {}, 'This server trusts its development signing key. On the server, mint a token with:'),
        h('pre', {}, h('code', {}, 'strata token --org ORG')),
        h('p', {}, 'Add --admin for a platform admin, --ttl SECONDS to change the one-hour lifetime, --sub NAME for the subject.'),
      );
    }
  } catch {
    // The hint is optional.
  }
}
