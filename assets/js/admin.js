// Admin: users, groups (admin-groups.js), invites, providers, usage (charts in usage.js), audit log,
// HTTPS certificate status, branding (admin-branding.js).

import { html, useState, useEffect, useCallback } from './lib.js';
import { get, post, patch, put, del } from './api.js';
import { useApp } from './state.js';
import { PageShell, Card, useList } from './settings.js';
import { AdminUsage, QuotaCell, AuditFilters } from './usage.js';
import { AdminBranding } from './admin-branding.js';
import { AdminModels, ProviderTest } from './admin-models.js';
import { AdminGroups } from './admin-groups.js';
import { describeError, ErrorBanner, Spinner, confirmDialog, promptDialog, toast, timeAgo, dateTime, CopyButton, Icon } from './ui.js';

const SECTIONS = [
  ['users', 'Users'],
  ['groups', 'Groups'],
  ['invites', 'Invites'],
  ['providers', 'Providers'],
  ['models', 'Models'],
  ['usage', 'Usage'],
  ['audit', 'Audit log'],
  ['tls', 'HTTPS'],
  ['branding', 'Branding'],
];

/** A paged list: items accumulate, "Load more" follows next_cursor. */
function usePaged(path, limit = 50, filters = null) {
  const [items, setItems] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(false);
  const load = useCallback(async (from = null) => {
    setLoading(true);
    setError(null);
    try {
      const r = await get(path, { ...filters, limit, cursor: from || undefined });
      setItems((xs) => (from && xs ? [...xs, ...r.items] : r.items));
      setCursor(r.next_cursor);
    } catch (e) {
      setError(e);
    } finally {
      setLoading(false);
    }
  }, [path, limit, JSON.stringify(filters)]); // eslint-disable-line
  useEffect(() => { load(); }, [load]);
  return { items, setItems, cursor, error, loading, reload: () => load(), more: () => load(cursor) };
}

function MoreButton({ list, label = 'Load more' }) {
  if (!list.cursor) return null;
  return html`<div class="more-row"><button type="button" class="btn" disabled=${list.loading} onClick=${list.more}>${list.loading ? html`<${Spinner} />` : label}</button></div>`;
}

function Users() {
  const { me } = useApp();
  const list = usePaged('/admin/users');
  const [form, setForm] = useState({ username: '', password: '', role: 'user' });
  const [formError, setFormError] = useState(null);
  const replace = (u) => list.setItems((xs) => xs.map((x) => (x.id === u.id ? u : x)));
  const update = async (u, body, done) => {
    try { replace(await patch('/admin/users/' + u.id, body)); if (done) toast(done); } catch (e) { toast(describeError(e).text, 'error'); }
  };
  const resetPassword = async (u) => {
    const pw = await promptDialog({ title: `New password for ${u.username}`, body: 'They will be signed out everywhere and their API keys deleted.', label: 'New password', type: 'password', required: true, minlength: 8, maxlength: 128, autocomplete: 'new-password', confirm: 'Set password' });
    if (pw) update(u, { password: pw }, 'Password set');
  };
  const [link, setLink] = useState(null);
  const resetLink = async (u) => {
    try {
      const r = await post(`/admin/users/${u.id}/reset-link`, {});
      setLink({ user: u.username, ...r });
    } catch (e) { toast(describeError(e).text, 'error'); }
  };
  const resetTwoFactor = async (u) => {
    if (!await confirmDialog({ title: `Turn off two-factor sign-in for ${u.username}?`, body: 'Do this when they lost their phone and their recovery codes. They sign in with the password alone until they set it up again.', confirm: 'Turn off', danger: true })) return;
    try { await del(`/admin/users/${u.id}/two-factor`); toast(`Two-factor sign-in is off for ${u.username}`); } catch (e) { toast(describeError(e).text, 'error'); }
  };
  const toggle = async (u) => {
    const disabling = u.status === 'active';
    if (disabling && !await confirmDialog({ title: `Disable ${u.username}?`, body: 'They are signed out and cannot sign in until enabled again.', confirm: 'Disable', danger: true })) return;
    update(u, { status: disabling ? 'disabled' : 'active' }, disabling ? 'User disabled' : 'User enabled');
  };
  const create = async (e) => {
    e.preventDefault();
    setFormError(null);
    try {
      const u = await post('/admin/users', { username: form.username.trim(), password: form.password, role: form.role });
      list.setItems((xs) => [...(xs || []), u]);
      setForm({ username: '', password: '', role: 'user' });
      toast('User created');
    } catch (err) {
      setFormError(err);
    }
  };
  return html`<${Card} id="users" title="Users" description="Everyone with an account on this server.">
    <${ErrorBanner} error=${list.error} onRetry=${list.reload} compact />
    ${link && html`<div class="banner success" role="status" data-testid="reset-link"><div class="banner-text"><strong>Reset link for ${link.user}.</strong>
        Give it to them: it sets a new password once, until ${dateTime(link.expires_at)}, and signs them out everywhere.
        <code class="secret">${link.url}</code></div>
      <div class="banner-actions"><${CopyButton} text=${link.url} label="Copy reset link">Copy link<//>
        <button type="button" class="icon-btn" aria-label="Hide the reset link" onClick=${() => setLink(null)}><${Icon} name="close" size=${16} /></button></div></div>`}
    ${!list.items && !list.error && html`<${Spinner} />`}
    ${list.items && html`<div class="table-wrap"><table class="table">
      <thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col">Daily quota</th><th scope="col">Created</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${list.items.map((u) => html`<tr key=${u.id}>
        <td><strong>${u.username}</strong>${u.id === me.id && html` <span class="badge">you</span>`}<div class="muted small">${u.email || ''}</div>
          ${u.groups?.length > 0 && html`<div class="small" data-testid="user-groups">Groups: ${u.groups.map((g) => g.name).join(', ')}</div>`}</td>
        <td><select aria-label=${'Role of ' + u.username} value=${u.role} onChange=${(e) => update(u, { role: e.target.value }, 'Role changed')}>
          <option value="user">user</option><option value="admin">admin</option></select></td>
        <td><span class=${'badge ' + (u.status === 'active' ? 'ok' : 'bad')}>${u.status}</span></td>
        <td><${QuotaCell} user=${u} onSaved=${replace} /></td>
        <td class="muted small">${dateTime(u.created_at)}</td>
        <td class="actions">
          <button type="button" class="btn small" onClick=${() => resetPassword(u)} aria-label=${'Reset password of ' + u.username}>Reset password</button>
          <button type="button" class="btn small" onClick=${() => resetLink(u)} aria-label=${'Make a reset link for ' + u.username}>Reset link</button>
          <button type="button" class="btn small" onClick=${() => resetTwoFactor(u)} aria-label=${'Turn off 2FA for ' + u.username}>Turn off 2FA</button>
          <button type="button" class=${'btn small ' + (u.status === 'active' ? 'danger-outline' : '')} onClick=${() => toggle(u)}
            aria-label=${(u.status === 'active' ? 'Disable ' : 'Enable ') + u.username}>${u.status === 'active' ? 'Disable' : 'Enable'}</button>
        </td></tr>`)}</tbody></table></div>
      <${MoreButton} list=${list} />`}
    <h3 class="sub">Add a user</h3>
    <form class="row-form" onSubmit=${create}>
      <label class="field"><span>Username</span><input required minlength="3" maxlength="50" pattern="[A-Za-z0-9_]+" value=${form.username} autocomplete="off"
        onInput=${(e) => setForm((f) => ({ ...f, username: e.target.value }))} /></label>
      <label class="field"><span>Password</span><input type="password" required minlength="8" maxlength="128" value=${form.password} autocomplete="new-password"
        onInput=${(e) => setForm((f) => ({ ...f, password: e.target.value }))} /></label>
      <label class="field"><span>Role</span><select value=${form.role} onChange=${(e) => setForm((f) => ({ ...f, role: e.target.value }))}>
        <option value="user">user</option><option value="admin">admin</option></select></label>
      <button type="submit" class="btn primary">Add user</button>
    </form>
    <${ErrorBanner} error=${formError} compact />
  <//>`;
}

function UsersAndPolicy() {
  return html`<${Users} /><${TwoFactorPolicy} />`;
}

function TwoFactorPolicy() {
  const [policy, setPolicy] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => { get('/admin/security').then((r) => setPolicy(r.two_factor), setError); }, []);
  const choose = async (v) => {
    try {
      const r = await put('/admin/security', { two_factor: v });
      setPolicy(r.two_factor);
      toast('Saved');
    } catch (e) { toast(describeError(e).text, 'error'); }
  };
  return html`<${Card} id="two-factor-policy" title="Two-factor sign-in"
      description="Who must sign in with a code from an authenticator app too. Those who must and have not set it up are sent to set it up after signing in, and can do nothing else until done. API keys are not affected.">
    <${ErrorBanner} error=${error} compact />
    ${policy && html`<label class="field narrow"><span>Required for</span>
      <select value=${policy} onChange=${(e) => choose(e.target.value)} data-testid="two-factor-policy">
        <option value="optional">nobody (optional)</option><option value="admins">administrators</option><option value="everyone">everyone</option>
      </select></label>`}
  <//>`;
}

function Invites() {
  const { data, error, load } = useList('/admin/invites');
  const [form, setForm] = useState({ uses: 1, hours: 168, role: 'user' });
  const [created, setCreated] = useState(null);
  const [formError, setFormError] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    setFormError(null);
    try {
      const inv = await post('/admin/invites', { uses: Number(form.uses), expires_in_hours: Number(form.hours), role: form.role });
      setCreated(inv);
      load();
    } catch (err) {
      setFormError(err);
    }
  };
  const revoke = async (inv) => {
    if (!await confirmDialog({ title: 'Revoke this invite?', body: 'The link stops working.', confirm: 'Revoke', danger: true })) return;
    try { await del('/admin/invites/' + encodeURIComponent(inv.code)); toast('Invite revoked'); load(); } catch (err) { toast(describeError(err).text, 'error'); }
  };
  return html`<${Card} id="invites" title="Invites" description="Links that let someone create an account (needed when registration is invite-only).">
    <form class="row-form" onSubmit=${create}>
      <label class="field"><span>Uses</span><input type="number" min="1" max="10000" value=${form.uses} onInput=${(e) => setForm((f) => ({ ...f, uses: e.target.value }))} /></label>
      <label class="field"><span>Valid for (hours)</span><input type="number" min="1" max="8760" value=${form.hours} onInput=${(e) => setForm((f) => ({ ...f, hours: e.target.value }))} /></label>
      <label class="field"><span>Role</span><select value=${form.role} onChange=${(e) => setForm((f) => ({ ...f, role: e.target.value }))}>
        <option value="user">user</option><option value="admin">admin</option></select></label>
      <button type="submit" class="btn primary">Create invite</button>
    </form>
    <${ErrorBanner} error=${formError || error} compact onRetry=${error ? load : null} />
    ${created && html`<div class="banner success" role="status"><div class="banner-text"><strong>Invite created.</strong> Send this link:
        <code class="secret" data-testid="invite-url">${created.url}</code></div>
      <div class="banner-actions"><${CopyButton} text=${created.url} label="Copy invite link">Copy link<//></div></div>`}
    ${data && (data.items.length === 0 ? html`<p class="muted small">No open invites.</p>` : html`<ul class="rows">${data.items.map((inv) => html`<li class="row" key=${inv.code}>
      <div class="row-main"><code>${inv.code}</code> <span class="badge">${inv.role}</span>
        <div class="muted small">${inv.uses_left} use(s) left · expires ${dateTime(inv.expires_at)}</div></div>
      <${CopyButton} text=${inv.url} label=${'Copy link for invite ' + inv.code}>Link<//>
      <button type="button" class="btn small danger-outline" aria-label=${'Revoke invite ' + inv.code} onClick=${() => revoke(inv)}>Revoke</button>
    </li>`)}</ul>`)}
  <//>`;
}

function ProviderForm({ initial, onDone, onCancel }) {
  const editing = !!initial;
  const [f, setF] = useState(initial
    ? { kind: initial.kind, name: initial.name, base_url: initial.base_url, api_key: '', models: (initial.models || []).join(', ') }
    : { kind: 'openai', name: '', base_url: '', api_key: '', models: '' });
  const [error, setError] = useState(null);
  // A failed connection test before adding: offer to save anyway.
  const [failedTest, setFailedTest] = useState(null);
  const bind = (k) => ({ value: f[k], onInput: (e) => { setFailedTest(null); setF((s) => ({ ...s, [k]: e.target.value })); } });
  const submit = async (e, anyway = false) => {
    e?.preventDefault();
    setError(null);
    setFailedTest(null);
    const models = f.models.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
    try {
      if (editing) {
        const body = { base_url: f.base_url.trim(), models: models.length ? models : null };
        if (f.api_key) body.api_key = f.api_key;
        await patch('/admin/providers/' + encodeURIComponent(initial.name), body);
      } else {
        const body = { kind: f.kind, name: f.name.trim(), base_url: f.base_url.trim() };
        if (f.api_key) body.api_key = f.api_key;
        if (models.length) body.models = models;
        if (!anyway) body.test = true;
        await post('/admin/providers', body);
      }
      onDone();
    } catch (err) {
      if (err.code === 'PROVIDER_TEST_FAILED') setFailedTest(err.message);
      else setError(err);
    }
  };
  const hint = { openai: 'Up to and including /v1, e.g. http://127.0.0.1:8000/v1', anthropic: 'Without /v1, e.g. https://api.anthropic.com', ollama: 'The server root, e.g. http://127.0.0.1:11434' }[f.kind];
  return html`<form class="provider-form stack" onSubmit=${submit}>
    <h3 class="sub">${editing ? `Edit ${initial.name}` : 'Add a provider'}</h3>
    <div class="grid2">
      <label class="field"><span>Kind</span><select value=${f.kind} disabled=${editing} onChange=${(e) => setF((s) => ({ ...s, kind: e.target.value }))}>
        <option value="openai">OpenAI-compatible</option><option value="anthropic">Anthropic</option><option value="ollama">Ollama</option></select></label>
      <label class="field"><span>Name</span><input required maxlength="50" pattern="[A-Za-z0-9_.\\-]+" disabled=${editing} ...${bind('name')} /></label>
    </div>
    <label class="field"><span>Base URL</span><input type="url" required ...${bind('base_url')} /><small class="muted">${hint}</small></label>
    <label class="field"><span>API key ${editing && initial.has_api_key ? '(leave empty to keep the current one)' : '(optional for local servers)'}</span>
      <input type="password" autocomplete="off" ...${bind('api_key')} /></label>
    <label class="field"><span>Models (optional allowlist, comma-separated)</span><input ...${bind('models')} placeholder="all models the provider lists" /></label>
    <${ErrorBanner} error=${error} compact />
    ${failedTest && html`<div class="banner error compact" role="alert"><div><strong>The provider did not answer the test, so it was not added.</strong> ${failedTest}</div></div>`}
    <div class="dialog-actions">
      ${onCancel && html`<button type="button" class="btn" onClick=${onCancel}>Cancel</button>`}
      ${failedTest && html`<button type="button" class="btn" onClick=${() => submit(null, true)}>Save anyway</button>`}
      <button type="submit" class="btn primary">${editing ? 'Save' : failedTest ? 'Test again' : 'Test and add'}</button>
    </div>
  </form>`;
}

function Providers() {
  const { data, error, load } = useList('/admin/providers');
  const [editing, setEditing] = useState(null);
  const [adding, setAdding] = useState(false);
  useEffect(() => {
    // Reachability is re-checked in the background; keep the view fresh.
    const t = setInterval(load, 15000);
    return () => clearInterval(t);
  }, [load]);
  const { server } = useApp();
  // Users' own keys, per provider (with the server's allow_user_keys on).
  const setUserKeys = async (p, allow) => {
    try { await patch('/admin/providers/' + encodeURIComponent(p.name), { allow_user_keys: allow }); toast(allow ? `Users may bring their own key to ${p.name}` : `Users' keys no longer go to ${p.name}`); load(); } catch (e) { toast(describeError(e).text, 'error'); }
  };
  const setEnabled = async (p, enabled) => {
    try { await patch('/admin/providers/' + encodeURIComponent(p.name), { enabled }); toast(enabled ? 'Provider enabled' : 'Provider disabled'); load(); } catch (e) { toast(describeError(e).text, 'error'); }
  };
  const remove = async (p) => {
    if (!await confirmDialog({ title: `Delete provider ${p.name}?`, body: 'Its models disappear from the model picker.', confirm: 'Delete', danger: true })) return;
    try { await del('/admin/providers/' + encodeURIComponent(p.name)); toast('Provider deleted'); load(); } catch (e) { toast(describeError(e).text, 'error'); }
  };
  return html`<${Card} id="providers" title="Providers" description="Where answers come from. Providers from the config file or the environment can only be enabled or disabled here."
      actions=${html`<button type="button" class="btn small" onClick=${load}><${Icon} name="refresh" size=${14} />Refresh</button>
        <button type="button" class="btn small primary" onClick=${() => { setAdding(true); setEditing(null); }}><${Icon} name="plus" size=${14} />Add provider</button>`}>
    <${ErrorBanner} error=${error} onRetry=${load} compact />
    ${adding && html`<${ProviderForm} onCancel=${() => setAdding(false)} onDone=${() => { setAdding(false); toast('Provider added'); load(); }} />`}
    ${!data && !error && html`<${Spinner} />`}
    ${data && (data.items.length === 0 ? html`<p class="muted">No providers yet. Add one so people can chat.</p>` : html`<ul class="rows">${data.items.map((p) => html`<li class="row provider" key=${p.name}>
      <div class="row-main">
        <strong>${p.name}</strong> <span class="badge">${p.kind}</span> <span class="badge subtle">${p.source}</span>
        ${!p.enabled ? html`<span class="badge bad">disabled</span>`
          : p.status.reachable ? html`<span class="badge ok">reachable</span>`
            : html`<span class="badge warn" title=${p.status.last_error || ''}>${p.status.checked_at ? 'unreachable' : 'not checked yet'}</span>`}
        <div class="muted small"><code>${p.base_url}</code> · ${p.models_count} model(s)${p.models ? ' (allowlist)' : ''} · key ${p.has_api_key ? 'set' : 'none'}${p.status.checked_at ? ' · checked ' + timeAgo(p.status.checked_at) : ''}</div>
        ${server?.allow_user_keys && p.kind !== 'ollama' && html`<label class="user-keys small" data-testid=${'user-keys-' + p.name}>
          <input type="checkbox" role="switch" checked=${p.allow_user_keys} aria-label=${"Users may bring their own key to " + p.name} onChange=${(e) => setUserKeys(p, e.target.checked)} />
          Users may bring their own key</label>`}
        ${p.status.last_error && html`<div class="small error-text">${p.status.last_error_code ? p.status.last_error_code + ': ' : ''}${p.status.last_error}</div>`}
        <${ProviderTest} name=${p.name} />
        ${editing === p.name && html`<${ProviderForm} initial=${p} onCancel=${() => setEditing(null)} onDone=${() => { setEditing(null); toast('Provider saved'); load(); }} />`}
      </div>
      <div class="row-actions">
        ${p.source === 'admin' && html`<button type="button" class="btn small" aria-label=${'Edit provider ' + p.name} onClick=${() => { setEditing(p.name); setAdding(false); }}>Edit</button>`}
        <button type="button" class="btn small" aria-label=${(p.enabled ? 'Disable provider ' : 'Enable provider ') + p.name} onClick=${() => setEnabled(p, !p.enabled)}>${p.enabled ? 'Disable' : 'Enable'}</button>
        ${p.source === 'admin' && html`<button type="button" class="btn small danger-outline" aria-label=${'Delete provider ' + p.name} onClick=${() => remove(p)}>Delete</button>`}
      </div>
    </li>`)}</ul>`)}
  <//>`;
}

function Audit() {
  const [filters, setFilters] = useState({});
  const list = usePaged('/admin/audit', 50, filters);
  return html`<${Card} id="audit" title="Audit log" description="Every sign-in and admin action, newest first."
      actions=${html`<button type="button" class="btn small" onClick=${list.reload}><${Icon} name="refresh" size=${14} />Refresh</button>`}>
    <${AuditFilters} value=${filters} onChange=${setFilters} />
    <${ErrorBanner} error=${list.error} onRetry=${list.reload} compact />
    ${!list.items && !list.error && html`<${Spinner} />`}
    ${list.items && html`<div class="table-wrap"><table class="table audit">
      <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Outcome</th><th scope="col">From</th></tr></thead>
      <tbody>${list.items.map((a) => html`<tr key=${a.id}>
        <td class="small nowrap" title=${dateTime(a.at)}>${timeAgo(a.at)}</td>
        <td>${a.actor || '—'}</td>
        <td><code>${a.action}</code></td>
        <td class="small break">${a.target || ''}</td>
        <td><span class=${'badge ' + (a.outcome === 'ok' ? 'ok' : 'bad')}>${a.outcome}</span></td>
        <td class="small muted nowrap">${a.ip || ''}</td>
      </tr>`)}</tbody></table></div>
      <${MoreButton} list=${list} label="Older entries" />`}
  <//>`;
}

const CERT_SOURCE = { acme: 'issued by the CA (automatic)', files: 'certificate files', self_signed: 'self-signed stand-in' };

function daysBadge(c) {
  const d = c.days_left;
  const cls = d < 0 ? 'bad' : d < 20 ? 'warn' : 'ok';
  const text = d < 0 ? 'expired' : d === 1 ? '1 day left' : `${d} days left`;
  return html`<span class=${'badge ' + cls} data-testid="tls-days-left">${text}</span>`;
}

/** GET /api/admin/tls: the certificate served, its renewal and the last problem. */
function Tls() {
  const { data: t, error, load } = useList('/admin/tls');
  useEffect(() => {
    // Issuance and renewal happen in the background; keep the view fresh.
    const i = setInterval(load, 15000);
    return () => clearInterval(i);
  }, [load]);
  const c = t && t.certificate;
  const row = (label, value) => html`<tr><th scope="row">${label}</th><td>${value}</td></tr>`;
  return html`<${Card} id="tls" title="HTTPS" description="The certificate this server presents and how it is kept fresh."
      actions=${html`<button type="button" class="btn small" onClick=${load}><${Icon} name="refresh" size=${14} />Refresh</button>`}>
    <${ErrorBanner} error=${error} onRetry=${load} compact />
    ${!t && !error && html`<${Spinner} />`}
    ${t && html`<div data-testid="tls-status" data-mode=${t.mode}>
      ${t.mode === 'off' && html`<p>HTTPS is off: this server speaks plain HTTP (behind a proxy that terminates TLS, or on a private network).
        Start it with <code>--domain</code> for automatic certificates, or with <code>--tls-cert</code> and <code>--tls-key</code>.</p>`}
      ${t.last_error && html`<div class="banner error" role="alert" data-testid="tls-error">
        <${Icon} name="alert" />
        <div class="banner-text">
          <strong>${t.mode === 'acme' ? 'Could not obtain a certificate' : 'Could not reload the certificate'}${t.consecutive_failures > 1 ? ` (${t.consecutive_failures} attempts)` : ''}:</strong>
          <span>${t.last_error.message}</span>
          ${t.last_error.hint && html`<span><strong>What to do:</strong> ${t.last_error.hint}</span>`}
          <span class="muted small">${timeAgo(t.last_error.at)}${t.last_error.retry_at ? ' · next attempt ' + timeAgo(t.last_error.retry_at) : ''}</span>
        </div>
      </div>`}
      ${c && c.source === 'self_signed' && html`<p class="small"><span class="badge warn">self-signed</span>
        Browsers warn about this server until the first certificate arrives${t.issuing ? ' (being requested now)' : ''}.</p>`}
      ${t.mode !== 'off' && html`<div class="table-wrap"><table class="table">
        <tbody>
          ${row('Mode', t.mode === 'acme' ? 'automatic certificates (ACME)' : 'certificate files')}
          ${t.mode === 'acme' && row('Domains', t.domains.join(', '))}
          ${c && row('Certificate', html`${CERT_SOURCE[c.source] || c.source}${c.names.length ? html` for <code>${c.names.join(', ')}</code>` : ''}`)}
          ${c && row('Issuer', c.issuer)}
          ${c && row('Valid until', html`${dateTime(c.not_after)} ${daysBadge(c)}`)}
          ${c && row('Serial', html`<code class="break">${c.serial}</code>`)}
          ${t.mode === 'acme' && row('Certificate authority', html`<code class="break">${t.acme_directory}</code>`)}
          ${t.mode === 'acme' && row('Challenge', t.challenge || '—')}
          ${t.mode === 'acme' && row('Renewal', t.issuing ? 'in progress' : t.renew_at ? `due ${dateTime(t.renew_at)} (${timeAgo(t.renew_at)})` : '—')}
          ${row(t.mode === 'acme' ? 'Last issued' : 'Last loaded', t.last_renewal_at ? `${dateTime(t.last_renewal_at)} (${timeAgo(t.last_renewal_at)})` : '—')}
        </tbody></table></div>`}
    </div>`}
  <//>`;
}

export function AdminScreen() {
  const { route } = useApp();
  const section = SECTIONS.some(([k]) => k === route.params.section) ? route.params.section : 'users';
  const nav = SECTIONS.map(([k, label]) => html`<a href=${'/admin/' + k} aria-current=${k === section ? 'page' : undefined}>${label}</a>`);
  const body = { users: UsersAndPolicy, groups: AdminGroups, invites: Invites, providers: Providers, models: AdminModels, usage: AdminUsage, audit: Audit, tls: Tls, branding: AdminBranding }[section];
  return html`<${PageShell} title="Admin" nav=${html`${nav}<a href="/settings">Settings →</a>`}>
    <${body} />
  <//>`;
}

export { get };
