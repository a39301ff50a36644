// Settings → Custom instructions, Presets and Prompts: the caller's own
// (and, for admins, the shared ones). The rules are the server's
// (src/presets.rs); its error messages are shown as they come.

import { html, useState, useEffect } from './lib.js';
import { get, post, put, del } from './api.js';
import { useApp } from './state.js';
import { Card, useList } from './settings.js';
import { describeError, ErrorBanner, confirmDialog, toast } from './ui.js';

export function CustomInstructionsCard() {
  const [text, setText] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    get('/settings').then((s) => setText(s.custom_instructions || '')).catch((e) => { setError(e); setText(''); });
  }, []);
  const save = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const s = await put('/settings', { custom_instructions: text.trim() ? text : null });
      setText(s.custom_instructions || '');
      toast(s.custom_instructions ? 'Custom instructions saved' : 'Custom instructions removed');
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Card} id="instructions" title="Custom instructions"
      description="Added to every chat of yours, after the chat's own system prompt (or its preset's). For example what you do, or how you like answers.">
    <form class="stack" onSubmit=${save}>
      <${ErrorBanner} error=${error} compact />
      <label class="field"><span>Instructions</span>
        <textarea rows="4" maxlength="4000" value=${text ?? ''} disabled=${text === null} data-testid="custom-instructions"
          placeholder="I am a data engineer; answer briefly and use metric units."
          onInput=${(e) => setText(e.target.value)}></textarea></label>
      <div><button type="submit" class="btn primary" disabled=${busy || text === null}>Save instructions</button></div>
    </form>
  <//>`;
}

const EMPTY_PRESET = { name: '', description: '', model: '', system_prompt: '', temperature: '', max_tokens: '', top_p: '', shared: false };

function num(v) {
  return v === '' || v === null || v === undefined ? undefined : Number(v);
}

function PresetForm({ initial, models, isAdmin, onSaved, onCancel }) {
  const [v, setV] = useState(() => ({ ...EMPTY_PRESET, ...Object.fromEntries(Object.entries(initial || {}).map(([k, x]) => [k, x ?? ''])) }));
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const bind = (k) => ({ value: v[k], onInput: (e) => setV((s) => ({ ...s, [k]: e.target.value })) });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body = {
      name: v.name, description: v.description || undefined, model: v.model || undefined,
      system_prompt: v.system_prompt || undefined, temperature: num(v.temperature), max_tokens: num(v.max_tokens),
      top_p: num(v.top_p), shared: !!v.shared,
    };
    try {
      const p = initial?.id ? await put('/presets/' + initial.id, body) : await post('/presets', body);
      onSaved(p);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  const idp = initial?.id ? 'pe-' + initial.id : 'pe-new';
  return html`<form class="stack library-form" onSubmit=${submit} aria-label=${initial?.id ? 'Edit preset ' + initial.name : 'New preset'}>
    <${ErrorBanner} error=${error} compact />
    <div class="row-form">
      <label class="field grow"><span>Name</span><input required maxlength="80" ...${bind('name')} placeholder="e.g. Code reviewer" /></label>
      <label class="field grow"><span>Model</span>
        <select ...${bind('model')} onChange=${(e) => setV((s) => ({ ...s, model: e.target.value }))}>
          <option value="">Server default</option>
          ${v.model && !models.includes(v.model) && html`<option value=${v.model}>${v.model} (not offered now)</option>`}
          ${models.map((m) => html`<option value=${m}>${m}</option>`)}
        </select></label>
    </div>
    <label class="field"><span>Description</span><input maxlength="500" ...${bind('description')} placeholder="What it is for (shown when starting a chat)" /></label>
    <label class="field"><span>System prompt</span><textarea rows="4" maxlength="20000" ...${bind('system_prompt')} placeholder="You are a careful code reviewer…"></textarea></label>
    <div class="row-form">
      <label class="field" for=${idp + '-t'}><span>Temperature (0–2)</span><input id=${idp + '-t'} type="number" min="0" max="2" step="0.05" inputmode="decimal" ...${bind('temperature')} placeholder="default" /></label>
      <label class="field"><span>Max tokens</span><input type="number" min="1" max="1000000" step="1" inputmode="numeric" ...${bind('max_tokens')} placeholder="default" /></label>
      <label class="field"><span>Top p (0–1)</span><input type="number" min="0" max="1" step="0.05" inputmode="decimal" ...${bind('top_p')} placeholder="default" /></label>
    </div>
    ${isAdmin && html`<label class="check"><input type="checkbox" checked=${!!v.shared} onChange=${(e) => setV((s) => ({ ...s, shared: e.target.checked }))} />Share with everyone on this server</label>`}
    <div class="form-actions">
      <button type="submit" class="btn primary" disabled=${busy}>${initial?.id ? 'Save preset' : 'Create preset'}</button>
      <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

function Badge({ shared }) {
  return shared ? html`<span class="badge">Shared</span>` : null;
}

export function PresetsCard() {
  const { me } = useApp();
  const { data, error, load } = useList('/presets');
  const [models, setModels] = useState([]);
  const [editing, setEditing] = useState(null); // 'new' or a preset
  useEffect(() => { get('/models').then((r) => setModels([...new Set(r.items.map((m) => m.id))])).catch(() => {}); }, []);
  const remove = async (p) => {
    if (!await confirmDialog({ title: `Delete the preset “${p.name}”?`, body: p.shared ? 'It is shared: it disappears for everyone. Chats started with it keep their model and system prompt.' : 'Chats started with it keep their model and system prompt.', confirm: 'Delete preset', danger: true })) return;
    try { await del('/presets/' + p.id); toast('Preset deleted'); load(); } catch (err) { toast(describeError(err).text, 'error'); }
  };
  const saved = (p) => { toast(`Preset “${p.name}” saved`); setEditing(null); load(); };
  return html`<${Card} id="presets" title="Presets"
      description="A model, a system prompt and settings under a name. Pick one on the new-chat screen."
      actions=${editing !== 'new' && html`<button type="button" class="btn small" onClick=${() => setEditing('new')}>New preset</button>`}>
    <${ErrorBanner} error=${error} compact />
    ${editing === 'new' && html`<${PresetForm} models=${models} isAdmin=${me.role === 'admin'} onSaved=${saved} onCancel=${() => setEditing(null)} />`}
    ${data && (data.items.length === 0
      ? html`<p class="muted small">No presets yet.</p>`
      : html`<ul class="rows" data-testid="preset-list">${data.items.map((p) => html`<li class="row" key=${p.id}>
          ${editing?.id === p.id
            ? html`<div class="row-main"><${PresetForm} initial=${p} models=${models} isAdmin=${me.role === 'admin'} onSaved=${saved} onCancel=${() => setEditing(null)} /></div>`
            : html`<div class="row-main"><strong>${p.name}</strong> <${Badge} shared=${p.shared} />
                <div class="muted small">${[p.model || 'server default model', p.system_prompt ? 'system prompt' : null, p.temperature != null ? 'temperature ' + p.temperature : null, p.max_tokens != null ? 'max ' + p.max_tokens + ' tokens' : null, p.top_p != null ? 'top p ' + p.top_p : null].filter(Boolean).join(' · ')}</div>
                ${p.description && html`<div class="small">${p.description}</div>`}</div>
              ${p.editable && html`<div class="row-actions">
                <button type="button" class="btn small" aria-label=${'Edit preset ' + p.name} onClick=${() => setEditing(p)}>Edit</button>
                <button type="button" class="btn small danger-outline" aria-label=${'Delete preset ' + p.name} onClick=${() => remove(p)}>Delete</button></div>`}`}
        </li>`)}</ul>`)}
  <//>`;
}

function PromptForm({ initial, isAdmin, onSaved, onCancel }) {
  const [v, setV] = useState(() => ({ title: '', command: '', text: '', shared: false, ...(initial || {}) }));
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const bind = (k) => ({ value: v[k], onInput: (e) => setV((s) => ({ ...s, [k]: e.target.value })) });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body = { title: v.title, command: v.command, text: v.text, shared: !!v.shared };
    try {
      const p = initial?.id ? await put('/prompts/' + initial.id, body) : await post('/prompts', body);
      onSaved(p);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<form class="stack library-form" onSubmit=${submit} aria-label=${initial?.id ? 'Edit prompt /' + initial.command : 'New prompt'}>
    <${ErrorBanner} error=${error} compact />
    <div class="row-form">
      <label class="field grow"><span>Title</span><input required maxlength="80" ...${bind('title')} placeholder="e.g. Summarize" /></label>
      <label class="field grow"><span>Command</span><input required maxlength="33" pattern="/?[A-Za-z0-9][A-Za-z0-9_\\-]*" autocapitalize="off" spellcheck="false"
        ...${bind('command')} placeholder="summarize" aria-describedby="cmd-hint" />
        <small id="cmd-hint" class="muted">Type /command in the message box. Letters, digits, - and _.</small></label>
    </div>
    <label class="field"><span>Text</span><textarea rows="4" required maxlength="20000" ...${bind('text')} placeholder="Summarize the following in three bullet points:"></textarea></label>
    ${isAdmin && html`<label class="check"><input type="checkbox" checked=${!!v.shared} onChange=${(e) => setV((s) => ({ ...s, shared: e.target.checked }))} />Share with everyone on this server</label>`}
    <div class="form-actions">
      <button type="submit" class="btn primary" disabled=${busy}>${initial?.id ? 'Save prompt' : 'Create prompt'}</button>
      <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

export function PromptsCard() {
  const { me } = useApp();
  const { data, error, load } = useList('/prompts');
  const [editing, setEditing] = useState(null);
  const remove = async (p) => {
    if (!await confirmDialog({ title: `Delete the prompt /${p.command}?`, body: p.shared ? 'It is shared: it disappears for everyone.' : 'This cannot be undone.', confirm: 'Delete prompt', danger: true })) return;
    try { await del('/prompts/' + p.id); toast('Prompt deleted'); load(); } catch (err) { toast(describeError(err).text, 'error'); }
  };
  const saved = (p) => { toast(`Prompt /${p.command} saved`); setEditing(null); load(); };
  return html`<${Card} id="prompts" title="Prompts"
      description="Text you use often. Type / in the message box to pick one."
      actions=${editing !== 'new' && html`<button type="button" class="btn small" onClick=${() => setEditing('new')}>New prompt</button>`}>
    <${ErrorBanner} error=${error} compact />
    ${editing === 'new' && html`<${PromptForm} isAdmin=${me.role === 'admin'} onSaved=${saved} onCancel=${() => setEditing(null)} />`}
    ${data && (data.items.length === 0
      ? html`<p class="muted small">No prompts yet.</p>`
      : html`<ul class="rows" data-testid="prompt-list">${data.items.map((p) => html`<li class="row" key=${p.id}>
          ${editing?.id === p.id
            ? html`<div class="row-main"><${PromptForm} initial=${p} isAdmin=${me.role === 'admin'} onSaved=${saved} onCancel=${() => setEditing(null)} /></div>`
            : html`<div class="row-main"><code>/${p.command}</code> <strong>${p.title}</strong> <${Badge} shared=${p.shared} />
                <div class="muted small clamp">${p.text}</div></div>
              ${p.editable && html`<div class="row-actions">
                <button type="button" class="btn small" aria-label=${'Edit prompt /' + p.command} onClick=${() => setEditing(p)}>Edit</button>
                <button type="button" class="btn small danger-outline" aria-label=${'Delete prompt /' + p.command} onClick=${() => remove(p)}>Delete</button></div>`}`}
        </li>`)}</ul>`)}
  <//>`;
}
