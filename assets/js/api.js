// The JSON API client: CSRF token on every unsafe request, one error shape
// ({code, message, request_id}), and a 401 anywhere sends the person to the
// sign-in page and back.

let csrfToken = null;
let onUnauthorized = () => {};

export function setCsrf(token) {
  csrfToken = token || null;
}

/** Called with no arguments when any request answers 401 (except sign-in calls). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export class ApiError extends Error {
  constructor({ status = 0, code = 'INTERNAL', message = 'Something went wrong', request_id = null, retry_after = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.request_id = request_id;
    this.retry_after = retry_after;
  }
}

export const NETWORK_ERROR = 'NETWORK_ERROR';

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Headers for a request to the API. */
export function apiHeaders(method, extra = {}, json = false) {
  const headers = { Accept: 'application/json', ...extra };
  if (json) headers['Content-Type'] = 'application/json';
  if (UNSAFE.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  return headers;
}

/** Turn a non-2xx response into an ApiError (and handle 401). */
export async function errorFrom(res, { authRedirect = true } = {}) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  const err = new ApiError({
    status: res.status,
    code: body?.code || (res.status === 404 ? 'NOT_FOUND' : res.status >= 500 ? 'INTERNAL' : 'HTTP_' + res.status),
    message: body?.message || res.statusText || `HTTP ${res.status}`,
    request_id: body?.request_id || res.headers.get('x-request-id'),
    retry_after: Number(res.headers.get('retry-after')) || null,
  });
  if (res.status === 401 && authRedirect) onUnauthorized(err);
  return err;
}

export function networkError(e) {
  if (e instanceof ApiError) return e;
  if (e?.name === 'AbortError') return e;
  return new ApiError({ code: NETWORK_ERROR, message: 'The server could not be reached. Check your connection.' });
}

/**
 * api('GET', '/conversations', null, {query: {limit: 50}})
 * Resolves with the parsed JSON (null for 204); rejects with ApiError.
 */
export async function api(method, path, body = undefined, opts = {}) {
  const { query, signal, headers = {}, authRedirect = true } = opts;
  let url = '/api' + path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    const s = q.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }
  const hasBody = body !== undefined;
  let res;
  try {
    res = await fetch(url, {
      method,
      headers: apiHeaders(method, headers, hasBody),
      body: hasBody ? JSON.stringify(body) : undefined,
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    throw networkError(e);
  }
  if (!res.ok) throw await errorFrom(res, { authRedirect });
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, query, opts = {}) => api('GET', path, undefined, { ...opts, query });
export const post = (path, body = {}, opts) => api('POST', path, body, opts);
export const patch = (path, body = {}, opts) => api('PATCH', path, body, opts);
export const put = (path, body = {}, opts) => api('PUT', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

// ---- search ---------------------------------------------------------------------

/** The instant title filter over conversations the sidebar has loaded. */
export function filterByTitle(q, loaded) {
  const needle = q.trim().toLocaleLowerCase();
  if (!needle) return [];
  return loaded.filter((c) => (c.title || '').toLocaleLowerCase().includes(needle));
}

/**
 * Full-text search: GET /api/search. Resolves with {hits, next_cursor, partial};
 * a malformed query rejects with ApiError 400 VALIDATION_FAILED.
 */
export function searchMessages(q, { limit = 20, cursor, conversationId, role, signal } = {}) {
  return get('/search', { q, limit, cursor, conversation_id: conversationId, role }, { signal });
}
