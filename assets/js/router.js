// Client-side routes with the History API. Same-origin <a href="/…"> clicks
// are intercepted globally, so plain links work everywhere.

const listeners = new Set();

export function currentRoute() {
  return parse(location.pathname, location.search);
}

export function parse(pathname, search = '') {
  const q = new URLSearchParams(search);
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const r = { path: pathname, query: q, name: 'notfound', params: {} };
  if (parts.length === 0) r.name = 'chat';
  else if (parts[0] === 'c' && parts.length === 2) Object.assign(r, { name: 'chat', params: { id: parts[1] } });
  else if (['login', 'register', 'setup', 'forgot-password', 'reset-password', 'verify-email', 'two-factor'].includes(parts[0]) && parts.length === 1) r.name = parts[0];
  else if (parts[0] === 'settings' && parts.length <= 2) Object.assign(r, { name: 'settings', params: { section: parts[1] || '' } });
  else if (parts[0] === 'admin' && parts.length <= 2) Object.assign(r, { name: 'admin', params: { section: parts[1] || 'users' } });
  return r;
}

export function navigate(to, { replace = false, state = null } = {}) {
  const url = new URL(to, location.origin);
  if (url.origin !== location.origin) {
    location.href = to;
    return;
  }
  const target = url.pathname + url.search + url.hash;
  if (target === location.pathname + location.search + location.hash && !replace) return;
  if (replace) history.replaceState(state, '', target);
  else history.pushState(state, '', target);
  emit();
}

export function onRouteChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit() {
  const r = currentRoute();
  for (const fn of listeners) fn(r);
}

window.addEventListener('popstate', emit);

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest?.('a[href]');
  if (!a || a.target || a.hasAttribute('download') || a.closest('.md')) return;
  const href = a.getAttribute('href');
  if (!href.startsWith('/') || href.startsWith('//') || href.startsWith('/api/')) return;
  e.preventDefault();
  navigate(href);
});

/** Where to go after signing in: only paths on this site. */
export function safeNext(next) {
  if (typeof next !== 'string' || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  if (/^\/(login|register|setup|forgot-password|reset-password|verify-email|two-factor)\b/.test(next)) return '/';
  return next;
}
