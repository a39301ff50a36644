// The message thread: the loaded window of the shown branch (older pages are
// fetched as the reader scrolls up), rendered in content-visibility chunks,
// markdown cached per message, the streaming answer re-rendered on its own;
// per-message actions, branch arrows, and the composer.

import { html, Component, useState, useEffect, useLayoutEffect, useRef, useCallback, useMemo } from './lib.js';
import { SourceChips } from './knowledge.js';
import { renderMarkdownFor, renderMarkdownUncached, decorateCodeBlocks, onLibsChange, libsVersion } from './markdown.js';
import { useSlashMenu } from './slash.js';
import { brandName } from './branding.js';
import { Icon, copyText, toast, CopyButton, ErrorDetails, describeError } from './ui.js';
import { PendingChips, MessageFiles } from './attachments.js';

// ---- lazy markdown ------------------------------------------------------------------
//
// Older messages arrive a page at a time above what the reader is looking at.
// Their markdown is not rendered at once (that would stall a frame for a
// whole page): each shows its text as plain text first, and a queue renders
// them a few milliseconds per frame, nearest to the reader first.

const pending = [];
let painting = false;
const BUDGET_MS = 8;

function schedulePaints() {
  if (painting || !pending.length) return;
  painting = true;
  requestAnimationFrame(() => {
    painting = false;
    const t0 = performance.now();
    // Queued in document order above the reader: the last is the nearest.
    while (pending.length && performance.now() - t0 < BUDGET_MS) pending.pop().paint();
    schedulePaints();
  });
}

/** Renders now the queued markdown inside `root` (before scrolling to something there). */
export function paintWithin(root) {
  for (let i = pending.length - 1; i >= 0; i--) {
    const md = pending[i];
    if (md.base && root.contains(md.base)) {
      pending.splice(i, 1);
      md.paint();
    }
  }
}

/** Sanitized markdown, written straight into the DOM (Preact never diffs inside). */
export class Markdown extends Component {
  shouldComponentUpdate(next) {
    return next.text !== this.props.text || next.streaming !== this.props.streaming || next.v !== this.props.v;
  }
  componentDidMount() {
    if (this.props.lazy && !this.props.streaming) {
      // Plain text until its turn comes: the right words and roughly the right height.
      this.base.classList.add('md-plain');
      this.base.textContent = this.props.text;
      pending.push(this);
      schedulePaints();
    } else this.paint();
  }
  componentDidUpdate() { this.paint(); }
  componentWillUnmount() {
    const i = pending.indexOf(this);
    if (i >= 0) pending.splice(i, 1);
  }
  paint() {
    const el = this.base;
    if (!el) return;
    const i = pending.indexOf(this);
    if (i >= 0) pending.splice(i, 1);
    const { text, streaming, id } = this.props;
    const out = streaming ? renderMarkdownUncached(text) : renderMarkdownFor(id, text);
    if (!el.firstChild || el.classList.contains('md-plain')) {
      el.classList.remove('md-plain');
      el.innerHTML = out; // sanitized (markdown.js)
      decorateCodeBlocks(el);
    } else {
      // Update in place: what did not change stays the same DOM and a text
      // that grew is appended to, so a selection survives the next token.
      // While streaming, a node holding the selection is never replaced:
      // the paint waits (selectionchange catches up once it moves away).
      const next = document.createElement('template');
      next.innerHTML = out; // sanitized (markdown.js)
      decorateCodeBlocks(next.content);
      const keep = streaming ? selectionTouches : () => false;
      if (!morph(el, next.content, keep)) {
        deferPaint(this);
        return;
      }
    }
    this.props.onPaint?.();
  }
  render() {
    return html`<div class="md"></div>`;
  }
}

/** Whether the reader has a (non-empty) selection touching `el`. */
function selectionTouches(el) {
  const sel = document.getSelection();
  if (!sel || sel.isCollapsed || !sel.rangeCount) return false;
  return sel.getRangeAt(0).intersectsNode(el);
}

const deferred = new Set();
function onSelectionChange() {
  for (const md of [...deferred]) {
    if (!md.base?.isConnected) deferred.delete(md);
    else if (!selectionTouches(md.base)) {
      deferred.delete(md);
      md.paint();
    }
  }
  if (!deferred.size) document.removeEventListener('selectionchange', onSelectionChange);
}
function deferPaint(md) {
  if (!deferred.size) document.addEventListener('selectionchange', onSelectionChange);
  deferred.add(md);
}

/**
 * Makes the children of `into` look like those of `from` (a fragment of
 * sanitized nodes, consumed), touching only what differs: equal nodes are
 * kept, a text node that grew is appended to, same-tag elements are
 * updated inside. Stops (false) before replacing a node for which
 * `keep(node)` holds; a later call finishes the job.
 */
function morph(into, from, keep) {
  const have = [...into.childNodes];
  const want = [...from.childNodes];
  for (let i = 0; i < want.length; i++) {
    const o = have[i];
    const n = want[i];
    if (!o) {
      into.append(...want.slice(i));
      break;
    }
    if (o.isEqualNode(n)) continue;
    if (o.nodeType === 3 && n.nodeType === 3 && n.data.startsWith(o.data)) {
      o.appendData(n.data.slice(o.data.length));
    } else if (o.nodeType === 1 && n.nodeType === 1 && o.tagName === n.tagName && sameAttributes(o, n)) {
      if (!morph(o, n, keep)) return false;
    } else if (keep(o)) {
      return false;
    } else {
      o.replaceWith(n);
    }
  }
  for (let j = have.length - 1; j >= want.length; j--) {
    if (keep(have[j])) return false;
    have[j].remove();
  }
  return true;
}

function sameAttributes(a, b) {
  if (a.attributes.length !== b.attributes.length) return false;
  for (const { name, value } of b.attributes) if (a.getAttribute(name) !== value) return false;
  return true;
}

function useLibsVersion() {
  const [v, setV] = useState(libsVersion);
  useEffect(() => {
    // A library may have arrived between this render and the effect (a cached
    // KaTeX loads that fast): take the version as it is now, then follow it.
    setV(libsVersion);
    return onLibsChange(setV);
  }, []);
  return v;
}

function tokensLabel(usage) {
  if (!usage) return null;
  const n = usage.output_tokens ?? 0;
  if (n === 0) return null;
  return `${usage.estimated ? '~' : ''}${n.toLocaleString()} token${n === 1 ? '' : 's'}`;
}

function BranchNav({ msg, onSwitch, disabled }) {
  const ids = msg.sibling_ids || [];
  if (ids.length < 2) return null;
  const i = ids.indexOf(msg.id);
  const pos = i < 0 ? ids.length : i + 1;
  return html`<div class="branch-nav" role="group" aria-label="Versions of this message">
    <button type="button" class="icon-btn tiny" aria-label="Previous version" disabled=${disabled || pos <= 1}
      onClick=${() => onSwitch(msg, ids[pos - 2])}><${Icon} name="left" size=${14} /></button>
    <span class="branch-pos" aria-live="polite">${pos}/${ids.length}</span>
    <button type="button" class="icon-btn tiny" aria-label="Next version" disabled=${disabled || pos >= ids.length}
      onClick=${() => onSwitch(msg, ids[pos])}><${Icon} name="right" size=${14} /></button>
  </div>`;
}

function UserEditor({ msg, onCancel, onSave }) {
  const [text, setText] = useState(msg.content);
  const ref = useRef(null);
  useEffect(() => {
    const ta = ref.current;
    if (!ta) return;
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
    autosize(ta);
  }, []);
  return html`<form class="edit-box" onSubmit=${(e) => { e.preventDefault(); if (text.trim()) onSave(msg, text); }}>
    <textarea ref=${ref} aria-label="Edit message" value=${text} rows="2"
      onInput=${(e) => { setText(e.target.value); autosize(e.target); }}
      onKeyDown=${(e) => {
        if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); onCancel(); }
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); if (text.trim()) onSave(msg, text); }
      }}></textarea>
    <div class="edit-actions">
      <button type="button" class="btn small" onClick=${onCancel}>Cancel</button>
      <button type="submit" class="btn small primary" disabled=${!text.trim()}>Send</button>
    </div>
  </form>`;
}

/**
 * An answer's text. While it streams, the store `live` holds the text and
 * this re-renders on each delta by itself (the rest of the thread is left
 * alone); when it ends, the same Markdown goes on with the stored text, so
 * nothing is re-mounted (a selection in it survives).
 */
function Body({ live, msg, v, lazy }) {
  const [liveText, setLiveText] = useState(live ? live.text : '');
  useEffect(() => {
    if (!live) return undefined;
    setLiveText(live.text);
    return live.subscribe(setLiveText);
  }, [live]);
  const streaming = msg.status === 'streaming';
  const text = live ? liveText : msg.content;
  if (!text) return streaming ? html`<div class="typing" role="status" aria-label="Thinking"><span></span><span></span><span></span></div>` : null;
  return html`<${Markdown} id=${msg.local || live ? null : msg.id} text=${text} streaming=${streaming} v=${v}
    lazy=${lazy && !live} onPaint=${live ? live.onPaint : undefined} />`;
}

/** A user message: long ones are folded, with a toggle. */
const LONG_LINES = 14;
const LONG_CHARS = 1400;
function UserBubble({ text }) {
  const long = text.length > LONG_CHARS || text.split('\n').length > LONG_LINES;
  const [open, setOpen] = useState(false);
  if (!long) return html`<div class="bubble">${text}</div>`;
  return html`<div class=${'bubble long' + (open ? '' : ' folded')}>
    <div class="bubble-text">${text}</div>
    <button type="button" class="link-btn small bubble-toggle" aria-expanded=${open ? 'true' : 'false'}
      onClick=${() => setOpen((o) => !o)}>${open ? 'Show less' : 'Show more'}</button>
  </div>`;
}

class MessageItem extends Component {
  shouldComponentUpdate(n) {
    const p = this.props;
    return n.msg !== p.msg || n.busy !== p.busy || n.editing !== p.editing || n.v !== p.v || n.isLast !== p.isLast
      || n.liveStatus !== p.liveStatus || n.live !== p.live;
  }
  render({ msg, busy, editing, v, isLast, liveStatus, live, lazy, actions }) {
    const isUser = msg.role === 'user';
    const streaming = msg.status === 'streaming';
    const copy = () => copyText(msg.content).then((ok) => toast(ok ? 'Copied to clipboard' : 'Copy failed', ok ? 'info' : 'error'));
    if (isUser) {
      return html`<article class="msg user" data-id=${msg.id} data-role="user" aria-label="Your message">
        ${editing
          ? html`<${UserEditor} msg=${msg} onCancel=${actions.cancelEdit} onSave=${actions.saveEdit} />`
          : html`<${MessageFiles} attachments=${msg.attachments} />${msg.content && html`<${UserBubble} text=${msg.content} />`}`}
        ${!editing && html`<div class=${'msg-tools' + ((msg.sibling_ids || []).length > 1 ? ' has-branches' : '')}>
          <${BranchNav} msg=${msg} onSwitch=${actions.switchBranch} disabled=${busy} />
          <button type="button" class="icon-btn tiny" aria-label="Copy message" onClick=${copy}><${Icon} name="copy" size=${15} /></button>
          <button type="button" class="icon-btn tiny" aria-label="Edit message" disabled=${busy || msg.local}
            onClick=${() => actions.startEdit(msg)}><${Icon} name="edit" size=${15} /></button>
        </div>`}
      </article>`;
    }
    const err = msg.status === 'error' ? (msg.error || { code: 'PROVIDER_ERROR', message: 'The answer failed.' }) : null;
    return html`<article class=${'msg assistant' + (streaming ? ' streaming' : '')} data-id=${msg.id} data-role="assistant"
        data-status=${msg.status} aria-label="Answer" aria-busy=${streaming ? 'true' : 'false'}>
      <${Body} live=${live} msg=${msg} v=${v} lazy=${lazy} />
      ${msg.sources && msg.sources.length > 0 && html`<${SourceChips} sources=${msg.sources} />`}
      ${err && html`<div class="msg-error" role="alert">
        <${Icon} name="alert" size=${16} />
        <div class="msg-error-text"><span class="error-sentence">${describeError(err).text}</span><${ErrorDetails} error=${err} /></div>
        ${isLast && !busy && describeError(err).retry && html`<button type="button" class="btn small" onClick=${() => actions.regenerate(msg)}>Retry</button>`}
      </div>`}
      ${msg.status === 'interrupted' && html`<div class="msg-note muted small">Stopped</div>`}
      <div class="msg-tools">
        <${BranchNav} msg=${msg} onSwitch=${actions.switchBranch} disabled=${busy} />
        ${!streaming && html`
          <button type="button" class="icon-btn tiny" aria-label="Copy answer" onClick=${copy}><${Icon} name="copy" size=${15} /></button>
          <button type="button" class="icon-btn tiny" aria-label="Regenerate answer" disabled=${busy || msg.local}
            onClick=${() => actions.regenerate(msg)}><${Icon} name="refresh" size=${15} /></button>`}
        <span class="msg-meta">
          ${streaming && liveStatus === 'reconnecting' && html`<span class="reconnecting">Reconnecting…</span>`}
          ${msg.model && html`<span class="model-tag">${msg.model}</span>`}
          ${!streaming && msg.usage && html`<span class="tokens">${tokensLabel(msg.usage)}</span>`}
        </span>
      </div>
    </article>`;
  }
}

// ---- the thread -------------------------------------------------------------------
//
// Messages are grouped in chunks of CHUNK consecutive messages, each a
// `content-visibility: auto` box: the browser skips style, layout and paint
// for chunks far from the viewport, and tracks ~CHUNK times fewer boxes than
// one per message would (each such box costs an intersection check every
// frame). A message keeps its chunk as older pages are prepended and new
// messages appended (chunks are numbered by a sequence that is stable under
// both), so paging never re-mounts what is already shown; a chunk whose
// messages did not change is not re-rendered at all.

const CHUNK = 16;

/** Rough height of a message before the browser has laid it out (the chunk's intrinsic size). */
function estimate(m) {
  const text = m.content || '';
  let lines = 0;
  for (const para of text.split('\n')) lines += Math.max(1, Math.ceil(para.length / 85));
  return (m.role === 'user' ? 56 : 50) + Math.min(lines, 400) * 22;
}

const keyOf = (m) => m.key || m.id;

function useChunks(messages) {
  const seqs = useRef(new Map());
  return useMemo(() => {
    const seq = seqs.current;
    // Anchor on the first message already numbered; number the rest from it.
    const a = messages.findIndex((m) => seq.has(keyOf(m)));
    const base = a < 0 ? 0 : seq.get(keyOf(messages[a])) - a;
    if (a < 0 || seq.size > messages.length * 2 + 64) seq.clear();
    const chunks = [];
    let cur = null;
    messages.forEach((m, i) => {
      seq.set(keyOf(m), base + i);
      const n = Math.floor((base + i) / CHUNK);
      if (!cur || cur.n !== n) {
        cur = { n, items: [], height: 0 };
        chunks.push(cur);
      }
      cur.items.push(m);
      cur.height += estimate(m);
    });
    return chunks;
  }, [messages]);
}

class Chunk extends Component {
  shouldComponentUpdate(n) {
    const p = this.props;
    if (n.v !== p.v || n.busy !== p.busy || n.editingId !== p.editingId || n.lastId !== p.lastId
      || n.liveStatus !== p.liveStatus || n.liveKey !== p.liveKey || n.items.length !== p.items.length) return true;
    for (let i = 0; i < n.items.length; i++) if (n.items[i] !== p.items[i]) return true;
    return false;
  }
  render({ items, height, v, busy, editingId, lastId, liveStatus, liveKey, live, lazy, actions }) {
    const hasLive = items.some((m) => m.status === 'streaming');
    return html`<div class=${'chunk' + (hasLive ? ' live' : '')} style=${{ containIntrinsicSize: `auto ${height}px` }}>
      ${items.map((m) => html`<${MessageItem} key=${keyOf(m)} msg=${m} v=${v} busy=${busy}
        editing=${editingId === m.id} isLast=${m.id === lastId}
        liveStatus=${m.status === 'streaming' ? liveStatus : null}
        live=${m.status === 'streaming' && liveKey === keyOf(m) ? live : null}
        lazy=${lazy} actions=${actions} />`)}
    </div>`;
  }
}

/**
 * The thread: every loaded message, in chunks. When `hasMore`, a sentinel at
 * the top asks for older messages (`onLoadOlder`) as it comes near; the
 * caller keeps the reader's place when they are prepended.
 */
export function Thread({ messages, hasMore, olderState, onLoadOlder, busy, liveStatus, live, editingId, actions, scrollRef, stickToBottom }) {
  const v = useLibsVersion();
  const chunks = useChunks(messages);
  // Chunks numbered below the first one shown came later, with older pages:
  // their markdown is rendered lazily (see paintWithin).
  const eagerFrom = useRef(null);
  if (eagerFrom.current === null && chunks.length) eagerFrom.current = chunks[0].n;
  const topRef = useRef(null);
  const firstKey = messages.length ? keyOf(messages[0]) : null;
  const loading = olderState === 'loading';

  // Ask for older messages when the sentinel at the top comes near. A new
  // observer after each page: one that stays intersecting never fires again.
  useEffect(() => {
    const el = topRef.current;
    const root = scrollRef.current;
    if (!el || !root || !hasMore || loading || olderState === 'error') return undefined;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) onLoadOlder();
    }, { root, rootMargin: '1200px 0px 0px 0px' });
    io.observe(el);
    return () => io.disconnect();
  }, [hasMore, loading, olderState, firstKey, scrollRef, onLoadOlder]);

  // Code block copy buttons (inside sanitized HTML, so delegated).
  const onClick = useCallback((e) => {
    const btn = e.target.closest?.('button.copy-code');
    if (!btn) return;
    const code = btn.closest('.code-block')?.querySelector('pre code, pre');
    copyText(code ? code.textContent : '').then((ok) => {
      btn.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => { btn.textContent = 'Copy'; }, 1500);
    });
  }, []);

  useLayoutEffect(() => { stickToBottom?.(); });

  // Messages settle after layout (content-visibility, fonts, KaTeX): stay
  // at the bottom while the reader is there.
  const rootRef = useRef(null);
  useEffect(() => {
    const el = rootRef.current;
    if (!el || !stickToBottom || typeof ResizeObserver === 'undefined') return undefined;
    const ro = new ResizeObserver(() => stickToBottom());
    ro.observe(el);
    return () => ro.disconnect();
  }, [stickToBottom]);

  const lastId = messages.length ? messages[messages.length - 1].id : null;
  const liveKey = live?.key ?? null;
  return html`<div class="thread" ref=${rootRef} onClick=${onClick}>
    ${hasMore && html`<div ref=${topRef} class="thread-more">
      ${olderState === 'error'
        ? html`<span>Earlier messages could not be loaded.</span>
            <button type="button" class="btn small" onClick=${onLoadOlder}>Retry</button>`
        : html`<span class="spinner" aria-hidden="true"></span><span>Loading earlier messages…</span>`}
    </div>`}
    ${chunks.map((c) => html`<${Chunk} key=${c.n} items=${c.items} height=${c.height} v=${v} busy=${busy}
      editingId=${editingId} lastId=${lastId} liveStatus=${liveStatus} liveKey=${liveKey} live=${live}
      lazy=${c.n < eagerFrom.current} actions=${actions} />`)}
  </div>`;
}

export function autosize(ta) {
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, Math.round(window.innerHeight * 0.4)) + 'px';
}

export function Composer({ onSend, onStop, busy, disabled, inputRef, placeholder, hint, pending, blocked }) {
  const [text, setText] = useState('');
  // The `/` prompt library (slash.js).
  const slash = useSlashMenu({
    text, inputRef,
    setText: (t) => { setText(t); requestAnimationFrame(() => inputRef.current && autosize(inputRef.current)); },
  });
  const files = pending?.items.length || 0;
  const waiting = !!pending && (pending.uploading || pending.failed);
  const canSend = (text.trim() || files > 0) && !busy && !disabled && !waiting && !blocked;
  const fileInput = useRef(null);
  const send = () => {
    const t = text;
    if (!canSend) return;
    onSend(t);
    setText('');
    requestAnimationFrame(() => inputRef.current && autosize(inputRef.current));
  };
  // Lets the parent put text back (after a refused send).
  useEffect(() => {
    const ta = inputRef.current;
    if (!ta) return undefined;
    ta.confabSetText = (t) => { setText(t); requestAnimationFrame(() => autosize(ta)); };
    return () => { delete ta.confabSetText; };
  }, [inputRef]);
  return html`<form class="composer" onSubmit=${(e) => { e.preventDefault(); send(); }}>
    <div class="composer-box">
      ${slash.menu}
      ${pending && html`<${PendingChips} pending=${pending} />`}
      <div class="composer-row">
      ${pending && html`<input ref=${fileInput} type="file" multiple hidden data-testid="file-input"
          onChange=${(e) => { pending.add(e.target.files); e.target.value = ''; }} />
        <button type="button" class="icon-btn attach-btn" aria-label="Attach files" disabled=${disabled}
          onClick=${() => fileInput.current?.click()}><${Icon} name="paperclip" size=${18} /></button>`}
      <textarea ref=${inputRef} id="message-box" rows="1" aria-label="Message" placeholder=${placeholder || `Message ${brandName()}…`}
        value=${text} disabled=${disabled} ...${slash.inputProps}
        onPaste=${(e) => {
          const pasted = [...(e.clipboardData?.files || [])];
          if (pending && pasted.length) {
            e.preventDefault();
            pending.add(pasted);
          }
        }}
        onInput=${(e) => { setText(e.target.value); autosize(e.target); }}
        onKeyDown=${(e) => {
          if (slash.onKeyDown(e)) return;
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey) {
            e.preventDefault();
            send();
          }
        }}></textarea>
      ${busy
        ? html`<button type="button" class="send-btn stop" aria-label="Stop generating" onClick=${onStop}><${Icon} name="stop" size=${16} /></button>`
        : html`<button type="submit" class="send-btn" aria-label="Send message" disabled=${!canSend}><${Icon} name="send" size=${18} /></button>`}
      </div>
    </div>
    <div class="composer-hint muted small">${hint || 'Enter to send · Shift+Enter for a new line · / for saved prompts'}</div>
    <div class="sr-only" aria-live="polite">${slash.status}</div>
  </form>`;
}

export { CopyButton };
