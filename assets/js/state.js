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
