// The message thread: incremental rendering (the newest messages first, more
// as the reader scrolls up), cached markdown, per-message actions, branch
// arrows, and the composer.

import { html, Component, useState, useEffect, useLayoutEffect, useRef, useCallback } from './lib.js';
import { renderMarkdown, renderMarkdownUncached, decorateCodeBlocks, onLibsChange, libsVersion } from './markdown.js';
import { Icon, copyText, toast, CopyButton } from './ui.js';

const PAGE = 40;

/** Sanitized markdown, written straight into the DOM (Preact never diffs inside). */
export class Markdown extends Component {
  shouldComponentUpdate(next) {
    return next.text !== this.props.text || next.streaming !== this.props.streaming || next.v !== this.props.v;
  }
  componentDidMount() { this.paint(); }
  componentDidUpdate() { this.paint(); }
  paint() {
    const el = this.base;
    if (!el) return;
    const { text, streaming } = this.props;
    el.innerHTML = streaming ? renderMarkdownUncached(text) : renderMarkdown(text);
    decorateCodeBlocks(el);
  }
  render() {
    return html`<div class="md"></div>`;
  }
}

function useLibsVersion() {
  const [v, setV] = useState(libsVersion);
  useEffect(() => onLibsChange(setV), []);
  return v;
}

function tokensLabel(usage) {
  if (!usage) return null;
  const n = usage.output_tokens ?? 0;
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

class MessageItem extends Component {
  shouldComponentUpdate(n) {
    const p = this.props;
    return n.msg !== p.msg || n.busy !== p.busy || n.editing !== p.editing || n.v !== p.v || n.isLast !== p.isLast || n.liveStatus !== p.liveStatus;
  }
  render({ msg, busy, editing, v, isLast, liveStatus, actions }) {
    const isUser = msg.role === 'user';
    const streaming = msg.status === 'streaming';
    const copy = () => copyText(msg.content).then((ok) => toast(ok ? 'Copied to clipboard' : 'Copy failed', ok ? 'info' : 'error'));
    if (isUser) {
      return html`<article class="msg user" data-id=${msg.id} data-role="user" aria-label="Your message">
        ${editing
          ? html`<${UserEditor} msg=${msg} onCancel=${actions.cancelEdit} onSave=${actions.saveEdit} />`
          : html`<div class="bubble">${msg.content}</div>`}
        ${!editing && html`<div class="msg-tools">
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
      ${msg.content
        ? html`<${Markdown} text=${msg.content} streaming=${streaming} v=${v} />`
        : streaming ? html`<div class="typing" aria-label="Thinking"><span></span><span></span><span></span></div>` : null}
      ${err && html`<div class="msg-error" role="alert">
        <${Icon} name="alert" size=${16} />
        <span><strong class="code">${err.code}</strong> ${err.message}</span>
        ${isLast && !busy && html`<button type="button" class="btn small" onClick=${() => actions.regenerate(msg)}>Retry</button>`}
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

/**
 * The thread. Renders the newest PAGE messages, PAGE more each time the top
 * comes into view, keeping what the reader looks at in place.
 */
export function Thread({ messages, busy, liveStatus, editingId, actions, scrollRef, stickToBottom }) {
  const v = useLibsVersion();
  const [shown, setShown] = useState(PAGE);
  const topRef = useRef(null);
  const anchor = useRef(null);
  const start = Math.max(0, messages.length - shown);
  const visible = messages.slice(start);

  // Grow upwards when the sentinel at the top is seen.
  useEffect(() => {
    const el = topRef.current;
    const root = scrollRef.current;
    if (!el || !root || start === 0) return undefined;
    const io = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      const first = root.querySelector('.msg');
      anchor.current = first ? { el: first, top: first.getBoundingClientRect().top } : null;
      setShown((s) => s + PAGE);
    }, { root, rootMargin: '600px 0px 0px 0px' });
    io.observe(el);
    return () => io.disconnect();
  }, [start, scrollRef]);

  useLayoutEffect(() => {
    const a = anchor.current;
    const root = scrollRef.current;
    if (!a || !root) return;
    anchor.current = null;
    if (!a.el.isConnected) return;
    const diff = a.el.getBoundingClientRect().top - a.top;
    if (diff) root.scrollTop += diff;
  }, [shown, scrollRef]);

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
  return html`<div class="thread" ref=${rootRef} onClick=${onClick}>
    ${start > 0 && html`<div ref=${topRef} class="thread-more" aria-hidden="true">Loading earlier messages…</div>`}
    ${visible.map((m) => html`<${MessageItem} key=${m.key || m.id} msg=${m} v=${v} busy=${busy}
      editing=${editingId === m.id} isLast=${m.id === lastId} liveStatus=${m.status === 'streaming' ? liveStatus : null}
      actions=${actions} />`)}
  </div>`;
}

export function autosize(ta) {
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, Math.round(window.innerHeight * 0.4)) + 'px';
}

export function Composer({ onSend, onStop, busy, disabled, inputRef, placeholder, hint }) {
  const [text, setText] = useState('');
  const send = () => {
    const t = text;
    if (!t.trim() || busy || disabled) return;
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
      <textarea ref=${inputRef} rows="1" aria-label="Message" placeholder=${placeholder || 'Message confab…'}
        value=${text} disabled=${disabled}
        onInput=${(e) => { setText(e.target.value); autosize(e.target); }}
        onKeyDown=${(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey) {
            e.preventDefault();
            send();
          }
        }}></textarea>
      ${busy
        ? html`<button type="button" class="send-btn stop" aria-label="Stop generating" onClick=${onStop}><${Icon} name="stop" size=${16} /></button>`
        : html`<button type="submit" class="send-btn" aria-label="Send message" disabled=${!text.trim() || disabled}><${Icon} name="send" size=${18} /></button>`}
    </div>
    <div class="composer-hint muted small">${hint || 'Enter to send · Shift+Enter for a new line'}</div>
  </form>`;
}

export { CopyButton };
