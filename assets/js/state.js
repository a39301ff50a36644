// App-wide context and the theme (light, dark or system; kept in localStorage).

import { createContext, useContext } from './lib.js';

export const AppContext = createContext(null);
export const useApp = () => useContext(AppContext);

const THEME_KEY = 'confab.theme';

export function getTheme() {
  try {
    const t = localStorage.getItem(THEME_KEY);
    return t === 'light' || t === 'dark' ? t : 'system';
  } catch {
    return 'system';
  }
}

export function setTheme(t) {
  try {
    if (t === 'light' || t === 'dark') localStorage.setItem(THEME_KEY, t);
    else localStorage.removeItem(THEME_KEY);
  } catch {
    /* storage unavailable */
  }
  applyTheme();
}

const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');

/** Sets data-theme on <html> to the effective theme (theme.js does this before first paint). */
export function applyTheme() {
  const t = getTheme();
  const effective = t === 'system' ? (darkQuery.matches ? 'dark' : 'light') : t;
  document.documentElement.dataset.theme = effective;
  document.documentElement.style.colorScheme = effective;
}

export function watchSystemTheme() {
  const fn = () => applyTheme();
  darkQuery.addEventListener('change', fn);
  const onStorage = (e) => { if (e.key === THEME_KEY) applyTheme(); };
  window.addEventListener('storage', onStorage);
  return () => {
    darkQuery.removeEventListener('change', fn);
    window.removeEventListener('storage', onStorage);
  };
}

// ---- a message typed when the session ended ----------------------------------
// Kept in sessionStorage (this tab only) with the page and the user it
// belongs to, and given back once, after signing in, on that page.

const DRAFT_KEY = 'confab.draft';

/** The message being sent right now (the composer is already empty), for the 401 handler. */
export const sending = { text: null };

export function saveDraft(text, path, userId) {
  if (!text || !text.trim()) return;
  try {
    sessionStorage.setItem(DRAFT_KEY, JSON.stringify({ text, path, user: userId || null }));
  } catch {
    /* storage unavailable */
  }
}

function readDraft() {
  try {
    const d = JSON.parse(sessionStorage.getItem(DRAFT_KEY) || 'null');
    return d && typeof d.text === 'string' ? d : null;
  } catch {
    return null;
  }
}

/** Whether a draft waits for the person to sign in again. */
export function hasDraft() {
  return !!readDraft();
}

/** The draft for `path` and user `userId`, removed from storage; else null. */
export function takeDraft(path, userId) {
  const d = readDraft();
  if (!d || d.path !== path || (d.user && userId && d.user !== userId)) return null;
  try {
    sessionStorage.removeItem(DRAFT_KEY);
  } catch {
    /* storage unavailable */
  }
  return d.text;
}
