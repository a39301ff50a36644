// Admin → Models: every model of every provider with what it can do, shown
// or hidden in the chat's picker, display name, description, price, the
// server-wide default model, and a "Test" button (a one-token answer, or an
// embedding). Also the "Test" button of a provider (its model list).

import { html, useState } from './lib.js';
import { api, get, post, patch } from './api.js';
import { Card, useList } from './settings.js';
import { describeError, ErrorBanner, Spinner, toast, Icon } from './ui.js';

const enc = encodeURIComponent;

function tokens(n) {
  if (n == null) return null;
  return n >= 1000 ? `${Math.round(n / 1000)}k` : String(n);
}

function money(p) {
  return p ? `${p.input_per_million} in / ${p.output_per_million} out per 1M tokens` : 'not priced';
}

/** The outcome of a test, as a sentence with its colour. */
export function TestResultLine({ result }) {
  if (!result) return null;
  if (result.running) return html`<div class="test-result" role="status"><${Spinner} label="Testing" /> Testing…</div>`;
  return html`<div class=${'test-result ' + (result.ok ? 'ok' : 'bad')} role="status">${result.ok ? '✓ ' : '✗ '}${result.message}</div>`;
}

/** A "Test" button for a saved provider: asks it for its model list. */
export function ProviderTest({ name }) {
  const [result, setResult] = useState(null);
  const run = async () => {
    setResult({ running: true });
    try { setResult(await post('/admin/providers/' + enc(name) + '/test', {})); }
    catch (e) { setResult({ ok: false, message: describeError(e).text }); }
  };
  return html`<div class="provider-test">
    <button type="button" class="btn small" aria-label=${'Test connection to ' + name} onClick=${run} disabled=${result?.running}>Test connection</button>
    <${TestResultLine} result=${result} />
  </div>`;
}

function Caps({ m }) {
  const c = m.capabilities;
  const use = { chat: 'chat', embedding: 'embeddings', image: 'images', other: 'other' }[c.use] || c.use;
  return html`<div class="caps">
    <span class=${'badge' + (c.use === 'chat' ? ' ok' : '')}>${use}</span>
    ${c.vision && html`<span class="badge"><${Icon} name="eye" size=${12} /> vision</span>`}
    ${c.tools && html`<span class="badge"><${Icon} name="tool" size=${12} /> tools</span>`}
    ${c.context_window != null && html`<span class="badge subtle" title="Context window">${tokens(c.context_window)} context</span>`}
    ${c.max_output_tokens != null && html`<span class="badge subtle" title="Longest answer">${tokens(c.max_output_tokens)} output</span>`}
  </div>`;
}

function EditModel({ m, onSaved, onCancel }) {
  const [f, setF] = useState({
    display_name: m.display_name !== m.provider_display_name ? m.display_name : '',
    description: m.description || '',
    pin: m.price_override ? String(m.price_override.input_per_million) : '',
    pout: m.price_override ? String(m.price_override.output_per_million) : '',
  });
  const [error, setError] = useState(null);
  const bind = (k) => ({ value: f[k], onInput: (e) => setF((s) => ({ ...s, [k]: e.target.value })) });
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const body = { display_name: f.display_name.trim() || null, description: f.description.trim() || null };
    if (f.pin.trim() === '' && f.pout.trim() === '') body.price = null;
    else body.price = { input_per_million: Number(f.pin), output_per_million: Number(f.pout) };
    try { await patch('/admin/models/' + enc(m.id), body); onSaved(); } catch (err) { setError(err); }
  };
  return html`<form class="model-edit" onSubmit=${submit} aria-label=${'Settings of ' + m.id}>
    <label class="field"><span>Display name</span><input maxlength="100" placeholder=${m.provider_display_name} ...${bind('display_name')} /></label>
    <label class="field"><span>Description</span><input maxlength="500" placeholder="Shown under the name" ...${bind('description')} /></label>
    <div class="grid2">
      <label class="field"><span>Input price per 1M tokens</span><input type="number" min="0" step="any" inputmode="decimal" ...${bind('pin')} /></label>
      <label class="field"><span>Output price per 1M tokens</span><input type="number" min="0" step="any" inputmode="decimal" ...${bind('pout')} /></label>
    </div>
    <small class="muted">Leave both prices empty to use the server's price table. A price here applies to this model on every provider.</small>
    <${ErrorBanner} error=${error} compact />
    <div class="dialog-actions">
      <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
      <button type="submit" class="btn primary">Save</button>
    </div>
  </form>`;
}

export function AdminModels() {
  const { data, error, load } = useList('/admin/models');
  const [q, setQ] = useState('');
  const [editing, setEditing] = useState(null);
  const [tests, setTests] = useState({});
  const key = (m) => m.provider + '/' + m.id;
  const setHidden = async (m, hidden) => {
    try { await patch('/admin/models/' + enc(m.id), { hidden }); toast(hidden ? `${m.id} hidden from the picker` : `${m.id} shown in the picker`); load(); }
    catch (e) { toast(describeError(e).text, 'error'); }
  };
  const setDefault = async (model) => {
    try { await api('PUT', '/admin/default-model', { model: model || null }); toast(model ? `Default model: ${model}` : 'Default model cleared'); load(); }
    catch (e) { toast(describeError(e).text, 'error'); }
  };
  const test = async (m) => {
    const k = key(m);
    setTests((t) => ({ ...t, [k]: { running: true } }));
    let r;
    try { r = await post('/admin/models/' + enc(m.id) + '/test', { provider: m.provider }); }
    catch (e) { r = { ok: false, message: describeError(e).text }; }
    setTests((t) => ({ ...t, [k]: r }));
  };
  const items = data?.items || [];
  const chatIds = [...new Set(items.filter((m) => m.capabilities.use === 'chat').map((m) => m.id))];
  const ql = q.trim().toLowerCase();
  const shown = items.filter((m) => !ql || `${m.id} ${m.display_name} ${m.provider}`.toLowerCase().includes(ql));
  return html`<${Card} id="models" title="Models" description="Every model of every enabled provider. Only chat models that are not hidden appear in the chat's model picker; embedding and image models never do."
      actions=${html`<button type="button" class="btn small" onClick=${load}><${Icon} name="refresh" size=${14} />Refresh</button>`}>
    <${ErrorBanner} error=${error} onRetry=${load} compact />
    ${!data && !error && html`<${Spinner} />`}
    ${data && html`<div class="grid2">
      <label class="field"><span>Default model for new chats</span>
        <select value=${data.default_model || ''} onChange=${(e) => setDefault(e.target.value)}>
          <option value="">None set (the config file's, else the first model)</option>
          ${chatIds.map((id) => html`<option value=${id}>${id}</option>`)}
        </select></label>
      <label class="field"><span>Filter</span><input type="search" placeholder="Name, id or provider" value=${q} onInput=${(e) => setQ(e.target.value)} /></label>
    </div>
    ${items.length === 0 ? html`<p class="muted">No models yet: add a provider, or wait for its model list.</p>` : html`<table class="model-table">
      <thead><tr><th scope="col">Model</th><th scope="col">Capabilities</th><th scope="col">Picker</th><th scope="col">Price</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${shown.map((m) => html`<tr key=${key(m)} data-model=${m.id} data-provider=${m.provider}>
        <td>
          <strong>${m.display_name}</strong>${m.default && html`<span class="badge ok">default</span>`}
          <div class="muted small"><code>${m.id}</code> · ${m.provider}${m.providers.length > 1 ? ` (also ${m.providers.filter((p) => p !== m.provider).join(', ')})` : ''}</div>
          ${m.description && html`<div class="small">${m.description}</div>`}
          ${editing === key(m) && html`<${EditModel} m=${m} onCancel=${() => setEditing(null)} onSaved=${() => { setEditing(null); toast('Model saved'); load(); }} />`}
          <${TestResultLine} result=${tests[key(m)]} />
        </td>
        <td><${Caps} m=${m} /></td>
        <td>${m.in_picker ? html`<span class="badge ok">shown</span>` : m.hidden ? html`<span class="badge warn">hidden</span>` : html`<span class="badge subtle">not a chat model</span>`}
          ${!m.reachable && html`<span class="badge bad">${m.cooling_down ? 'cooling down' : 'unreachable'}</span>`}</td>
        <td class="small">${money(m.price)}${m.price_override ? ' (set here)' : ''}</td>
        <td><div class="row-actions">
          ${m.capabilities.use === 'chat' && html`<button type="button" class="btn small" aria-label=${(m.hidden ? 'Show ' : 'Hide ') + m.id + ' in the picker'} onClick=${() => setHidden(m, !m.hidden)}>${m.hidden ? 'Show' : 'Hide'}</button>`}
          <button type="button" class="btn small" aria-label=${'Edit ' + m.id} onClick=${() => setEditing(editing === key(m) ? null : key(m))}>Edit</button>
          ${(m.capabilities.use === 'chat' || m.capabilities.use === 'embedding') && html`<button type="button" class="btn small" aria-label=${'Test ' + m.id + ' on ' + m.provider} disabled=${tests[key(m)]?.running} onClick=${() => test(m)}>Test</button>`}
        </div></td>
      </tr>`)}</tbody>
    </table>`}`}
  <//>`;
}

export { get };
