// Two-factor sign-in (the second sign-in step, set-up with a QR code and
// recovery codes, turning it off), forgotten passwords (asking for a mail,
// using a reset link), and the account's email address and its verification.

import { html, useState, useEffect, useCallback } from './lib.js';
import { get, post, put } from './api.js';
import { useApp } from './state.js';
import { AuthCard, Field, ShowPasswords } from './auth.js';
import { ErrorBanner, Spinner, toast, CopyButton, describeError } from './ui.js';

const CODE_ERRORS = {
  INVALID_TWO_FACTOR_CODE: 'That code is not right. Type the 6 digits your authenticator app shows now, or a recovery code.',
  CHALLENGE_EXPIRED: 'This sign-in took too long. Sign in again with your password.',
};

/** The token of a link (`…#token=…`), kept out of server logs by living in the fragment. */
function linkToken() {
  return new URLSearchParams(location.hash.slice(1)).get('token') || '';
}

/** The second sign-in step: a code from the app, or a recovery code. */
export function SecondStep({ challenge, onDone, onRestart }) {
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onDone(await post('/auth/login/two-factor', { challenge, code: code.trim() }, { authRedirect: false }));
    } catch (err) {
      setError(err);
      setBusy(false);
      setCode('');
    }
  };
  return html`<${AuthCard} title="Two-factor sign-in" subtitle="Type the 6-digit code your authenticator app shows for this account. Lost the app? Use one of your recovery codes instead."
      footer=${html`<button type="button" class="link-btn" onClick=${onRestart}>Sign in with another account</button>`}>
    <form class="stack" onSubmit=${submit}>
      <${ErrorBanner} error=${error} compact overrides=${CODE_ERRORS} />
      <${Field} label="Code" name="totp_code" autocomplete="one-time-code" inputmode="numeric" required maxlength="16"
        value=${code} onInput=${(e) => setCode(e.target.value)} data-testid="totp-code" />
      <button class="btn primary wide" type="submit" disabled=${busy || !code.trim()}>${busy ? html`<${Spinner} />` : 'Verify and sign in'}</button>
    </form>
  <//>`;
}

/** Set-up: start, show the QR code and secret, confirm with a code, show recovery codes. */
function Enrol({ onEnabled }) {
  const [setup, setSetup] = useState(null);
  const [code, setCode] = useState('');
  const [codes, setCodes] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const start = async () => {
    setBusy(true);
    setError(null);
    try { setSetup(await post('/auth/two-factor/setup', {})); } catch (err) { setError(err); }
    setBusy(false);
  };
  const confirm = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await post('/auth/two-factor/confirm', { code: code.trim() }, { authRedirect: false });
      setCodes(r.recovery_codes);
    } catch (err) {
      setError(err);
      setCode('');
    }
    setBusy(false);
  };
  if (codes) {
    return html`<div class="stack" data-testid="recovery-codes">
      <div class="banner success" role="status"><div class="banner-text"><strong>Two-factor sign-in is on.</strong>
        Keep these recovery codes somewhere safe: each signs you in once if you lose your phone. They are shown only now.</div></div>
      <ol class="recovery-codes">${codes.map((c) => html`<li key=${c}><code>${c}</code></li>`)}</ol>
      <div class="row-form"><${CopyButton} text=${codes.join('\n')} label="Copy recovery codes">Copy codes<//>
        <button type="button" class="btn primary" onClick=${() => onEnabled()}>I saved them</button></div>
    </div>`;
  }
  if (!setup) {
    return html`<div class="stack">
      <${ErrorBanner} error=${error} compact />
      <div><button type="button" class="btn primary" onClick=${start} disabled=${busy}>${busy ? html`<${Spinner} />` : 'Set up two-factor sign-in'}</button></div>
    </div>`;
  }
  return html`<form class="stack" onSubmit=${confirm}>
    <p class="small">1. Scan this code with an authenticator app (for example Aegis, Google Authenticator or 1Password), or type the key below into it.</p>
    ${setup.qr_svg && html`<img class="qr" src=${setup.qr_svg} width="200" height="200" alt="QR code to add this account to an authenticator app" />`}
    <div class="field"><span>Key</span><code class="secret" data-testid="totp-secret">${setup.secret}</code></div>
    <p class="small">2. Type the 6-digit code the app now shows.</p>
    <${ErrorBanner} error=${error} compact overrides=${CODE_ERRORS} />
    <label class="field"><span>Code</span><input name="code" autocomplete="one-time-code" inputmode="numeric" required maxlength="6"
      value=${code} onInput=${(e) => setCode(e.target.value)} data-testid="totp-confirm-code" /></label>
    <div><button type="submit" class="btn primary" disabled=${busy || !code.trim()}>${busy ? html`<${Spinner} />` : 'Turn on'}</button></div>
  </form>`;
}

function Disable({ onDone }) {
  const [v, setV] = useState({ password: '', code: '' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const bind = (k) => ({ value: v[k], onInput: (e) => setV((s) => ({ ...s, [k]: e.target.value })) });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await post('/auth/two-factor/disable', { current_password: v.password, code: v.code.trim() }, { authRedirect: false });
      toast('Two-factor sign-in is off.');
      onDone();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<form class="stack narrow" onSubmit=${submit}>
    <p class="small muted">To turn it off, confirm with your password and a current code (or a recovery code).</p>
    <${ErrorBanner} error=${error} compact overrides=${CODE_ERRORS} />
    <input type="text" autocomplete="username" hidden readonly value="" aria-hidden="true" tabindex="-1" />
    <label class="field"><span>Password</span><input type="password" autocomplete="current-password" required ...${bind('password')} /></label>
    <label class="field"><span>Code</span><input autocomplete="one-time-code" required maxlength="16" ...${bind('code')} /></label>
    <div><button type="submit" class="btn danger-outline" disabled=${busy}>Turn off two-factor sign-in</button></div>
  </form>`;
}

/** Settings card: the state, set-up or turning off. */
export function TwoFactorCard({ Card }) {
  const [st, setSt] = useState(null);
  const [error, setError] = useState(null);
  const load = useCallback(async () => {
    setError(null);
    try { setSt(await get('/auth/two-factor')); } catch (e) { setError(e); }
  }, []);
  useEffect(() => { load(); }, [load]);
  return html`<${Card} id="two-factor" title="Two-factor sign-in"
      description="Signing in also asks for a code from an app on your phone, so a stolen password is not enough.">
    <${ErrorBanner} error=${error} onRetry=${load} compact />
    ${!st && !error && html`<${Spinner} />`}
    ${st && (st.enabled
      ? html`<p class="small" data-testid="two-factor-on"><span class="badge ok">On</span> ${st.recovery_codes_left} recovery code${st.recovery_codes_left === 1 ? '' : 's'} left.</p>
          <${Disable} onDone=${load} />`
      : html`${st.required && html`<p class="small">An administrator requires two-factor sign-in for your account.</p>`}
          <${Enrol} onEnabled=${load} />`)}
  <//>`;
}

/** The page people are sent to when the policy requires a second factor they have not set up. */
export function EnrolScreen({ onEnabled }) {
  return html`<${AuthCard} title="Set up two-factor sign-in"
      subtitle="An administrator of this server requires a second step at sign-in. Set it up to continue.">
    <${Enrol} onEnabled=${onEnabled} />
  <//>`;
}

export function ForgotScreen() {
  const { server } = useApp();
  const [who, setWho] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [sent, setSent] = useState(null);
  if (!server.password_reset_email) {
    return html`<${AuthCard} title="Forgot your password?"
        subtitle="This server does not send email. Ask an administrator for a reset link."
        footer=${html`<a href="/login">Back to sign in</a>`} />`;
  }
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try { setSent((await post('/auth/password-reset/request', { username: who.trim() }, { authRedirect: false })).message); } catch (err) { setError(err); }
    setBusy(false);
  };
  return html`<${AuthCard} title="Forgot your password?" footer=${html`<a href="/login">Back to sign in</a>`}
      subtitle="We mail a link to reset it to the verified address of your account.">
    ${sent ? html`<div class="banner success" role="status" data-testid="reset-requested"><div class="banner-text">${sent}</div></div>`
      : html`<form class="stack" onSubmit=${submit}>
        <${ErrorBanner} error=${error} compact />
        <${Field} label="Username or email address" name="username" autocomplete="username" required value=${who} onInput=${(e) => setWho(e.target.value)} />
        <button class="btn primary wide" type="submit" disabled=${busy}>${busy ? html`<${Spinner} />` : 'Send the link'}</button>
      </form>`}
  <//>`;
}

export function ResetScreen() {
  const [token] = useState(linkToken);
  const [v, setV] = useState({ password: '', confirm: '' });
  const [shown, setShown] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(false);
  const bind = (k) => ({ value: v[k], onInput: (e) => setV((s) => ({ ...s, [k]: e.target.value })) });
  if (!token) {
    return html`<${AuthCard} title="Reset your password" subtitle="Open the whole link you were given: it ends in #token=…"
        footer=${html`<a href="/login">Back to sign in</a>`} />`;
  }
  if (done) {
    return html`<${AuthCard} title="Password changed" subtitle="Every session of the account was signed out. Sign in with the new password.">
      <a class="btn primary wide" href="/login" data-testid="reset-done">Sign in</a>
    <//>`;
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
      await post('/auth/password-reset', { token, new_password: v.password }, { authRedirect: false });
      history.replaceState(null, '', '/reset-password');
      setDone(true);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  const type = shown ? 'text' : 'password';
  return html`<${AuthCard} title="Choose a new password" footer=${html`<a href="/login">Back to sign in</a>`}>
    <form class="stack" onSubmit=${submit}>
      <${ErrorBanner} error=${error} compact />
      <input type="text" autocomplete="username" hidden readonly value="" aria-hidden="true" tabindex="-1" />
      <${Field} label="New password" name="new_password" type=${type} autocomplete="new-password" required minlength="8" maxlength="128"
        hint="At least 8 characters" ...${bind('password')} />
      <${Field} label="Repeat new password" name="confirm" type=${type} autocomplete="new-password" required minlength="8" ...${bind('confirm')} />
      <${ShowPasswords} shown=${shown} setShown=${setShown} />
      <button class="btn primary wide" type="submit" disabled=${busy}>${busy ? html`<${Spinner} />` : 'Set the new password'}</button>
    </form>
  <//>`;
}

export function VerifyEmailScreen() {
  const { me, setMe } = useApp();
  const [state, setState] = useState({ busy: true });
  useEffect(() => {
    const token = linkToken();
    if (!token) { setState({ error: { code: 'INVALID_LINK', message: 'Open the whole link from the mail: it ends in #token=…', local: true } }); return; }
    post('/auth/email/verify', { token }, { authRedirect: false })
      .then((u) => {
        history.replaceState(null, '', '/verify-email');
        setState({ email: u.email });
        if (me && me.id === u.id) setMe({ ...me, ...u });
      })
      .catch((error) => setState({ error }));
  }, []); // eslint-disable-line
  return html`<${AuthCard} title="Confirm your email address" footer=${html`<a href=${me ? '/' : '/login'}>${me ? 'Back to chat' : 'Sign in'}</a>`}>
    ${state.busy && html`<${Spinner} label="Confirming" />`}
    <${ErrorBanner} error=${state.error} compact />
    ${state.email && html`<div class="banner success" role="status" data-testid="email-verified"><div class="banner-text">${state.email} is confirmed. Password resets can be mailed to it.</div></div>`}
  <//>`;
}

/** Settings card: the account's address, verified or not. */
export function EmailCard({ Card }) {
  const { me, setMe, server } = useApp();
  const [email, setEmail] = useState(me.email || '');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const save = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const u = await put('/auth/email', { email: email.trim() || null });
      setMe({ ...me, ...u });
      toast(u.email && !u.email_verified && server.password_reset_email ? 'Saved. Open the link we mailed to confirm the address.' : 'Saved.');
    } catch (err) { setError(err); }
    setBusy(false);
  };
  const resend = async () => {
    try { await post('/auth/email/verification', {}); toast('A new confirmation link is on its way.'); } catch (err) { toast(describeError(err).text, 'error'); }
  };
  return html`<${Card} id="email" title="Email address"
      description=${server.password_reset_email ? 'A confirmed address can receive a link to reset a forgotten password.' : 'This server does not send email; an administrator can make you a reset link.'}>
    <form class="row-form" onSubmit=${save}>
      <label class="field grow"><span>Email ${me.email && html`<span class=${'badge ' + (me.email_verified ? 'ok' : '')} data-testid="email-state">${me.email_verified ? 'Confirmed' : 'Not confirmed'}</span>`}</span>
        <input type="email" autocomplete="email" value=${email} maxlength="254" onInput=${(e) => setEmail(e.target.value)} /></label>
      <button type="submit" class="btn primary" disabled=${busy}>Save</button>
      ${me.email && !me.email_verified && server.password_reset_email && html`<button type="button" class="btn" onClick=${resend}>Send the link again</button>`}
    </form>
    <${ErrorBanner} error=${error} compact />
  <//>`;
}
