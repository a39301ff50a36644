// Setup (first admin), sign in, create account.

import { html, useState, useEffect, useRef } from './lib.js';
import { post, get, ApiError } from './api.js';
import { useApp, hasDraft } from './state.js';
import { ErrorBanner, Logo, Spinner } from './ui.js';
import { BrandName, useBranding } from './branding.js';
import { SecondStep } from './security.js';

export function AuthCard({ title, subtitle, children, footer }) {
  const h = useRef(null);
  useEffect(() => {
    const first = h.current?.parentElement?.querySelector('input:not([type=hidden]):not([readonly])');
    first?.focus();
  }, []);
  return html`<main class="auth-page">
    <div class="auth-card">
      <div class="auth-brand"><${Logo} size=${36} /><span><${BrandName} /></span></div>
      <h1 ref=${h}>${title}</h1>
      ${subtitle && html`<p class="muted">${subtitle}</p>`}
      ${children}
      ${footer && html`<div class="auth-footer">${footer}</div>`}
    </div>
  </main>`;
}

export function Field({ label, hint, name, ...props }) {
  const id = 'f-' + name;
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <input id=${id} name=${name} aria-describedby=${hint ? id + '-hint' : undefined} ...${props} />
    ${hint && html`<small id=${id + '-hint'} class="muted">${hint}</small>`}
  </div>`;
}

/** One checkbox that shows (or hides again) every password field of its form. */
export function ShowPasswords({ shown, setShown }) {
  return html`<label class="check show-password">
    <input type="checkbox" checked=${shown} onChange=${(e) => setShown(e.target.checked)} />Show password</label>`;
}

function useForm(initial) {
  const [v, setV] = useState(initial);
  const bind = (k) => ({ value: v[k], onInput: (e) => setV((s) => ({ ...s, [k]: e.target.value })) });
  return [v, bind, setV];
}

export function SetupScreen() {
  const { route, signedIn, server } = useApp();
  const token = route.query.get('token') || '';
  const [v, bind] = useForm({ username: '', email: '', password: '', confirm: '' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [shown, setShown] = useState(false);
  const pwType = shown ? 'text' : 'password';

  if (server && !server.setup_required) {
    return html`<${AuthCard} title="Already set up" subtitle="This server has its administrator.">
      <a class="btn primary wide" href="/login">Sign in</a>
    <//>`;
  }
  if (!token) {
    return html`<${AuthCard} title="Welcome to confab"
        subtitle="Open the setup link that the server printed in its log when it started (it ends in /setup?token=…) to create the first administrator account." />`;
  }
  const submit = async (e) => {
    e.preventDefault();
    if (v.password !== v.confirm) {
      setError({ code: 'VALIDATION_FAILED', message: 'The two passwords differ.', local: true });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const body = { token, username: v.username.trim(), password: v.password };
      if (v.email.trim()) body.email = v.email.trim();
      const ans = await post('/setup', body, { authRedirect: false });
      signedIn(ans, '/');
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<${AuthCard} title="Create the administrator" subtitle="The first account runs this server: it adds providers, invites people and manages users.">
    <form class="stack" onSubmit=${submit}>
      <${ErrorBanner} error=${error} compact />
      <${Field} label="Username" name="username" autocomplete="username" required minlength="3" maxlength="50"
        pattern="[A-Za-z0-9_]+" hint="3–50 letters, digits or _" ...${bind('username')} />
      <${Field} label="Email (optional)" name="email" type="email" autocomplete="email" ...${bind('email')} />
      <${Field} label="Password" name="password" type=${pwType} autocomplete="new-password" required minlength="8" maxlength="128"
        hint="At least 8 characters" ...${bind('password')} />
      <${Field} label="Repeat password" name="confirm" type=${pwType} autocomplete="new-password" required minlength="8" ...${bind('confirm')} />
      <${ShowPasswords} shown=${shown} setShown=${setShown} />
      <button class="btn primary wide" type="submit" disabled=${busy}>${busy ? html`<${Spinner} />` : 'Create account and sign in'}</button>
    </form>
  <//>`;
}

/** One button per single sign-on provider (a plain navigation: the
 * provider's page, then back to the app signed in). */
function SsoButtons({ providers, withDivider }) {
  if (!providers?.length) return null;
  return html`<div class="stack sso-buttons" data-testid="sso-buttons">
    ${providers.map((p) => html`<a class="btn wide" key=${p.name} href=${p.start_url} data-sso=${p.name}>Sign in with ${p.display_name}</a>`)}
    ${withDivider && html`<p class="muted small sso-or" aria-hidden="true">or</p>`}
  </div>`;
}

export function LoginScreen() {
  const { route, signedIn, server } = useApp();
  const [v, bind] = useForm({ username: route.query.get('username') || '', password: '' });
  const [busy, setBusy] = useState(false);
  const ssoError = route.query.get('sso_error');
  const [error, setError] = useState(ssoError ? { code: ssoError, message: '', local: true } : null);
  const passwordForm = server ? (server.local_passwords !== false || server.ldap) : true;
  const [shown, setShown] = useState(false);
  const [kept] = useState(hasDraft);
  const [challenge, setChallenge] = useState(null);
  const next = route.query.get('next') || '/';
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const ans = await post('/auth/login', { username: v.username.trim(), password: v.password }, { authRedirect: false });
      if (ans.two_factor_required) {
        setChallenge(ans.challenge);
        setBusy(false);
        return;
      }
      signedIn(ans, next);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  const canRegister = server?.registration && server.registration !== 'closed' && server.local_passwords !== false;
  const brand = useBranding();
  if (challenge) {
    return html`<${SecondStep} challenge=${challenge} onDone=${(ans) => signedIn(ans, next)}
      onRestart=${() => { setChallenge(null); setError(null); }} />`;
  }
  return html`<${AuthCard} title="Sign in"
      footer=${canRegister && html`<span>No account yet? <a href=${'/register' + (next !== '/' ? '?next=' + encodeURIComponent(next) : '')}>Create one</a></span>`}>
    <form class="stack" onSubmit=${submit}>
      ${brand.sign_in_message && html`<p class="sign-in-message" data-testid="sign-in-message">${brand.sign_in_message}</p>`}
      ${kept && html`<div class="banner note" role="status" data-testid="session-ended">
        <div class="banner-text">Your session has ended, so your message was not sent. Sign in again: the message you wrote is kept and comes back in the message box.</div>
      </div>`}
      <${ErrorBanner} error=${error} compact />
      <${SsoButtons} providers=${server?.sso} withDivider=${passwordForm} />
      ${passwordForm && html`
      <${Field} label="Username" name="username" autocomplete="username" required ...${bind('username')} />
      <${Field} label="Password" name="password" type=${shown ? 'text' : 'password'} autocomplete="current-password" required ...${bind('password')} />
      <${ShowPasswords} shown=${shown} setShown=${setShown} />
      <button class="btn primary wide" type="submit" disabled=${busy}>${busy ? html`<${Spinner} />` : 'Sign in'}</button>
      ${server?.password_reset_email && html`<a class="small" href="/forgot-password">Forgot your password?</a>`}`}
    </form>
  <//>`;
}

export function RegisterScreen() {
  const { route, signedIn, server } = useApp();
  const [v, bind] = useForm({ username: '', email: '', password: '', confirm: '', invite: route.query.get('invite') || '' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [shown, setShown] = useState(false);
  const pwType = shown ? 'text' : 'password';
  const mode = server?.registration || 'closed';
  const inviteFromLink = !!route.query.get('invite');
  const showInvite = mode === 'invite' || inviteFromLink;

  if (mode === 'closed') {
    return html`<${AuthCard} title="Registration is closed"
        subtitle="Ask an administrator of this server for an account."
        footer=${html`<a href="/login">Back to sign in</a>`} />`;
  }
  const submit = async (e) => {
    e.preventDefault();
    if (v.password !== v.confirm) {
      setError({ code: 'VALIDATION_FAILED', message: 'The two passwords differ.', local: true });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const body = { username: v.username.trim(), password: v.password };
      if (v.email.trim()) body.email = v.email.trim();
      if (v.invite.trim()) body.invite_code = v.invite.trim();
      await post('/auth/register', body, { authRedirect: false });
      const ans = await post('/auth/login', { username: body.username, password: body.password }, { authRedirect: false });
      signedIn(ans, route.query.get('next') || '/');
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<${AuthCard} title="Create your account"
      subtitle=${mode === 'invite' ? 'This server is invite-only: you need the code from your invitation link.' : null}
      footer=${html`<span>Already have an account? <a href="/login">Sign in</a></span>`}>
    <form class="stack" onSubmit=${submit}>
      <${ErrorBanner} error=${error} compact />
      ${showInvite && html`<${Field} label="Invite code" name="invite_code" autocomplete="off" required=${mode === 'invite'} ...${bind('invite')} />`}
      <${Field} label="Username" name="username" autocomplete="username" required minlength="3" maxlength="50"
        pattern="[A-Za-z0-9_]+" hint="3–50 letters, digits or _" ...${bind('username')} />
      <${Field} label="Email (optional)" name="email" type="email" autocomplete="email" ...${bind('email')} />
      <${Field} label="Password" name="password" type=${pwType} autocomplete="new-password" required minlength="8" maxlength="128"
        hint="At least 8 characters" ...${bind('password')} />
      <${Field} label="Repeat password" name="confirm" type=${pwType} autocomplete="new-password" required minlength="8" ...${bind('confirm')} />
      <${ShowPasswords} shown=${shown} setShown=${setShown} />
      <button class="btn primary wide" type="submit" disabled=${busy}>${busy ? html`<${Spinner} />` : 'Create account'}</button>
    </form>
  <//>`;
}

export async function logout(setMe) {
  try {
    await post('/auth/logout', {}, { authRedirect: false });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
  setMe(null);
}

export { get };
