// confab's browser app: boot, session, routing, theme and global shortcuts.
// Plain ES modules, no build step (see assets/vendor/manifest.json for the
// pinned third-party files).

import { html, render, useState, useEffect, useCallback, useRef } from './js/lib.js';
import { get, setCsrf, setUnauthorizedHandler, ApiError } from './js/api.js';
import { currentRoute, navigate, onRouteChange, safeNext } from './js/router.js';
import { AppContext, applyTheme, watchSystemTheme, saveDraft, hasDraft, sending } from './js/state.js';
import { DialogHost, Toasts, Spinner, ErrorBanner, Logo } from './js/ui.js';
import { SetupScreen, LoginScreen, RegisterScreen } from './js/auth.js';
import { EnrolScreen, ForgotScreen, ResetScreen, VerifyEmailScreen } from './js/security.js';
import { ChatScreen } from './js/chat.js';
import { SettingsScreen } from './js/settings.js';
import { AdminScreen } from './js/admin.js';
import { preloadLibs } from './js/markdown.js';
import { loadBranding, pageTitle, BrandName, useBranding } from './js/branding.js';
import { wipeKeys, bindUser } from './js/own-keys.js';

function App() {
  const [route, setRoute] = useState(currentRoute());
  const [server, setServer] = useState(null);
  const [me, setMe] = useState(undefined); // undefined: not known yet; null: signed out
  const [bootError, setBootError] = useState(null);

  useEffect(() => onRouteChange(setRoute), []);
  // Own keys live only as long as the sign-in: gone when signed out (or
  // the session ended), and never another user's.
  useEffect(() => {
    if (me === null) wipeKeys();
    else if (me) bindUser(me.id);
  }, [me]);
  useEffect(() => watchSystemTheme(), []);

  const boot = useCallback(async () => {
    setBootError(null);
    try {
      const [s] = await Promise.all([get('/server'), loadBranding()]);
      setServer(s);
      if (s.setup_required) {
        setMe(null);
        return;
      }
      try {
        const m = await get('/auth/me', null, { authRedirect: false });
        setCsrf(m.csrf_token);
        setMe(withTwoFactor(m));
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) setMe(null);
        else throw e;
      }
    } catch (e) {
      setBootError(e);
    }
  }, []);

  useEffect(() => {
    boot();
    preloadLibs();
  }, [boot]);

  // A 401 anywhere: sign in, then come back here (with what was being typed).
  const meRef = useRef(me);
  meRef.current = me;
  useEffect(() => {
    setUnauthorizedHandler(() => {
      const typed = sending.text || document.getElementById('message-box')?.value;
      if (typed && !hasDraft()) saveDraft(typed, location.pathname, meRef.current?.id);
      setMe(null);
      setCsrf(null);
      const r = currentRoute();
      if (SIGNED_OUT_PAGES.includes(r.name)) return;
      navigate('/login?next=' + encodeURIComponent(location.pathname + location.search), { replace: true });
    });
  }, []);

  const signedIn = useCallback((loginAnswer, next) => {
    setCsrf(loginAnswer.csrf_token);
    setMe(withTwoFactor(loginAnswer));
    setServer((s) => (s ? { ...s, setup_required: false } : s));
    const to = safeNext(next);
    // A shared page is a document of its own, not a route of the app.
    if (to.startsWith('/s/')) location.replace(to);
    else navigate(to, { replace: true });
  }, []);

  // Route guards.
  useEffect(() => {
    if (me === undefined || !server) return;
    const needsUser = ['chat', 'settings', 'admin', 'notfound', 'two-factor'].includes(route.name);
    if (server.setup_required && route.name !== 'setup') {
      navigate('/setup' + (route.name === 'setup' ? location.search : ''), { replace: true });
    } else if (!me && needsUser) {
      const here = location.pathname + location.search;
      navigate(here === '/' ? '/login' : '/login?next=' + encodeURIComponent(here), { replace: true });
    } else if (me && me.two_factor?.enrolment_required && route.name !== 'two-factor' && route.name !== 'verify-email') {
      navigate('/two-factor', { replace: true });
    } else if (me && !me.two_factor?.enrolment_required && route.name === 'two-factor') {
      navigate('/', { replace: true });
    } else if (me && SIGNED_OUT_PAGES.includes(route.name)) {
      navigate(safeNext(route.query.get('next')), { replace: true });
    } else if (me && route.name === 'admin' && me.role !== 'admin') {
      navigate('/', { replace: true });
    }
  }, [me, server, route]);

  const brand = useBranding();
  useEffect(() => {
    if (route.name !== 'chat') document.title = titleFor(route);
  }, [route, brand]);

  if (bootError) {
    return html`<div class="auth-page"><div class="auth-card">
      <div class="auth-brand"><${Logo} /><span><${BrandName} /></span></div>
      <${ErrorBanner} error=${bootError} onRetry=${boot} />
    </div></div>`;
  }
  if (me === undefined || !server) {
    return html`<div class="boot"><${Spinner} label="Loading confab" /></div>`;
  }

  const ctx = { me, setMe, server, route, signedIn };
  let screen = null;
  if (route.name === 'setup') screen = html`<${SetupScreen} />`;
  else if (server.setup_required) screen = html`<${SetupScreen} />`;
  else if (route.name === 'login' && !me) screen = html`<${LoginScreen} />`;
  else if (route.name === 'register' && !me) screen = html`<${RegisterScreen} />`;
  else if (route.name === 'forgot-password' && !me) screen = html`<${ForgotScreen} />`;
  else if (route.name === 'reset-password' && !me) screen = html`<${ResetScreen} />`;
  else if (route.name === 'verify-email') screen = html`<${VerifyEmailScreen} />`;
  else if (me && route.name === 'two-factor') {
    screen = html`<${EnrolScreen} onEnabled=${() => setMe({ ...me, two_factor: { enabled: true, enrolment_required: false } })} />`;
  }
  else if (me && route.name === 'chat') screen = html`<${ChatScreen} key="chat" />`;
  else if (me && route.name === 'settings') screen = html`<${SettingsScreen} />`;
  else if (me && route.name === 'admin' && me.role === 'admin') screen = html`<${AdminScreen} />`;
  else if (me && route.name === 'notfound') {
    screen = html`<div class="auth-page"><div class="auth-card">
      <h1>Page not found</h1><p class="muted">There is nothing at ${location.pathname}.</p>
      <a class="btn primary" href="/">Back to chat</a></div></div>`;
  } else screen = html`<div class="boot"><${Spinner} /></div>`;

  return html`<${AppContext.Provider} value=${ctx}>
    ${screen}
    <${DialogHost} />
    <${Toasts} />
  <//>`;
}

/** Pages for people who are not signed in (a signed-in visit goes on). */
const SIGNED_OUT_PAGES = ['login', 'register', 'setup', 'forgot-password', 'reset-password'];

/** The user of a sign-in answer, with its second-factor state. */
function withTwoFactor(answer) {
  return { ...answer.user, two_factor: answer.two_factor || null };
}

function titleFor(route) {
  const names = {
    login: 'Sign in', register: 'Create account', setup: 'Set up', settings: 'Settings', admin: 'Admin',
    'forgot-password': 'Forgot password', 'reset-password': 'Reset password', 'verify-email': 'Confirm email',
    'two-factor': 'Two-factor sign-in',
  };
  return pageTitle(names[route.name]);
}

applyTheme();
render(html`<${App} />`, document.getElementById('app'));
