// The API client: the bearer token lives in sessionStorage only (never in a URL), every call
// goes to this origin, errors become ApiError with the server's code and message.

const KEY = 'strata.console.token';
const listeners = new Set();

function b64urlJson(part) {
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** The token's claims, for display only: the server verifies the token on every call. */
export function decodeClaims(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new Error('This is not a JWT (expected three dot-separated parts).');
  let c;
  try {
    c = b64urlJson(parts[1]);
  } catch {
    throw new Error('The token payload is not readable JSON.');
  }
  return {
    sub: typeof c.sub === 'string' ? c.sub : '',
    orgs: Array.isArray(c.org_ids) ? c.org_ids.filter((o) => typeof o === 'string') : [],
    scopes: typeof c.scope === 'string' ? c.scope.split(' ').filter(Boolean) : [],
    admin: c.platform_admin === true,
    exp: typeof c.exp === 'number' ? c.exp : null,
  };
}

export const session = {
  get token() {
    return sessionStorage.getItem(KEY);
  },
  get claims() {
    const t = this.token;
    if (!t) return null;
    try {
      return decodeClaims(t);
    } catch {
      return null;
    }
  },
  signIn(token) {
    decodeClaims(token);
    sessionStorage.setItem(KEY, token);
  },
  forget() {
    sessionStorage.removeItem(KEY);
  },
  /** Forgets the token and tells the app (which shows sign-in with `message`). */
  signOut(message) {
    sessionStorage.removeItem(KEY);
    for (const l of listeners) l(message);
  },
  onSignOut(fn) {
    listeners.add(fn);
  },
  expired() {
    const c = this.claims;
    return Boolean(c && c.exp !== null && c.exp * 1000 <= Date.now());
  },
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.requestId = body && body.requestId;
  }
}

async function readError(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  return new ApiError(res.status, body);
}

function handleUnauthorized(err) {
  if (err.status === 401) {
    session.signOut(
      session.expired() ? 'Your token has expired. Paste a new one.' : `The server refused the token: ${err.message}`,
    );
  }
  return err;
}

/** One API call. Returns {data, etag, status}; throws ApiError (401 also signs out). */
export async function api(path, { method = 'GET', body, ifMatch, signal, auth = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (auth) {
    const t = session.token;
    if (!t) throw handleUnauthorized(new ApiError(401, { error: 'unauthorized', message: 'not signed in' }));
    headers.Authorization = `Bearer ${t}`;
  }
  if (body !== undefined) headers['Content-Type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
  if (ifMatch) headers['If-Match'] = ifMatch;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { error: 'network', message: 'The server could not be reached.' });
  }
  if (!res.ok) throw handleUnauthorized(await readError(res));
  const data = res.status === 204 ? null : await res.json();
  return { data, etag: res.headers.get('ETag'), status: res.status };
}

export const enc = encodeURIComponent;
export const v1 = (org, region) => `/api/v1/organizations/${enc(org)}/regions/${enc(region)}`;

/** PUT a file with upload progress (fetch cannot report it). Resolves with the image. */
export function uploadFile(url, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.setRequestHeader('Authorization', `Bearer ${session.token}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(handleUnauthorized(new ApiError(xhr.status, xhr.response)));
    };
    xhr.onerror = () => reject(new ApiError(0, { error: 'network', message: 'The upload was interrupted.' }));
    xhr.send(file);
  });
}
