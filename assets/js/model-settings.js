// The conversation's model settings: temperature, max tokens and top p,
// sent with every answer (the server stores them on the conversation and
// checks the same ranges). An empty field means the provider's default.
// A native <dialog>, so focus stays inside and Escape closes it.

import { html, useState, useEffect, useRef } from './lib.js';
import { describeError, openModal } from './ui.js';

/** The three settings: field name on the API, label, hint, parser. */
const FIELDS = [
  {
    key: 'temperature', label: 'Temperature', inputmode: 'decimal', placeholder: 'Default',
    hint: 'From 0 to 2. Lower is more focused, higher more varied.',
    parse: (s) => number(s, 0, 2, false, 'Temperature must be a number from 0 to 2.'),
  },
  {
    key: 'max_tokens', label: 'Max tokens', inputmode: 'numeric', placeholder: 'Default',
    hint: 'The longest answer, in tokens: a whole number from 1 to 1,000,000.',
    parse: (s) => number(s, 1, 1_000_000, true, 'Max tokens must be a whole number from 1 to 1,000,000.'),
  },
  {
    key: 'top_p', label: 'Top p', inputmode: 'decimal', placeholder: 'Default',
    hint: 'From 0 to 1: the share of likely words the model picks from.',
    parse: (s) => number(s, 0, 1, false, 'Top p must be a number from 0 to 1.'),
  },
];

/** {value} (null when blank) or {error}. A comma works as the decimal mark. */
function number(raw, min, max, whole, message) {
  const s = raw.trim().replace(',', '.');
  if (s === '') return { value: null };
  if (!/^[+]?(\d+\.?\d*|\.\d+)$/.test(s)) return { error: message };
  const n = Number(s);
  if (!Number.isFinite(n) || n < min || n > max || (whole && !Number.isInteger(n))) return { error: message };
  return { value: n };
}

const text = (v) => (v === null || v === undefined ? '' : String(v));

/** True when any of the settings is set (not the provider's default). */
export function paramsSet(p) {
  return !!p && FIELDS.some((f) => p[f.key] !== null && p[f.key] !== undefined);
}

/**
 * The dialog. `value`: {temperature, max_tokens, top_p} as stored;
 * `onSave(params)` resolves when saved and rejects with the API's error,
 * which is shown in the dialog.
 */
export function ModelSettingsDialog({ value, onSave, onClose }) {
  const ref = useRef(null);
  const firstRef = useRef(null);
  const [raw, setRaw] = useState(() => Object.fromEntries(FIELDS.map((f) => [f.key, text(value?.[f.key])])));
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [saving, setSaving] = useState(false);

  useEffect(() => {
    if (ref.current) openModal(ref.current, firstRef.current);
  }, []);

  const close = () => {
    if (ref.current?.open) ref.current.close();
    onClose();
  };

  const submit = async (e) => {
    e.preventDefault();
    const out = {};
    const errs = {};
    for (const f of FIELDS) {
      const r = f.parse(raw[f.key]);
      if (r.error) errs[f.key] = r.error;
      else out[f.key] = r.value;
    }
    setErrors(errs);
    setFailure(null);
    const firstBad = FIELDS.find((f) => errs[f.key]);
    if (firstBad) {
      ref.current?.querySelector(`[name=${firstBad.key}]`)?.focus();
      return;
    }
    setSaving(true);
    try {
      await onSave(out);
      close();
    } catch (err) {
      setFailure(describeError(err).text);
    } finally {
      setSaving(false);
    }
  };

  return html`<dialog ref=${ref} class="dialog model-settings" aria-labelledby="ms-title" aria-describedby="ms-intro"
      onCancel=${(e) => { e.preventDefault(); close(); }}
      onClick=${(e) => { if (e.target === ref.current) close(); }}>
    <form class="dialog-body" noValidate onSubmit=${submit}>
      <h2 id="ms-title">Model settings</h2>
      <p class="muted" id="ms-intro">Sent with every answer in this conversation. Leave a field empty to use the provider's default.</p>
      <div class="ms-fields">
        ${FIELDS.map((f, i) => {
          const err = errors[f.key];
          const hintId = `ms-${f.key}-hint`;
          const errId = `ms-${f.key}-err`;
          return html`<div class="field ms-field">
            <label for=${'ms-' + f.key}>${f.label}</label>
            <input id=${'ms-' + f.key} name=${f.key} ref=${i === 0 ? firstRef : null} type="text" inputmode=${f.inputmode}
              autocomplete="off" spellcheck="false" placeholder=${f.placeholder} value=${raw[f.key]}
              aria-invalid=${err ? 'true' : 'false'} aria-describedby=${err ? `${errId} ${hintId}` : hintId}
              onInput=${(e) => setRaw((r) => ({ ...r, [f.key]: e.target.value }))} />
            ${err && html`<span class="error-text ms-error" id=${errId}>${err}</span>`}
            <small class="muted" id=${hintId}>${f.hint}</small>
          </div>`;
        })}
      </div>
      ${failure && html`<p class="error-text" role="alert" data-testid="ms-failure">${failure}</p>`}
      ${Object.keys(errors).length > 0 && html`<p class="sr-only" role="alert">${FIELDS.filter((f) => errors[f.key]).map((f) => errors[f.key]).join(' ')}</p>`}
      <div class="dialog-actions ms-actions">
        <button type="button" class="btn ms-reset" disabled=${saving}
          onClick=${() => { setRaw({ temperature: '', max_tokens: '', top_p: '' }); setErrors({}); firstRef.current?.focus(); }}>Use defaults</button>
        <button type="button" class="btn" onClick=${close}>Cancel</button>
        <button type="submit" class="btn primary" disabled=${saving}>${saving ? 'Saving…' : 'Save'}</button>
      </div>
    </form>
  </dialog>`;
}
