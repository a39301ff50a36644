// Usage and quotas in the browser: the person's own usage (today's quota,
// a 30-day chart, per-model totals, CSV), the admin usage charts (tokens
// per day by model, top users, cost), quota editing on the admin users page
// and the audit log filters.

import { html, useState, useEffect, useCallback } from './lib.js';
import { get, patch } from './api.js';
import { Card } from './settings.js';
import { ErrorBanner, Spinner, toast, dateTime } from './ui.js';
import { StackedBars, BarList, QuotaMeter, formatNumber, formatCost } from './charts.js';

function useReport(path, query) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const key = JSON.stringify(query || {});
  const load = useCallback(async () => {
    setError(null);
    try {
      setData(await get(path, query));
    } catch (e) {
      setError(e);
    }
  }, [path, key]); // eslint-disable-line
  useEffect(() => { load(); }, [load]);
  return { data, error, load };
}

function csvHref(path, query) {
  const q = new URLSearchParams({ ...query, format: 'csv' });
  return `/api${path}?${q}`;
}

/** Days → stacked bars of tokens by model. */
function daysToBars(days) {
  const keys = [];
  for (const d of days) for (const m of d.models) if (!keys.includes(m.model)) keys.push(m.model);
  const bars = days.map((d) => ({ label: d.date, parts: d.models.map((m) => ({ key: m.model, value: m.tokens })) }));
  return { keys, bars };
}

function ModelTable({ models, caption }) {
  if (!models.length) return html`<p class="muted small">No usage in this period.</p>`;
  // A region that scrolls sideways on phones: reachable by keyboard.
  return html`<div class="table-wrap" tabindex="0" role="region" aria-label=${caption}><table class="table">
    <caption class="sr-only">${caption}</caption>
    <thead><tr><th scope="col">Model</th><th scope="col">Provider</th><th scope="col">Messages</th><th scope="col">Input tokens</th><th scope="col">Output tokens</th><th scope="col">Cost</th></tr></thead>
    <tbody>${models.map((m) => html`<tr key=${m.provider + '/' + m.model}>
      <td><strong>${m.model}</strong></td><td class="muted">${m.provider}</td><td>${m.messages}</td>
      <td>${formatNumber(m.input_tokens)}</td><td>${formatNumber(m.output_tokens)}</td><td>${formatCost(m.cost)}</td></tr>`)}</tbody>
  </table></div>`;
}

/** Usage made with API keys (`/v1` calls). */
function KeyTable({ keys, caption, showUser }) {
  if (!keys.length) return html`<p class="muted small">No API key was used in this period.</p>`;
  return html`<div class="table-wrap" tabindex="0" role="region" aria-label=${caption}><table class="table">
    <caption class="sr-only">${caption}</caption>
    <thead><tr><th scope="col">API key</th>${showUser && html`<th scope="col">User</th>`}<th scope="col">Calls</th><th scope="col">Input tokens</th><th scope="col">Output tokens</th><th scope="col">Cost</th></tr></thead>
    <tbody>${keys.map((k) => html`<tr key=${k.api_key_id}>
      <td><strong>${k.name || 'deleted key'}</strong></td>${showUser && html`<td class="muted">${k.username || k.user_id}</td>`}<td>${k.messages}</td>
      <td>${formatNumber(k.input_tokens)}</td><td>${formatNumber(k.output_tokens)}</td><td>${formatCost(k.cost)}</td></tr>`)}</tbody>
  </table></div>`;
}

function Totals({ t }) {
  return html`<dl class="usage-totals" style="display:grid;grid-template-columns:repeat(auto-fit,minmax(120px,1fr));gap:10px;margin:0 0 14px">
    ${[['Messages', t.messages], ['Input tokens', formatNumber(t.input_tokens)], ['Output tokens', formatNumber(t.output_tokens)], ['Cost', formatCost(t.cost)]].map(([k, v]) => html`
      <div key=${k} style="border:1px solid var(--border);border-radius:10px;padding:10px 12px">
        <dt class="muted small">${k}</dt><dd style="margin:2px 0 0;font-size:20px;font-weight:600">${v}</dd></div>`)}
  </dl>`;
}

/** Settings → Usage: the signed-in person's own numbers. */
export function UsageCard() {
  const { data, error, load } = useReport('/usage');
  const bars = data ? daysToBars(data.days) : null;
  return html`<${Card} id="usage" title="Usage" description="Your messages and tokens over the last 30 days, and what is left of today's quota (it resets at midnight UTC)."
      actions=${html`<a class="btn small" href=${csvHref('/usage', {})} download>Download CSV</a>`}>
    <${ErrorBanner} error=${error} onRetry=${load} compact />
    ${!data && !error && html`<${Spinner} />`}
    ${data && html`<div class="stack" data-testid="usage-today" style="display:grid;gap:12px;margin-bottom:16px">
        <${QuotaMeter} label="Messages today" used=${data.quota.messages_used + data.quota.running} limit=${data.quota.messages_per_day} unit="messages" />
        <${QuotaMeter} label="Tokens today" used=${data.quota.tokens_used} limit=${data.quota.tokens_per_day} unit="tokens" />
        <p class="muted small" style="margin:0">Resets ${dateTime(data.quota.resets_at)}.</p>
      </div>
      <h3 class="sub">Last 30 days</h3>
      <${Totals} t=${data.totals} />
      <${StackedBars} title="Your tokens per day" bars=${bars.bars} keys=${bars.keys} />
      <h3 class="sub">By model</h3>
      <${ModelTable} models=${data.models} caption="Your usage by model" />
      <h3 class="sub">By API key</h3>
      <${KeyTable} keys=${data.keys || []} caption="Your usage by API key" />`}
  <//>`;
}

const RANGES = [[7, 'Last 7 days'], [30, 'Last 30 days'], [90, 'Last 90 days']];

function rangeQuery(days) {
  const to = new Date();
  const from = new Date(to.getTime() - (days - 1) * 86400000);
  const iso = (d) => d.toISOString().slice(0, 10);
  return { from: iso(from), to: iso(to) };
}

/** Admin → Usage: tokens per day by model, top users, cost by model. */
export function AdminUsage() {
  const [days, setDays] = useState(30);
  const range = rangeQuery(days);
  const byDay = useReport('/admin/usage', { ...range, group_by: 'day' });
  const byUser = useReport('/admin/usage', { ...range, group_by: 'user' });
  const byModel = useReport('/admin/usage', { ...range, group_by: 'model' });
  const byKey = useReport('/admin/usage', { ...range, group_by: 'key' });
  const error = byDay.error || byUser.error || byModel.error || byKey.error;
  const reload = () => { byDay.load(); byUser.load(); byModel.load(); byKey.load(); };
  const bars = byDay.data ? daysToBars(byDay.data.days) : null;
  const picker = html`<label class="field" style="flex-direction:row;align-items:center;gap:8px"><span>Period</span>
    <select value=${days} onChange=${(e) => setDays(Number(e.target.value))}>
      ${RANGES.map(([n, l]) => html`<option value=${n}>${l}</option>`)}</select></label>`;
  return html`<${Card} id="usage" title="Usage" description="Messages, tokens and cost per day, model and user. Costs come from the [[prices]] table in the config file."
      actions=${picker}>
    <${ErrorBanner} error=${error} onRetry=${reload} compact />
    ${!byDay.data && !error && html`<${Spinner} />`}
    ${byDay.data && html`<div data-testid="admin-usage">
      <${Totals} t=${byDay.data.totals} />
      <h3 class="sub">Tokens per day, by model</h3>
      <${StackedBars} title="Tokens per day by model" bars=${bars.bars} keys=${bars.keys} />
      <p class="small"><a href=${csvHref('/admin/usage', { ...range, group_by: 'day' })} download>Download per day (CSV)</a></p>
    </div>`}
    ${byUser.data && html`<h3 class="sub">Top users</h3>
      ${byUser.data.users.length === 0 ? html`<p class="muted small">No usage in this period.</p>`
        : html`<${BarList} title="Tokens by user" rows=${byUser.data.users.slice(0, 10).map((u) => ({ label: u.username || u.user_id, value: u.tokens, note: `${u.messages} msg · ${formatCost(u.cost)}` }))} />`}
      <p class="small"><a href=${csvHref('/admin/usage', { ...range, group_by: 'user' })} download>Download per user (CSV)</a></p>`}
    ${byModel.data && html`<h3 class="sub">Cost by model</h3>
      <${ModelTable} models=${byModel.data.models} caption="Usage and cost by model" />
      <p class="small"><a href=${csvHref('/admin/usage', { ...range, group_by: 'model' })} download>Download per model (CSV)</a></p>`}
    ${byKey.data && html`<h3 class="sub">By API key</h3>
      <${KeyTable} keys=${byKey.data.keys} caption="Usage by API key" showUser=${true} />
      <p class="small"><a href=${csvHref('/admin/usage', { ...range, group_by: 'key' })} download>Download per API key (CSV)</a></p>`}
  <//>`;
}

function quotaText(u) {
  const q = u.effective_quota || {};
  const part = (v, unit) => (v == null ? `∞ ${unit}` : `${formatNumber(v)} ${unit}`);
  return `${part(q.messages_per_day, 'msg')} · ${part(q.tokens_per_day, 'tok')}`;
}

/** A cell of the admin users table: the daily quota and an inline editor. */
export function QuotaCell({ user, onSaved }) {
  const [open, setOpen] = useState(false);
  const [f, setF] = useState({ m: '', t: '' });
  const [error, setError] = useState(null);
  const start = () => {
    setF({ m: user.quota?.messages_per_day ?? '', t: user.quota?.tokens_per_day ?? '' });
    setError(null);
    setOpen(true);
  };
  const save = async (quota) => {
    setError(null);
    try {
      const u = await patch('/admin/users/' + user.id, { quota });
      onSaved(u);
      setOpen(false);
      toast(quota ? 'Quota saved' : 'Quota reset to the server default');
    } catch (e) {
      setError(e);
    }
  };
  const num = (s) => (String(s).trim() === '' ? null : Number(s));
  const submit = (e) => {
    e.preventDefault();
    const m = num(f.m);
    const t = num(f.t);
    save(m == null && t == null ? null : { messages_per_day: m, tokens_per_day: t });
  };
  if (!open) {
    return html`<span class="small">${quotaText(user)}</span>${user.quota ? html` <span class="badge">custom</span>` : ''}
      <button type="button" class="btn small" style="margin-left:6px" aria-label=${'Edit quota of ' + user.username} onClick=${start}>Quota</button>`;
  }
  return html`<form class="row-form" onSubmit=${submit} aria-label=${'Daily quota of ' + user.username} style="margin:0">
    <label class="field"><span>Messages / day</span><input type="number" min="0" step="1" placeholder="default" value=${f.m}
      onInput=${(e) => setF((x) => ({ ...x, m: e.target.value }))} /></label>
    <label class="field"><span>Tokens / day</span><input type="number" min="0" step="1" placeholder="default" value=${f.t}
      onInput=${(e) => setF((x) => ({ ...x, t: e.target.value }))} /></label>
    <button type="submit" class="btn small primary">Save</button>
    <button type="button" class="btn small" onClick=${() => save(null)}>Use default</button>
    <button type="button" class="btn small" onClick=${() => setOpen(false)}>Cancel</button>
    <${ErrorBanner} error=${error} compact />
  </form>`;
}

/** Filters for the audit log: actor, action (or prefix like `admin.`), dates. */
export function AuditFilters({ value, onChange }) {
  const [f, setF] = useState({ actor: '', action: '', from: '', to: '', ...value });
  const bind = (k) => ({ value: f[k], onInput: (e) => setF((s) => ({ ...s, [k]: e.target.value })) });
  const submit = (e) => {
    e.preventDefault();
    const q = {};
    for (const [k, v] of Object.entries(f)) if (String(v).trim()) q[k] = String(v).trim();
    onChange(q);
  };
  const clear = () => { setF({ actor: '', action: '', from: '', to: '' }); onChange({}); };
  return html`<form class="row-form" onSubmit=${submit} aria-label="Filter the audit log">
    <label class="field"><span>Actor</span><input ...${bind('actor')} placeholder="username" autocomplete="off" /></label>
    <label class="field"><span>Action</span><input ...${bind('action')} placeholder="e.g. login or admin." list="audit-actions" autocomplete="off" /></label>
    <datalist id="audit-actions">${['login', 'logout', 'setup', 'register', 'token', 'admin.', 'admin.user.quota', 'admin.user.update', 'admin.provider.', 'invite.'].map((a) => html`<option value=${a} />`)}</datalist>
    <label class="field"><span>From</span><input type="date" ...${bind('from')} /></label>
    <label class="field"><span>To</span><input type="date" ...${bind('to')} /></label>
    <button type="submit" class="btn small primary">Filter</button>
    <button type="button" class="btn small" onClick=${clear}>Clear</button>
  </form>`;
}
