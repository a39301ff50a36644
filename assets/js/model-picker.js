// The chat's model picker: a button that opens a searchable list (the
// ARIA combobox + listbox pattern). Type to filter by name, id or provider;
// arrows, Home/End, Enter to pick, Escape to close. Models served by more
// than one provider carry the provider's name; icons say what a model can
// do (reads images, calls tools); models of an unreachable or cooling-down
// provider are marked and cannot be picked. The server sends only chat
// models that are not hidden (`/api/models?use=chat`).

import { html, useState, useEffect, useRef } from './lib.js';
import { Icon } from './ui.js';

let seq = 0;

/** Why a model cannot be picked now, or null. */
export function unavailable(m, down) {
  if (m.cooling_down) return 'cooling down';
  if (m.reachable === false || down.has(m.provider)) return 'unreachable';
  return null;
}

function matches(m, q) {
  if (!q) return true;
  const hay = `${m.label || m.display_name} ${m.id} ${m.provider}`.toLowerCase();
  return q.toLowerCase().split(/\s+/).filter(Boolean).every((w) => hay.includes(w));
}

function Caps({ m }) {
  return html`<span class="model-caps">
    ${m.vision && html`<span class="cap" title="Reads images"><${Icon} name="eye" size=${14} /><span class="sr-only">, reads images</span></span>`}
    ${m.tools && html`<span class="cap" title="Calls tools"><${Icon} name="tool" size=${14} /><span class="sr-only">, calls tools</span></span>`}
  </span>`;
}

export function ModelPicker({ models, model, down, disabled, onOpen, onChange }) {
  const [open, setOpen] = useState(false);
  const [q, setQ] = useState('');
  const [active, setActive] = useState(-1);
  const ids = useRef(null);
  if (!ids.current) { seq += 1; ids.current = `mp${seq}`; }
  const base = ids.current;
  const btnRef = useRef(null);
  const inputRef = useRef(null);
  const rootRef = useRef(null);
  const listRef = useRef(null);

  const items = models.items;
  const current = items.find((m) => m.id === model);
  const shown = items.filter((m) => matches(m, q));
  const enabled = (i) => i >= 0 && i < shown.length && !unavailable(shown[i], down);

  const close = (focus = true) => {
    setOpen(false);
    setQ('');
    // Before the list (and the focused search box) goes away.
    if (focus) btnRef.current?.focus();
  };
  const openList = () => {
    if (disabled) return;
    onOpen?.();
    setQ('');
    setOpen(true);
  };
  // On open, the current model is the active option.
  useEffect(() => {
    if (!open) return;
    const i = items.findIndex((m) => m.id === model);
    setActive(i >= 0 && !unavailable(items[i], down) ? i : items.findIndex((m) => !unavailable(m, down)));
    // At once: a frame later it could take keys already typed elsewhere.
    inputRef.current?.focus();
  }, [open]); // eslint-disable-line
  // Typing: the first pickable match becomes active (at once, so a key
  // pressed right after typing acts on the new list).
  const search = (v) => {
    setQ(v);
    setActive(items.filter((m) => matches(m, v)).findIndex((m) => !unavailable(m, down)));
  };
  useEffect(() => {
    if (!open) return undefined;
    const onDown = (e) => { if (!rootRef.current?.contains(e.target)) close(false); };
    document.addEventListener('mousedown', onDown);
    return () => document.removeEventListener('mousedown', onDown);
  }, [open]); // eslint-disable-line
  useEffect(() => {
    if (open && active >= 0) document.getElementById(`${base}-o${active}`)?.scrollIntoView({ block: 'nearest' });
  }, [active, open, base]);

  const choose = (m) => {
    if (unavailable(m, down)) return;
    close();
    if (m.id !== model) onChange(m.id);
  };
  const step = (from, dir) => {
    for (let i = from + dir; i >= 0 && i < shown.length; i += dir) if (enabled(i)) return i;
    return from;
  };
  const onKey = (e) => {
    if (e.key === 'ArrowDown') { e.preventDefault(); setActive((a) => step(a, 1)); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); setActive((a) => step(a, -1)); }
    else if (e.key === 'Home' && e.ctrlKey) { e.preventDefault(); setActive(step(-1, 1)); }
    else if (e.key === 'End' && e.ctrlKey) { e.preventDefault(); setActive(step(shown.length, -1)); }
    else if (e.key === 'Enter') { e.preventDefault(); if (enabled(active)) choose(shown[active]); }
    else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); close(); }
    else if (e.key === 'Tab') { close(false); }
  };
  const why = current && unavailable(current, down);
  const label = current ? (current.label || current.display_name || current.id) : (items.length ? 'Choose a model' : 'No models available');

  return html`<div class="model-picker" ref=${rootRef}
    onKeyDown=${(e) => { if (open && e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); close(); } }}>
    <span class="sr-only" id=${`${base}-l`}>Model</span>
    <button type="button" ref=${btnRef} class=${'model-btn' + (why ? ' down' : '')} aria-haspopup="listbox" aria-expanded=${open ? 'true' : 'false'}
      aria-labelledby=${`${base}-l ${base}-v`} disabled=${disabled || items.length === 0}
      onClick=${() => (open ? close() : openList())}
      onKeyDown=${(e) => { if (e.key === 'ArrowDown' || e.key === 'ArrowUp') { e.preventDefault(); openList(); } }}>
      <span class="model-value" id=${`${base}-v`}>${label}${why ? ` (${why})` : ''}</span>
      <${Icon} name="chevronDown" size=${14} />
    </button>
    ${open && html`<div class="model-pop" role="dialog" aria-label="Choose a model">
      <div class="model-search">
        <${Icon} name="search" size=${15} />
        <input ref=${inputRef} type="text" role="combobox" aria-label="Search models" placeholder="Search models"
          aria-expanded="true" aria-controls=${`${base}-list`} aria-autocomplete="list"
          aria-activedescendant=${active >= 0 && shown[active] ? `${base}-o${active}` : undefined}
          autocomplete="off" spellcheck="false" value=${q} onInput=${(e) => search(e.target.value)} onKeyDown=${onKey} />
      </div>
      <ul role="listbox" id=${`${base}-list`} ref=${listRef} class="model-list" aria-label="Models"
        onMouseDown=${(e) => e.preventDefault() /* focus stays in the search box */}>
        ${shown.map((m, i) => {
          const off = unavailable(m, down);
          // A model served twice is one model (chats fail over between its
          // providers): its first entry carries the selection.
          const selected = m.id === model && shown.findIndex((x) => x.id === model) === i;
          const dup = (m.providers || []).length > 1;
          return html`<li role="option" id=${`${base}-o${i}`} key=${m.provider + '/' + m.id} data-model=${m.id} data-provider=${m.provider}
              aria-selected=${selected ? 'true' : 'false'} aria-disabled=${off ? 'true' : undefined}
              class=${'model-opt' + (i === active ? ' active' : '') + (off ? ' off' : '')}
              onMouseMove=${() => { if (!off && i !== active) setActive(i); }}
              onClick=${() => choose(m)}>
            <span class="model-name">
              <span class="model-title">${m.display_name || m.id}</span>
              ${dup && html`<span class="model-provider">${m.provider}</span>`}
              ${m.display_name && m.display_name !== m.id && html`<span class="model-id">${m.id}</span>`}
            </span>
            <${Caps} m=${m} />
            ${off && html`<span class="badge warn">${off}</span>`}
            ${selected && html`<${Icon} name="check" size=${15} class="model-check" />`}
          </li>`;
        })}
        ${shown.length === 0 && html`<li class="model-empty" role="presentation">No model matches “${q}”.</li>`}
      </ul>
    </div>`}
  </div>`;
}
