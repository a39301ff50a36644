// Settings: theme, custom instructions, presets and prompts
// (settings-library.js), own provider key (kept in this browser only), sessions,
// API keys, password.

import { html, useState, useEffect, useCallback } from './lib.js';
import { get, post, del } from './api.js';
import { KINDS, keptKeys, saveKey, removeKey, validateKey } from './own-keys.js';
import { useApp, getTheme, setTheme } from './state.js';
import { describeError, ErrorBanner, Spinner, confirmDialog, toast, timeAgo, dateTime, CopyButton, Icon } from './ui.js';
import { UsageCard } from './usage.js';
import { FilesCard } from './attachments.js';
import { CustomInstructionsCard, PresetsCard, PromptsCard } from './settings-library.js';
import { KnowledgeCard } from './knowledge.js';
import { TwoFactorCard, EmailCard } from './security.js';
import { DataCard, SharesCard } from './transfer.js';

export function PageShell({ title, nav, children, back = '/' }) {
  return html`<div class="page">
    <header class="page-header">
      <a href=${back} class="btn ghost small"><${Icon} name="left" size=${16} />Back to chat</a>
      <h1>${title}</h1>
    </header>
    <div class="page-body">
      ${nav && html`<nav class="page-nav" aria-label=${title + ' sections'}>${nav}</nav>`}
      <main class="page-content">${children}</main>
    </div>
  </div>`;
}

export function Card({ title, id, description, children, actions }) {
  return html`<section class="card" aria-labelledby=${id + '-h'} id=${id}>
    <div class="card-head">
      <div><h2 id=${id + '-h'}>${title}</h2>${description && html`<p class="muted small">${description}</p>`}</div>
      ${actions && html`<div class="card-actions">${actions}</div>`}
    </div>
    ${children}
  </section>`;
}

/** Load-and-reload helper for a list endpoint. */
export function useList(path, query) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const load = useCallback(async () => {
    setError(null);
    try {
      setData(await get(path, query));
    } catch (e) {
      setError(e);
    }
  }, [path, JSON.stringify(query || {})]); // eslint-disable-line
  useEffect(() => { load(); }, [load]);
  return { data, error, load, setData };
}

function ThemeCard() {
  const [t, setT] = useState(getTheme());
  const choose = (v) => { setTheme(v); setT(v); };
  return html`<${Card} id="appearance" title="Appearance" description="Saved in this browser.">
    <fieldset class="segmented" role="radiogroup" aria-label="Theme">
      ${[['light', 'Light', 'sun'], ['dark', 'Dark', 'moon'], ['system', 'System', 'settings']].map(([v, label, icon]) => html`
        <label class=${'seg' + (t === v ? ' on' : '')}>
          <input type="radio" name="theme" value=${v} checked=${t === v} onChange=${() => choose(v)} />
          <${Icon} name=${icon} size=${16} />${label}
        </label>`)}
    </fieldset>
  <//>`;
}

function OwnKeyRow({ kind, label, placeholder, kept, onChange }) {
  const { me } = useApp();
  const [k, setK] = useState('');
  const [shown, setShown] = useState(false);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);
  const id = 'own-key-' + kind;
  const save = async (e) => {
    e.preventDefault();
    if (!k.trim()) return;
    setBusy(true);
    setResult(null);
    try {
      const v = await validateKey(kind, k);
      if (!v.valid) {
        setResult({ ok: false, text: v.message || 'The provider refused this key.' });
      } else {
        await saveKey(me.id, kind, k);
        setK('');
        setResult({ ok: true, text: `Key accepted by ${v.provider} (${v.models} model${v.models === 1 ? '' : 's'}); kept encrypted in this browser until you sign out.` });
        onChange();
      }
    } catch (err) {
      setResult({ ok: false, text: describeError(err).text });
    }
    setBusy(false);
  };
  const forget = async () => { await removeKey(kind); setResult(null); toast(label + ' key removed'); onChange(); };
  return html`<div class="own-key" data-testid=${id}>
    <form class="row-form" onSubmit=${save}>
      <label class="field grow"><span>${label} key ${kept && html`<span class="badge ok" data-testid=${id + '-kept'}>Saved ${kept.hint}</span>`}</span>
        <input type=${shown ? 'text' : 'password'} value=${k} autocomplete="off" spellcheck=${false} placeholder=${kept ? 'Replace the saved key' : placeholder}
          aria-describedby=${result ? id + '-result' : undefined} onInput=${(e) => setK(e.target.value)} /></label>
      <button type="button" class="btn" onClick=${() => setShown((x) => !x)} aria-pressed=${shown ? 'true' : 'false'} aria-label=${(shown ? 'Hide ' : 'Show ') + label + ' key'}>${shown ? 'Hide' : 'Show'}</button>
      <button type="submit" class="btn primary" disabled=${busy || !k.trim()} aria-label=${'Check and save ' + label + ' key'}>${busy ? html`<${Spinner} />` : 'Check and save'}</button>
      ${kept && html`<button type="button" class="btn danger-outline" onClick=${forget} aria-label=${'Remove ' + label + ' key'}>Remove</button>`}
    </form>
    ${result && html`<p id=${id + '-result'} class=${'small ' + (result.ok ? 'ok-text' : 'error-text')} role="status" data-testid=${id + '-result'}>${result.text}</p>`}
  </div>`;
}

function OwnKeysCard() {
  const [kept, setKept] = useState({});
  const load = useCallback(async () => setKept(await keptKeys()), []);
  useEffect(() => { load(); }, [load]);
  return html`<${Card} id="provider-key" title="Your own provider keys"
      description="Used instead of the server's key, and only with models of a provider of the same kind. Each key is checked with the provider first, then kept encrypted in this browser; signing out deletes it.">
    ${KINDS.map((k) => html`<${OwnKeyRow} key=${k.kind} ...${k} kept=${kept[k.kind]} onChange=${load} />`)}
  <//>`;
}

function SessionsCard() {
  const { data, error, load } = useList('/auth/sessions');
  const revoke = async (s) => {
    if (!await confirmDialog({ title: 'Sign out this session?', body: `${s.user_agent || 'Unknown browser'} · ${s.ip || ''}`, confirm: 'Sign out', danger: true })) return;
    try { await del('/auth/sessions/' + s.id); toast('Session signed out'); load(); } catch (e) { toast(describeError(e).text, 'error'); }
  };
  const others = async () => {
    if (!await confirmDialog({ title: 'Sign out all other sessions?', confirm: 'Sign out others', danger: true })) return;
    try { const r = await post('/auth/sessions/revoke-others', {}); toast(`${r.revoked} session(s) signed out`); load(); } catch (e) { toast(describeError(e).text, 'error'); }
  };
  return html`<${Card} id="sessions" title="Active sessions" description="Browsers signed in to your account."
      actions=${data && data.items.length > 1 && html`<button type="button" class="btn small" onClick=${others}>Sign out other sessions</button>`}>
    <${ErrorBanner} error=${error} onRetry=${load} compact />
    ${!data && !error && html`<${Spinner} />`}
    ${data && html`<ul class="rows">
      ${data.items.map((s) => html`<li class="row" key=${s.id}>
        <div class="row-main">
          <strong>${shortAgent(s.user_agent)}</strong>${s.current && html`<span class="badge ok">This browser</span>`}
          <div class="muted small">${s.ip || 'unknown address'} · last active ${timeAgo(s.last_seen)} · signed in ${dateTime(s.created_at)}</div>
        </div>
        ${!s.current && html`<button type="button" class="btn small danger-outline" aria-label=${'Sign out session from ' + (s.ip || 'unknown')} onClick=${() => revoke(s)}>Sign out</button>`}
      </li>`)}
    </ul>`}
  <//>`;
}

function shortAgent(ua) {
  if (!ua) return 'Unknown browser';
  const b = /(Firefox|Edg|Chrome|Chromium|Safari)\/[\d.]+/.exec(ua);
  const os = /(Windows|Mac OS X|Android|iPhone|Linux)/.exec(ua);
  return b ? `${b[1] === 'Edg' ? 'Edge' : b[1]}${os ? ' on ' + os[1].replace('Mac OS X', 'macOS') : ''}` : ua.slice(0, 60);
}

function ApiKeysCard() {
  const { me } = useApp();
  const { data, error, load } = useList('/keys');
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState({ read: true, write: true, admin: false });
  const [created, setCreated] = useState(null);
  const [formError, setFormError] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    setFormError(null);
    const sc = Object.entries(scopes).filter(([, on]) => on).map(([s]) => s);
    try {
      const k = await post('/keys', { name: name.trim(), scopes: sc });
      setCreated(k);
      setName('');
      load();
    } catch (err) {
      setFormError(err);
    }
  };
  const remove = async (k) => {
    if (!await confirmDialog({ title: `Delete the key “${k.name}”?`, body: 'Programs using it stop working at once.', confirm: 'Delete key', danger: true })) return;
    try { await del('/keys/' + k.id); toast('Key deleted'); load(); } catch (err) { toast(describeError(err).text, 'error'); }
  };
  return html`<${Card} id="api-keys" title="API keys" description="For programs and editors that speak the OpenAI API (Authorization: Bearer cfk_…).">
    ${created && html`<div class="banner success" role="status">
      <div class="banner-text"><strong>Key “${created.name}” created.</strong> Copy it now: it is shown only once.
        <code class="secret" data-testid="new-api-key">${created.key}</code></div>
      <div class="banner-actions"><${CopyButton} text=${created.key} label="Copy API key">Copy<//>
        <button type="button" class="icon-btn" aria-label="Hide the new key" onClick=${() => setCreated(null)}><${Icon} name="close" size=${16} /></button></div>
    </div>`}
    <form class="row-form" onSubmit=${create}>
      <label class="field grow"><span>Name</span><input value=${name} required maxlength="100" placeholder="e.g. my editor"
        onInput=${(e) => setName(e.target.value)} /></label>
      <fieldset class="checks"><legend class="sr-only">Scopes</legend>
        ${['read', 'write', ...(me.role === 'admin' ? ['admin'] : [])].map((s) => html`<label class="check">
          <input type="checkbox" checked=${scopes[s]} onChange=${(e) => setScopes((x) => ({ ...x, [s]: e.target.checked }))} />${s}</label>`)}
      </fieldset>
      <button type="submit" class="btn primary">Create key</button>
    </form>
    <${ErrorBanner} error=${formError || error} compact />
    ${data && (data.items.length === 0
      ? html`<p class="muted small">No API keys yet.</p>`
      : html`<ul class="rows">${data.items.map((k) => html`<li class="row" key=${k.id}>
          <div class="row-main"><strong>${k.name}</strong> <code class="muted">${k.prefix}…</code>
            <div class="muted small">${k.scopes.join(', ')} · created ${timeAgo(k.created_at)} · ${k.last_used_at ? 'used ' + timeAgo(k.last_used_at) : 'never used'}${k.expires_at ? ' · expires ' + dateTime(k.expires_at) : ''}</div></div>
          <button type="button" class="btn small danger-outline" aria-label=${'Delete key ' + k.name} onClick=${() => remove(k)}>Delete</button>
        </li>`)}</ul>`)}
  <//>`;
}

/** Identities from single sign-on linked to this account. */
function IdentitiesCard() {
  const { server, route } = useApp();
  const { data, error, load } = useList('/auth/identities');
  const [actionError, setActionError] = useState(() => {
    const code = route?.query?.get('sso_error');
    return code ? { code, message: '', local: true } : null;
  });
  const linked = route?.query?.get('linked');
  const providers = server.sso || [];
  const link = async (p) => {
    setActionError(null);
    try {
      const r = await post(`/auth/oidc/${encodeURIComponent(p.name)}/link`, {});
      location.assign(r.redirect_url);
    } catch (err) {
      setActionError(err);
    }
  };
  const unlink = async (i) => {
    if (!await confirmDialog({ title: `Unlink ${i.provider_display_name}?`, body: 'You will no longer be able to sign in with it.', confirm: 'Unlink', danger: true })) return;
    setActionError(null);
    try { await del('/auth/identities/' + i.id); toast('Identity unlinked'); load(); } catch (err) { setActionError(err); }
  };
  if (!providers.length && !(data?.identities?.length)) return null;
  return html`<${Card} id="account" title="Linked sign-ins" description="Identities from single sign-on that sign in to this account.">
    ${linked && !actionError && html`<div class="banner success" role="status"><div class="banner-text">The identity is linked: you can sign in with it now.</div></div>`}
    <${ErrorBanner} error=${actionError || error} compact />
    ${data && (data.identities.length === 0
      ? html`<p class="muted small">No identity is linked yet.</p>`
      : html`<ul class="rows" data-testid="identities">${data.identities.map((i) => html`<li class="row" key=${i.id}>
          <div class="row-main"><strong>${i.provider_display_name}</strong>${i.email ? html` <span class="muted">${i.email}</span>` : ''}
            <div class="muted small">linked ${timeAgo(i.created_at)}</div></div>
          <button type="button" class="btn small danger-outline" aria-label=${'Unlink ' + i.provider_display_name} onClick=${() => unlink(i)}>Unlink</button>
        </li>`)}</ul>`)}
    ${providers.length > 0 && html`<div class="row-form">${providers.map((p) => html`<button type="button" class="btn" key=${p.name} onClick=${() => link(p)}>Link ${p.display_name}</button>`)}</div>`}
  <//>`;
}

function PasswordCard() {
  const [v, setV] = useState({ current: '', next: '', confirm: '' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const bind = (k) => ({ value: v[k], onInput: (e) => setV((s) => ({ ...s, [k]: e.target.value })) });
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    if (v.next !== v.confirm) { setError({ code: 'VALIDATION_FAILED', message: 'The new passwords differ.', local: true }); return; }
    setBusy(true);
    try {
      const r = await post('/auth/password', { current_password: v.current, new_password: v.next }, { authRedirect: false });
      setV({ current: '', next: '', confirm: '' });
      const keys = r?.revoked?.api_keys || 0;
      toast(`Password changed. Other sessions were signed out${keys ? ` and ${keys} API key${keys === 1 ? ' was' : 's were'} deleted` : ''}.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Card} id="password" title="Password" description="Changing it signs out your other sessions and deletes your API keys.">
    <form class="stack narrow" onSubmit=${submit}>
      <${ErrorBanner} error=${error} compact overrides=${{ INVALID_CREDENTIALS: 'Your current password is not right. Type it again.' }} />
      <input type="text" autocomplete="username" hidden readonly value="" aria-hidden="true" tabindex="-1" />
      <label class="field"><span>Current password</span><input type="password" autocomplete="current-password" required ...${bind('current')} /></label>
      <label class="field"><span>New password</span><input type="password" autocomplete="new-password" required minlength="8" maxlength="128" ...${bind('next')} /></label>
      <label class="field"><span>Repeat new password</span><input type="password" autocomplete="new-password" required minlength="8" ...${bind('confirm')} /></label>
      <div><button type="submit" class="btn primary" disabled=${busy}>Change password</button></div>
    </form>
  <//>`;
}

export function SettingsScreen() {
  const { server, me } = useApp();
  const nav = html`
    <a href="#appearance">Appearance</a>
    <a href="#instructions">Custom instructions</a>
    <a href="#presets">Presets</a>
    <a href="#prompts">Prompts</a>
    <a href="#knowledge">Knowledge</a>
    ${server.allow_user_keys && html`<a href="#provider-key">Provider keys</a>`}
    <a href="#usage">Usage</a>
    <a href="#files">Files</a>
    <a href="#data">Your data</a>
    <a href="#shares">Shared links</a>
    <a href="#sessions">Sessions</a>
    <a href="#api-keys">API keys</a>
    ${(server.sso || []).length > 0 && html`<a href="#account">Linked sign-ins</a>`}
    <a href="#email">Email</a>
    <a href="#password">Password</a>
    <a href="#two-factor">Two-factor sign-in</a>
    ${me.role === 'admin' && html`<a href="/admin">Admin →</a>`}`;
  return html`<${PageShell} title="Settings" nav=${nav}>
    <p class="muted">Signed in as <strong>${me.username}</strong>${me.email ? ` (${me.email})` : ''} · ${me.role}</p>
    <${ThemeCard} />
    <${CustomInstructionsCard} />
    <${PresetsCard} />
    <${PromptsCard} />
    <${KnowledgeCard} Card=${Card} />
    ${server.allow_user_keys && html`<${OwnKeysCard} />`}
    <${UsageCard} />
    <${FilesCard} />
    <${DataCard} Card=${Card} />
    <${SharesCard} Card=${Card} />
    <${SessionsCard} />
    <${ApiKeysCard} />
    <${IdentitiesCard} />
    <${EmailCard} Card=${Card} />
    <${PasswordCard} />
    <${TwoFactorCard} Card=${Card} />
  <//>`;
}
