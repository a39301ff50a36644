// Words a person reads: error sentences (what happened and what to do, from
// the API's stable codes), plain-text titles, and the sidebar's date groups.
// No imports, so the rules can be checked without a browser.

/** Local time `secs` from now: "9:00 AM", "9:00 AM tomorrow" or "9:00 AM on Monday". */
export function localTimeIn(secs, now = new Date()) {
  const at = new Date(now.getTime() + secs * 1000);
  const time = at.toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' });
  if (at.toDateString() === now.toDateString()) return time;
  const tomorrow = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
  if (at.toDateString() === tomorrow.toDateString()) return `${time} tomorrow`;
  return `${time} on ${at.toLocaleDateString(undefined, { weekday: 'long' })}`;
}

function sentence(s) {
  const t = String(s || '').trim();
  if (!t) return 'Something went wrong.';
  const c = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(c) ? c : c + '.';
}

function waitFor(secs) {
  if (!secs) return 'Wait a moment';
  if (secs < 90) return `Wait ${secs} second${secs === 1 ? '' : 's'}`;
  return `Wait ${Math.ceil(secs / 60)} minutes`;
}

/**
 * What an API error means for the person: {text, retry}. `retry` says
 * whether trying the same thing again can succeed (quota, not-found and
 * validation errors cannot). `overrides`: {CODE: text} for a screen that
 * knows better (the password form's INVALID_CREDENTIALS).
 */
export function describeError(e, overrides = {}) {
  const code = e?.code || 'INTERNAL';
  if (overrides[code]) return { text: overrides[code], retry: false };
  const ra = Number(e?.retry_after) || 0;
  switch (code) {
    case 'INVALID_CREDENTIALS':
      return { text: 'The username or password is wrong. Check both and try again.', retry: false };
    case 'QUOTA_EXCEEDED': {
      const what = /token/i.test(e?.message || '') ? 'token' : 'message';
      const when = ra ? ` It resets at ${localTimeIn(ra)} (your time); you can send again then.` : ' It resets at midnight UTC.';
      return { text: `You have used up today's ${what} quota.${when} An administrator can raise your quota.`, retry: false };
    }
    case 'RATE_LIMITED':
      return { text: `Too many requests in a short time. ${waitFor(ra)} and try again.`, retry: true };
    case 'PROVIDER_UNREACHABLE':
      return { text: 'The model\'s provider could not be reached. Try again in a moment, or pick another model.', retry: true };
    case 'PROVIDER_TIMEOUT':
      return { text: 'The model took too long to answer. Try again, or pick another model.', retry: true };
    case 'PROVIDER_ERROR':
      return { text: 'The model\'s provider answered with an error. Try again, or pick another model.', retry: true };
    case 'MODEL_NOT_FOUND':
      return { text: 'This model is not available any more. Pick another model from the menu at the top.', retry: false };
    case 'NOT_FOUND':
    case 'CONVERSATION_NOT_FOUND':
      return { text: 'This was not found: it may have been deleted. Start a new chat or pick one from the list.', retry: false };
    case 'NETWORK_ERROR':
      return { text: 'The server could not be reached. Check your connection and try again.', retry: true };
    case 'INVALID_TWO_FACTOR_CODE':
      return { text: 'That code is not right. Type the 6 digits your authenticator app shows now, or a recovery code.', retry: false };
    case 'CHALLENGE_EXPIRED':
      return { text: 'This sign-in took too long. Sign in again with your password.', retry: false };
    case 'TWO_FACTOR_ENROLMENT_REQUIRED':
      return { text: 'Set up two-factor sign-in before you continue (Settings → Two-factor sign-in).', retry: false };
    case 'INVALID_LINK':
      return { text: 'This link does not work any more: it was used, has expired, or a newer one replaced it. Ask for a new one.', retry: false };
    case 'MAIL_NOT_CONFIGURED':
      return { text: 'This server does not send email. Ask an administrator for a reset link.', retry: false };
    case 'SESSION_EXPIRED':
    case 'AUTH_REQUIRED':
      return { text: 'Your session has ended. Sign in again to continue.', retry: false };
    case 'USER_INACTIVE':
      return { text: 'This account is disabled. Ask an administrator to enable it again.', retry: false };
    case 'LOCAL_PASSWORDS_DISABLED':
      return { text: 'This server does not take confab passwords. Use a single sign-on button instead.', retry: false };
    case 'SSO_STATE_INVALID':
      return { text: 'That sign-in link was already used or has expired. Start the sign-in again.', retry: false };
    case 'SSO_NOT_LINKED':
      return { text: 'No account here is linked to that identity. Ask an administrator, or sign in another way and link it in Settings.', retry: false };
    case 'SSO_NOT_ALLOWED':
      return { text: 'That identity may not sign in to this server. Ask an administrator if you need access.', retry: false };
    case 'SSO_ALREADY_LINKED':
      return { text: 'That identity is already linked to another account.', retry: false };
    case 'SSO_LAST_SIGN_IN':
      return { text: 'This is your last way to sign in. Link another identity or set a password first.', retry: false };
    case 'SSO_ACCOUNT_EXISTS':
      return { text: 'An account with this name exists and is not linked to the directory. Ask an administrator.', retry: false };
    case 'SSO_PROVIDER_UNAVAILABLE':
      return { text: 'The sign-in provider could not be reached. Try again in a moment.', retry: true };
    case 'SSO_PROVIDER_REFUSED':
      return { text: 'The sign-in provider did not sign you in. Try again.', retry: true };
    case 'SSO_UNKNOWN_PROVIDER':
      return { text: 'That sign-in provider is not set up on this server.', retry: false };
    case 'SSO_TOKEN_AUDIENCE':
    case 'SSO_TOKEN_EXPIRED':
    case 'SSO_TOKEN_ISSUER':
    case 'SSO_TOKEN_SIGNATURE':
    case 'SSO_TOKEN_INVALID':
    case 'SSO_NONCE_MISMATCH':
      return { text: 'The sign-in provider sent an answer confab cannot trust, so you were not signed in. Try again; if it keeps happening, tell an administrator.', retry: true };
    case 'CSRF_INVALID':
      return { text: 'This page is out of date. Reload it and try again.', retry: false };
    case 'FORBIDDEN':
    case 'ADMIN_REQUIRED':
      return { text: 'You do not have permission to do that. Ask an administrator if you need it.', retry: false };
    case 'USERNAME_EXISTS':
      return { text: 'That username is taken. Choose another one.', retry: false };
    case 'REGISTRATION_CLOSED':
      return { text: 'This server does not take new accounts. Ask an administrator for one.', retry: false };
    case 'INVALID_INVITE':
      return { text: 'The invite code is not valid any more. Ask for a new invitation link.', retry: false };
    case 'PAYLOAD_TOO_LARGE':
      return { text: 'That is too large to send. Make it shorter and try again.', retry: false };
    case 'CONFLICT':
      return { text: `${sentence(e?.message)} Reload and try again.`, retry: false };
    case 'VALIDATION_FAILED':
      return { text: `${sentence(e?.message)} Correct it and try again.`, retry: false };
    case 'UNAVAILABLE':
    case 'SEARCH_UNAVAILABLE':
      return { text: 'This is not available right now. Try again in a moment.', retry: true };
    case 'INTERNAL':
      return { text: 'Something went wrong on the server. Try again; if it keeps happening, tell your administrator (with the details below).', retry: true };
    default:
      return { text: sentence(e?.message), retry: (e?.status || 500) >= 500 };
  }
}

/** A title as plain text: markdown emphasis, code, links and headings removed. */
export function plainTitle(t) {
  return String(t || '')
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`+([^`]*)`+/g, '$1')
    .replace(/(\*\*|__)(.+?)\1/g, '$2')
    .replace(/(^|[^\w*])[*_]([^*_\s][^*_]*?)[*_](?=[^\w*]|$)/g, '$1$2')
    .replace(/~~(.+?)~~/g, '$1')
    .replace(/^\s*(#{1,6}|>|[-*+])\s+/, '')
    .replace(/\s+/g, ' ')
    .trim();
}

const DAY = 86400000;

/**
 * The sidebar's group of a conversation updated at `iso`, seen at `now`:
 * Today, Yesterday, Previous 7 days, Previous 30 days, then "March 2026".
 */
export function dateGroup(iso, now = new Date()) {
  const t = new Date(iso);
  if (!Number.isFinite(t.getTime())) return 'Older';
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const days = Math.round((midnight - new Date(t.getFullYear(), t.getMonth(), t.getDate()).getTime()) / DAY);
  if (days <= 0) return 'Today';
  if (days === 1) return 'Yesterday';
  if (days <= 7) return 'Previous 7 days';
  if (days <= 30) return 'Previous 30 days';
  return t.toLocaleDateString(undefined, { month: 'long', year: 'numeric' });
}

/** Consecutive runs of `items` (newest first) with the same date group: [{title, items}]. */
export function groupByDate(items, now = new Date()) {
  const out = [];
  for (const c of items) {
    const g = dateGroup(c.updated_at, now);
    const last = out[out.length - 1];
    if (last && last.title === g) last.items.push(c);
    else out.push({ title: g, items: [c] });
  }
  return out;
}
