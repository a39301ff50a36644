// Shared pieces: icons, dialogs (native <dialog>, so focus is trapped and
// restored), toasts, the error banner, copy to clipboard, formatting.

import { html, useState, useEffect, useLayoutEffect, useRef } from './lib.js';
import { describeError } from './words.js';
import { useBranding } from './branding.js';

export { describeError, plainTitle } from './words.js';

// ---- icons (inline SVG, decorative: the control carries the label) -----------

const paths = {
  plus: 'M12 5v14M5 12h14',
  book: 'M4 5a2 2 0 0 1 2-2h13v16H6a2 2 0 0 0-2 2V5zM4 21a2 2 0 0 1 2-2h13M8 7h7',
  file: 'M14 3H6v18h12V7l-4-4zM14 3v4h4M9 13h6M9 17h6',
  menu: 'M4 6h16M4 12h16M4 18h16',
  close: 'M6 6l12 12M18 6L6 18',
  send: 'M5 12h14M13 6l6 6-6 6',
  stop: 'M7 7h10v10H7z',
  copy: 'M9 9h10v10H9zM5 15V5h10',
  check: 'M5 13l4 4L19 7',
  refresh: 'M20 11a8 8 0 1 0-2.3 5.7M20 5v6h-6',
  edit: 'M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4',
  more: 'M5 12h.01M12 12h.01M19 12h.01',
  search: 'M11 18a7 7 0 1 1 0-14 7 7 0 0 1 0 14zM20 20l-4-4',
  settings: 'M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z',
  shield: 'M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6l8-3z',
  logout: 'M15 4h4v16h-4M10 8l-4 4 4 4M6 12h11',
  pin: 'M9 4h6l-1 6 3 3H7l3-3-1-6zM12 13v7',
  archive: 'M4 5h16v4H4zM6 9v10h12V9M10 13h4',
  trash: 'M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3',
  left: 'M15 6l-6 6 6 6',
  right: 'M9 6l6 6-6 6',
  sun: 'M12 17a5 5 0 1 0 0-10 5 5 0 0 0 0 10zM12 1v2M12 21v2M4.2 4.2l1.4 1.4M18.4 18.4l1.4 1.4M1 12h2M21 12h2M4.2 19.8l1.4-1.4M18.4 5.6l1.4-1.4',
  moon: 'M21 12.8A9 9 0 1 1 11.2 3a7 7 0 0 0 9.8 9.8z',
  gauge: 'M4.9 18.5a9 9 0 1 1 14.2 0M12 13l4-5M12 14a1 1 0 1 0 0-2 1 1 0 0 0 0 2z',
  sliders: 'M4 6h10M18 6h2M4 12h4M12 12h8M4 18h12M20 18h0M14 4v4M8 10v4M16 16v4',
  chevronDown: 'M6 9l6 6 6-6',
  arrowDown: 'M12 5v14M6 13l6 6 6-6',
  link: 'M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1',
  chat: 'M21 12a8 8 0 0 1-11.7 7.1L4 20.5l1.4-4.9A8 8 0 1 1 21 12z',
  eye: 'M2 12s3.5-7 10-7 10 7 10 7-3.5 7-10 7S2 12 2 12zM12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6z',
  tool: 'M14.7 6.3a1 1 0 0 0 0 1.4l1.6 1.6a1 1 0 0 0 1.4 0l3.8-3.8a6 6 0 0 1-7.9 7.9l-6.9 6.9a2.1 2.1 0 0 1-3-3l6.9-6.9a6 6 0 0 1 7.9-7.9l-3.8 3.8z',
  clock: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 7v5l3 2',
  paperclip: 'M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9',
  file: 'M14 3H6v18h12V7l-4-4zM14 3v4h4',
  alert: 'M12 9v4M12 17h.01M10.3 3.9L1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z',
};

export function Icon({ name, size = 18, class: cls = '' }) {
  return html`<svg class=${'icon ' + cls} width=${size} height=${size} viewBox="0 0 24 24" fill="none"
    stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"
    aria-hidden="true" focusable="false"><path d=${paths[name] || ''} /></svg>`;
}

export function Logo({ size = 28 }) {
  const b = useBranding();
  if (b.logo_url) return html`<img class="logo" src=${b.logo_url} width=${size} height=${size} alt="" data-testid="brand-logo" />`;
  return html`<svg class="logo" width=${size} height=${size} viewBox="0 0 64 64" aria-hidden="true" focusable="false">
    <rect width="64" height="64" rx="16" fill="var(--accent)" />
    <path d="M18 22a6 6 0 0 1 6-6h16a6 6 0 0 1 6 6v12a6 6 0 0 1-6 6H30l-8 7v-7h0a4 4 0 0 1-4-4z" fill="#fff" />
    <circle cx="26" cy="28" r="2.6" fill="var(--accent)" /><circle cx="32" cy="28" r="2.6" fill="var(--accent)" /><circle cx="38" cy="28" r="2.6" fill="var(--accent)" />
  </svg>`;
}

// ---- clipboard -------------------------------------------------------------------

export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.style.position = 'fixed';
  ta.style.opacity = '0';
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

// ---- toasts ------------------------------------------------------------------------

const toastListeners = new Set();
let toastSeq = 0;
export function toast(text, kind = 'info') {
  const t = { id: ++toastSeq, text, kind };
  for (const fn of toastListeners) fn(t);
}

export function Toasts() {
  const [items, setItems] = useState([]);
  useEffect(() => {
    const fn = (t) => {
      setItems((xs) => [...xs, t]);
      setTimeout(() => setItems((xs) => xs.filter((x) => x.id !== t.id)), 2600);
    };
    toastListeners.add(fn);
    return () => toastListeners.delete(fn);
  }, []);
  return html`<div class="toasts" role="status" aria-live="polite">
    ${items.map((t) => html`<div key=${t.id} class=${'toast ' + t.kind}>${t.text}</div>`)}
  </div>`;
}

// ---- dialogs -----------------------------------------------------------------------

let openDialog = null;

/**
 * Opens a native <dialog> as a modal and focuses `target` (else its
 * [data-autofocus] element) at once, in the same task. Focus moved a frame
 * later would be taken from a field the person had already clicked into and
 * started typing in: their first keys would land in the wrong field.
 */
export function openModal(el, target) {
  if (!el.open) el.showModal();
  (target || el.querySelector('[data-autofocus]'))?.focus();
}

/** Focus back to `el` (the opener) when a dialog closes, if it is still there. */
function focusBack(el) {
  if (el && el.isConnected) el.focus?.();
}

/**
 * Shows a modal and resolves with the result:
 *   confirmDialog({title, body, confirm: 'Delete', danger: true}) → true | false
 *   promptDialog({title, label, value, multiline}) → string | null
 */
export function confirmDialog(opts) {
  return new Promise((resolve) => openDialog?.({ kind: 'confirm', ...opts, resolve }));
}
export function promptDialog(opts) {
  return new Promise((resolve) => openDialog?.({ kind: 'prompt', ...opts, resolve }));
}

export function DialogHost() {
  const [d, setD] = useState(null);
  const ref = useRef(null);
  const inputRef = useRef(null);
  const [value, setValue] = useState('');
  const returnFocus = useRef(null);

  useEffect(() => {
    openDialog = (opts) => {
      returnFocus.current = document.activeElement;
      setValue(opts.value ?? '');
      setD(opts);
    };
    return () => { openDialog = null; };
  }, []);

  useEffect(() => {
    const el = ref.current;
    if (!d || !el) return;
    openModal(el, inputRef.current);
    inputRef.current?.select?.();
  }, [d]);

  const finish = (result) => {
    const cur = d;
    ref.current?.open && ref.current.close();
    setD(null);
    // Before the caller hears the result: what it does next (open another
    // dialog, focus a field) then has the last word on the focus.
    focusBack(returnFocus.current);
    cur?.resolve(result);
  };

  if (!d) return html`<dialog ref=${ref} class="dialog" aria-label="Dialog"></dialog>`;
  const cancelValue = d.kind === 'prompt' ? null : false;
  const submit = (e) => {
    e.preventDefault();
    finish(d.kind === 'prompt' ? value : true);
  };
  const titleId = 'dlg-title';
  return html`<dialog ref=${ref} class="dialog" aria-labelledby=${titleId}
      onCancel=${(e) => { e.preventDefault(); finish(cancelValue); }}
      onClick=${(e) => { if (e.target === ref.current) finish(cancelValue); }}>
    <form class="dialog-body" onSubmit=${submit}>
      <h2 id=${titleId}>${d.title}</h2>
      ${d.body && html`<p class="muted">${d.body}</p>`}
      ${d.kind === 'prompt' && (d.multiline
        ? html`<label class="field"><span>${d.label}</span><textarea ref=${inputRef} rows="8" value=${value}
            placeholder=${d.placeholder || ''} onInput=${(e) => setValue(e.target.value)}></textarea></label>`
        : html`<label class="field"><span>${d.label}</span><input ref=${inputRef} type=${d.type || 'text'} value=${value}
            required=${!!d.required} minlength=${d.minlength} maxlength=${d.maxlength} autocomplete=${d.autocomplete || 'off'}
            onInput=${(e) => setValue(e.target.value)} /></label>`)}
      <div class="dialog-actions">
        <button type="button" class="btn" onClick=${() => finish(cancelValue)}>${d.cancel || 'Cancel'}</button>
        <button type="submit" class=${'btn ' + (d.danger ? 'danger' : 'primary')} data-autofocus>${d.confirm || 'OK'}</button>
      </div>
    </form>
  </dialog>`;
}

// ---- errors ------------------------------------------------------------------------

/**
 * An error as a sentence that says what to do; the code, the server's own
 * words and the request id only under "Details" (for a bug report). Retry
 * shows only when trying again can succeed.
 */
export function ErrorBanner({ error, onRetry, onDismiss, compact = false, overrides }) {
  if (!error) return null;
  const d = describeError(error, overrides);
  return html`<div class=${'banner error' + (compact ? ' compact' : '')} role="alert">
    <${Icon} name="alert" />
    <div class="banner-text">
      <span class="error-sentence">${d.text}</span>
      <${ErrorDetails} error=${error} />
    </div>
    <div class="banner-actions">
      ${onRetry && d.retry && html`<button type="button" class="btn small" onClick=${onRetry}>Retry</button>`}
      ${onDismiss && html`<button type="button" class="icon-btn" aria-label="Dismiss error" onClick=${onDismiss}><${Icon} name="close" size=${16} /></button>`}
    </div>
  </div>`;
}

/** The technical side of an error, folded away. */
export function ErrorDetails({ error }) {
  // Client-side checks (`local`) have nothing technical to add.
  if (error?.local || (!error?.code && !error?.request_id)) return null;
  return html`<details class="error-details small">
    <summary>Details</summary>
    <div>${error.code && html`<code>${error.code}</code>`}${error.message ? ' ' + error.message : ''}</div>
    ${error.request_id && html`<div>Request id: <code>${error.request_id}</code></div>`}
  </details>`;
}

// ---- formatting ----------------------------------------------------------------------

const rtf = typeof Intl !== 'undefined' && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }) : null;

export function timeAgo(iso) {
  if (!iso) return '—';
  const t = new Date(iso).getTime();
  if (!Number.isFinite(t)) return '—';
  const s = Math.round((t - Date.now()) / 1000);
  const a = Math.abs(s);
  if (!rtf) return new Date(iso).toLocaleString();
  if (a < 45) return rtf.format(Math.round(s), 'second');
  if (a < 2700) return rtf.format(Math.round(s / 60), 'minute');
  if (a < 64800) return rtf.format(Math.round(s / 3600), 'hour');
  if (a < 30 * 86400) return rtf.format(Math.round(s / 86400), 'day');
  return new Date(iso).toLocaleDateString();
}

export function dateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isFinite(d.getTime()) ? d.toLocaleString() : '—';
}

export function Spinner({ label = 'Loading' }) {
  return html`<span class="spinner" role="status" aria-label=${label}></span>`;
}

/** A button that copies `text` and says so. */
export function CopyButton({ text, label = 'Copy', class: cls = 'btn small', children }) {
  const [done, setDone] = useState(false);
  return html`<button type="button" class=${cls} aria-label=${label}
      onClick=${async () => {
        const ok = await copyText(typeof text === 'function' ? text() : text);
        setDone(ok);
        toast(ok ? 'Copied to clipboard' : 'Copy failed', ok ? 'info' : 'error');
        setTimeout(() => setDone(false), 1500);
      }}>
    <${Icon} name=${done ? 'check' : 'copy'} size=${16} />${children}
  </button>`;
}

/** A native <dialog> that opens when mounted and gives focus back when it closes. */
export function useModal(onClose) {
  const ref = useRef(null);
  const back = useRef(null);
  useEffect(() => {
    back.current = document.activeElement;
    if (ref.current) openModal(ref.current);
  }, []);
  const close = () => {
    if (ref.current?.open) ref.current.close();
    focusBack(back.current);
    onClose();
  };
  return [ref, close];
}

/**
 * A button that turns into a rename field while `editing`: the field takes
 * the focus, with its text selected, and the button gets it back when the
 * returned `done()` ended the editing. Both in the render that swaps them,
 * not a frame later: keys typed in between would go to the wrong one.
 */
export function useRenameFocus(editing, inputRef, btnRef) {
  const back = useRef(false);
  useLayoutEffect(() => {
    if (editing) {
      inputRef.current?.focus();
      inputRef.current?.select();
    } else if (back.current) {
      back.current = false;
      btnRef.current?.focus();
    }
  }, [editing]); // eslint-disable-line
  return () => { back.current = true; };
}
