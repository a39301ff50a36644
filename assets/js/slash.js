// The composer's `/` commands: typing `/` at the start of a word opens the
// prompt library (GET /api/prompts) filtered by what follows; arrows move,
// Enter or Tab inserts the chosen prompt's text in place of the command,
// Escape closes. The message box stays focused (aria-activedescendant
// points into the listbox).

import { html, useState, useEffect, useLayoutEffect, useRef } from './lib.js';
import { get } from './api.js';

const TOKEN = /(^|\s)\/([a-z0-9_-]*)$/i;
const STALE_MS = 30000;

/** The `/word` being typed before the caret, or null. */
function commandAt(text, caret) {
  const m = TOKEN.exec(text.slice(0, caret));
  if (!m) return null;
  return { query: m[2].toLowerCase(), start: caret - m[2].length - 1, end: caret };
}

export function useSlashMenu({ text, setText, inputRef }) {
  const [prompts, setPrompts] = useState(null);
  const [loadError, setLoadError] = useState(false);
  // The highlighted option, for the query it was chosen under (a new query
  // starts again at the first).
  const [sel, setSel] = useState({ q: null, i: 0 });
  const [closedAt, setClosedAt] = useState(null); // the text Escape closed the menu on
  const loadedAt = useRef(0);
  // Where the caret goes once the inserted prompt is rendered: placed in the
  // same commit as the new text, so there is no frame (and no window for a
  // keystroke) with the caret elsewhere.
  const caretTo = useRef(null);
  useLayoutEffect(() => {
    const ta = inputRef.current;
    if (caretTo.current === null || !ta || ta.value !== text) return;
    const pos = caretTo.current;
    caretTo.current = null;
    ta.focus();
    ta.setSelectionRange(pos, pos);
  });
  const caret = inputRef.current ? inputRef.current.selectionStart ?? text.length : text.length;
  const cmd = closedAt === text ? null : commandAt(text, caret);

  useEffect(() => {
    if (!cmd || Date.now() - loadedAt.current < STALE_MS) return;
    loadedAt.current = Date.now();
    get('/prompts').then((r) => { setPrompts(r.items); setLoadError(false); }).catch(() => { setLoadError(true); loadedAt.current = 0; });
  }, [!!cmd]); // eslint-disable-line

  const seen = new Set();
  const matches = cmd && prompts
    ? prompts.filter((p) => {
      // The user's own prompt hides a shared one with the same command.
      if (seen.has(p.command)) return false;
      seen.add(p.command);
      return p.command.startsWith(cmd.query) || p.title.toLowerCase().includes(cmd.query);
    }).slice(0, 8)
    : [];
  const open = !!cmd;
  const index = sel.q === cmd?.query ? Math.min(sel.i, Math.max(0, matches.length - 1)) : 0;
  const setActive = (i) => setSel({ q: cmd?.query, i });

  const choose = (p) => {
    const ta = inputRef.current;
    const at = commandAt(text, ta ? ta.selectionStart ?? text.length : text.length);
    if (!at) return;
    const next = text.slice(0, at.start) + p.text + text.slice(at.end);
    caretTo.current = at.start + p.text.length;
    setText(next);
  };

  /** Handles the menu's keys; true when the event was for the menu. */
  const onKeyDown = (e) => {
    if (!open) return false;
    if (e.key === 'Escape') {
      e.preventDefault();
      setClosedAt(text);
      return true;
    }
    if (matches.length === 0) return false;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const d = e.key === 'ArrowDown' ? 1 : -1;
      setActive((index + d + matches.length) % matches.length);
      return true;
    }
    if ((e.key === 'Enter' && !e.shiftKey && !e.isComposing) || e.key === 'Tab') {
      e.preventDefault();
      choose(matches[index]);
      return true;
    }
    return false;
  };

  const optionId = (i) => 'slash-opt-' + i;
  const inputProps = {
    'aria-controls': open ? 'slash-menu' : undefined,
    'aria-autocomplete': 'list',
    'aria-activedescendant': open && matches.length ? optionId(index) : undefined,
  };
  const status = !open ? '' : loadError ? 'The saved prompts could not be loaded.'
    : prompts === null ? 'Loading saved prompts…'
      : matches.length === 0 ? (prompts.length === 0 ? 'No saved prompts yet.' : `No saved prompt matches /${cmd.query}.`)
        : `${matches.length} saved ${matches.length === 1 ? 'prompt' : 'prompts'}: arrows to move, Enter to insert, Escape to close.`;

  const menu = open && html`<div class="slash-menu" data-testid="slash-menu">
    ${matches.length > 0 && html`<ul id="slash-menu" role="listbox" aria-label="Saved prompts">
      ${matches.map((p, i) => html`<li id=${optionId(i)} key=${p.id} role="option" aria-selected=${i === index ? 'true' : 'false'}
          class=${'slash-item' + (i === index ? ' active' : '')}
          onMouseDown=${(e) => { e.preventDefault(); choose(p); }} onMouseMove=${() => i !== index && setActive(i)}>
        <span class="slash-cmd">/${p.command}</span>
        <span class="slash-title">${p.title}${p.shared && html` <span class="badge">Shared</span>`}</span>
        <span class="slash-text small">${p.text.slice(0, 90)}</span>
      </li>`)}
    </ul>`}
    ${matches.length === 0 && html`<p class="slash-empty muted small">${status}${prompts && prompts.length === 0 ? html` Add some in <a href="/settings#prompts">Settings → Prompts</a>.` : ''}</p>`}
  </div>`;
  return { open, onKeyDown, inputProps, menu, status };
}
