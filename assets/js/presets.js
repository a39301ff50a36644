// Presets on the new-chat screen: pick one to start the chat with its
// model, system prompt and sampling settings (sent as preset_id with the
// first message). Managed in Settings → Presets (settings-library.js).

import { html, useState, useEffect } from './lib.js';
import { get } from './api.js';

/** The caller's presets and the shared ones; null while loading. */
export function usePresets() {
  const [items, setItems] = useState(null);
  useEffect(() => {
    let live = true;
    get('/presets').then((r) => { if (live) setItems(r.items); }).catch(() => { if (live) setItems([]); });
    return () => { live = false; };
  }, []);
  return items;
}

function summary(p) {
  const parts = [];
  if (p.model) parts.push(p.model);
  if (p.temperature != null) parts.push(`temperature ${p.temperature}`);
  if (p.max_tokens != null) parts.push(`max ${p.max_tokens} tokens`);
  if (p.shared) parts.push('shared');
  return parts.join(' · ');
}

/**
 * A radio group of presets ("None" first). `value` is a preset id or '';
 * `onChange(preset|null)`.
 */
export function PresetPicker({ presets, value, onChange }) {
  if (!presets || presets.length === 0) {
    return html`<p class="muted small preset-empty">Start chats the same way each time with a <a href="/settings#presets">preset</a>.</p>`;
  }
  const option = (p) => {
    const id = p ? p.id : '';
    const on = value === id;
    return html`<label class=${'preset-option' + (on ? ' on' : '')} key=${id || 'none'}>
      <input type="radio" name="preset" value=${id} checked=${on} onChange=${() => onChange(p)} />
      <span class="preset-name">${p ? p.name : 'No preset'}</span>
      <span class="preset-desc small">${p ? (p.description || summary(p) || 'Default settings') : 'Start plainly'}</span>
    </label>`;
  };
  return html`<fieldset class="preset-picker" data-testid="preset-picker">
    <legend>Start with a preset</legend>
    <div class="preset-options">${option(null)}${presets.map(option)}</div>
  </fieldset>`;
}
