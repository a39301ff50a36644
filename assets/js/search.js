// Sidebar search: the instant title filter over the conversations the sidebar
// has loaded, plus full-text results from GET /api/search (debounced, each
// query aborting the one before), in one keyboard-navigable listbox (the
// search box is its combobox: arrow keys move, Enter opens).
//
// Snippets are plain text with [start, end) highlight ranges in UTF-16 code
// units (JavaScript string indices): rendered as text nodes and <mark>
// elements, never as HTML.

import { html, useState, useEffect, useRef, useCallback, useMemo } from './lib.js';
import { searchMessages, filterByTitle, ApiError } from './api.js';
import { Icon, Spinner, ErrorBanner, timeAgo, dateTime, plainTitle } from './ui.js';

export const MIN_CHARS = 2;
const DEBOUNCE_MS = 250;
const PAGE = 20;
const TITLE_MATCHES_SHOWN = 5;

/** Text with the [start, end) ranges wrapped in <mark>; ranges are clamped, sorted, never overlap. */
export function Highlighted({ text, ranges }) {
  const s = String(text ?? '');
  const parts = [];
  let pos = 0;
  const sorted = (Array.isArray(ranges) ? ranges : [])
    .filter((r) => Array.isArray(r) && Number.isInteger(r[0]) && Number.isInteger(r[1]))
    .map(([a, b]) => [Math.max(0, Math.min(a, s.length)), Math.max(0, Math.min(b, s.length))])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  for (const [a, b] of sorted) {
    if (b <= pos) continue;
    const from = Math.max(a, pos);
    if (from > pos) parts.push(s.slice(pos, from));
    parts.push(html`<mark>${s.slice(from, b)}</mark>`);
    pos = b;
  }
  if (pos < s.length) parts.push(s.slice(pos));
  return parts;
}

/**
 * A snippet without the markdown markup it was cut from (emphasis runs,
 * backticks, heading and quote marks; line breaks become spaces), with its
 * highlight ranges moved along. Plain text in, plain text out.
 */
export function plainSnippet(text, ranges) {
  const s = String(text ?? '');
  const drop = new Uint8Array(s.length);
  const cut = (re, group = 0) => {
    for (const m of s.matchAll(re)) {
      const at = m.index + (group ? m[0].indexOf(m[group]) : 0);
      drop.fill(1, at, at + m[group].length);
    }
  };
  cut(/`+/g);
  cut(/\*{2,}|~~/g);
  cut(/(?:^|\n)[ \t]*(#{1,6} |> ?)/g, 1);
  const map = new Array(s.length + 1);
  let out = '';
  for (let i = 0; i < s.length; i++) {
    map[i] = out.length;
    if (drop[i]) continue;
    const c = s[i];
    out += c === '\n' || c === '\r' || c === '\t' ? ' ' : c;
  }
  map[s.length] = out.length;
  const moved = (Array.isArray(ranges) ? ranges : [])
    .filter((r) => Array.isArray(r) && r[0] >= 0 && r[1] <= s.length && r[1] > r[0])
    .map(([a, b]) => [map[a], map[b]])
    .filter(([a, b]) => b > a);
  return { text: out, ranges: moved };
}

/** Where `needle` occurs in `text`, case-insensitively, as highlight ranges. */
function titleRanges(text, needle) {
  const t = (text || '').toLocaleLowerCase();
  const n = needle.toLocaleLowerCase();
  // Only when lower-casing kept the length (so indices still line up).
  if (!n || t.length !== (text || '').length) return [];
  const out = [];
  for (let i = t.indexOf(n); i >= 0 && out.length < 20; i = t.indexOf(n, i + n.length)) out.push([i, i + n.length]);
  return out;
}

/**
 * Full-text search state for query `q`:
 * {status: 'idle'|'short'|'loading'|'done'|'invalid'|'error', hits, nextCursor,
 *  partial, error, loadingMore, loadMore(), retry()}
 */
export function useMessageSearch(q) {
  const query = q.trim();
  const [st, setSt] = useState({ status: 'idle', q: '', hits: [], nextCursor: null, partial: false, error: null });
  const [loadingMore, setLoadingMore] = useState(false);
  const ctrl = useRef(null);
  const [retries, setRetries] = useState(0);

  const abort = () => {
    ctrl.current?.abort();
    ctrl.current = null;
  };

  useEffect(() => {
    abort();
    setLoadingMore(false);
    if (!query) {
      setSt({ status: 'idle', q: '', hits: [], nextCursor: null, partial: false, error: null });
      return undefined;
    }
    if (query.length < MIN_CHARS) {
      setSt({ status: 'short', q: query, hits: [], nextCursor: null, partial: false, error: null });
      return undefined;
    }
    // Keep what is shown until the new answer arrives (no flicker while typing).
    setSt((s) => ({ ...s, status: 'loading', error: null }));
    const c = new AbortController();
    const t = setTimeout(async () => {
      ctrl.current = c;
      try {
        const r = await searchMessages(query, { limit: PAGE, signal: c.signal });
        if (c.signal.aborted) return;
        setSt({ status: 'done', q: query, hits: r.hits || [], nextCursor: r.next_cursor || null, partial: !!r.partial, error: null });
      } catch (e) {
        if (c.signal.aborted || e?.name === 'AbortError') return;
        const invalid = e instanceof ApiError && e.status === 400 && e.code === 'VALIDATION_FAILED';
        setSt({ status: invalid ? 'invalid' : 'error', q: query, hits: [], nextCursor: null, partial: false, error: e });
      }
    }, DEBOUNCE_MS);
    return () => {
      clearTimeout(t);
      c.abort();
    };
  }, [query, retries]);

  useEffect(() => () => abort(), []);

  const loadMore = useCallback(async () => {
    if (st.status !== 'done' || !st.nextCursor || loadingMore) return;
    const c = new AbortController();
    ctrl.current = c;
    setLoadingMore(true);
    try {
      const r = await searchMessages(st.q, { limit: PAGE, cursor: st.nextCursor, signal: c.signal });
      if (c.signal.aborted) return;
      setSt((s) => {
        if (s.q !== st.q) return s;
        const seen = new Set(s.hits.map(hitKey));
        return { ...s, hits: [...s.hits, ...(r.hits || []).filter((h) => !seen.has(hitKey(h)))], nextCursor: r.next_cursor || null, partial: s.partial || !!r.partial };
      });
    } catch (e) {
      if (c.signal.aborted || e?.name === 'AbortError') return;
      setSt((s) => ({ ...s, moreError: e }));
    } finally {
      if (!c.signal.aborted) setLoadingMore(false);
    }
  }, [st, loadingMore]);

  return { ...st, loadingMore, loadMore, retry: () => setRetries((n) => n + 1) };
}

export const hitKey = (h) => `${h.conversation_id}:${h.message_id || 'title'}`;

const ROLE_LABEL = { user: 'You', assistant: 'Answer', title: 'Title' };

/**
 * The results listbox: the instant title matches ("Chats"), then the message
 * hits ("Messages"), then status lines (searching, empty, invalid query,
 * partial index), errors and "Show more results". `q` is the raw query;
 * `conversations` what the sidebar has loaded; `search` the state from
 * useMessageSearch; `onOpen(target, key)` with {conversation_id,
 * message_id|null}. The search box owns the keyboard (it is the combobox):
 * `activeKey` is its aria-activedescendant, walked by searchOptions() order.
 */
export function SearchResults({ q, conversations, search, onOpen, activeKey, setActiveKey, chosenKey, listId }) {
  const query = q.trim();
  const titleMatches = useMemo(() => filterByTitle(query, conversations), [query, conversations]);
  const shownTitles = titleMatches.slice(0, TITLE_MATCHES_SHOWN);
  const shownIds = new Set(shownTitles.map((c) => c.id));
  const hits = search.hits.filter((h) => !(h.role === 'title' && shownIds.has(h.conversation_id)));
  const listRef = useRef(null);

  // Keep the active option visible.
  useEffect(() => {
    if (!activeKey) return;
    const el = listRef.current?.querySelector(`[data-key="${CSS.escape(activeKey)}"]`);
    el?.scrollIntoView({ block: 'nearest' });
  }, [activeKey]);

  const searching = search.status === 'loading';
  const done = search.status === 'done';
  const nothing = done && hits.length === 0 && shownTitles.length === 0;
  const stale = searching && search.q !== query;

  const option = (key, target, body, cls = '') => html`<div role="option" id=${optionId(listId, key)} data-key=${key}
      class=${'sr-item ' + cls + (key === activeKey ? ' active' : '') + (key === chosenKey ? ' chosen' : '')}
      aria-selected=${key === activeKey ? 'true' : 'false'}
      onMouseDown=${(e) => e.preventDefault()}
      onMouseMove=${() => key !== activeKey && setActiveKey(key)}
      onClick=${() => onOpen(target, key)}>${body}</div>`;

  return html`<div class="search-results">
    <div id=${listId} role="listbox" aria-label="Search results" ref=${listRef} class=${stale ? 'stale' : ''}>
      ${shownTitles.length > 0 && html`<div role="group" aria-label="Chats" class="sr-group">
        <div class="conv-heading" aria-hidden="true">Chats</div>
        ${shownTitles.map((c) => option('c:' + c.id, { conversation_id: c.id, message_id: null }, html`
          <${Icon} name=${c.pinned ? 'pin' : 'chat'} size=${15} class="sr-icon" />
          <span class="sr-title"><${Highlighted} text=${plainTitle(c.title)} ranges=${titleRanges(plainTitle(c.title), query)} /></span>`, 'sr-chat'))}
      </div>`}
      ${(hits.length > 0 || (query.length >= MIN_CHARS && !nothing)) && html`<div role="group" aria-label="Messages" class="sr-group">
        <div class="conv-heading sr-heading" aria-hidden="true">Messages
          ${searching && html`<${Spinner} label="Searching messages" />`}</div>
        ${hits.map((h) => option(hitKey(h), h, html`
          <div class="sr-top">
            <span class="sr-title">${plainTitle(h.conversation_title) || 'Untitled'}</span>
            <time class="sr-date" datetime=${h.created_at} title=${dateTime(h.created_at)}><span aria-hidden="true">${shortAgo(h.created_at)}</span><span class="sr-only">${timeAgo(h.created_at)}</span></time>
          </div>
          <div class="sr-snippet"><span class=${'sr-role ' + h.role}>${ROLE_LABEL[h.role] || h.role}</span>
            <${Highlighted} ...${plainSnippet(h.snippet?.text, h.snippet?.highlights)} /></div>`, 'sr-hit'))}
      </div>`}
    </div>
    <div class="sr-status" role="status" aria-live="polite">
      ${search.status === 'short' && html`<p class="muted small pad">Type one more character to search messages.</p>`}
      ${searching && hits.length === 0 && html`<p class="muted small pad sr-searching">Searching messages…</p>`}
      ${done && hits.length === 0 && shownTitles.length > 0 && html`<p class="muted small pad">No messages match “${search.q}”.</p>`}
      ${nothing && html`<div class="sr-empty">
        <${Icon} name="search" size=${22} />
        <p><strong>No results for “${search.q}”</strong></p>
        <p class="muted small">All words must match. Try fewer words, a prefix like <code>deploy*</code>, or <code>"an exact phrase"</code>.</p>
      </div>`}
      ${done && search.partial && html`<p class="sr-note small"><${Icon} name="alert" size=${14} />The search index is being rebuilt: some messages may be missing for now.</p>`}
      ${search.status === 'invalid' && html`<p class="sr-invalid small" data-testid="search-invalid">
        <${Icon} name="alert" size=${14} /><span>${queryMessage(search.error)}</span></p>`}
    </div>
    ${search.status === 'error' && html`<${ErrorBanner} error=${search.error} compact onRetry=${search.retry} />`}
    ${search.moreError && html`<${ErrorBanner} error=${search.moreError} compact onRetry=${search.loadMore} />`}
    ${done && search.nextCursor && html`<div class="sr-more">
      <button type="button" class="btn small ghost" onClick=${search.loadMore} disabled=${search.loadingMore}>
        ${search.loadingMore ? html`<${Spinner} label="Loading more results" />` : null}Show more results</button>
    </div>`}
  </div>`;
}

export const optionId = (listId, key) => `${listId}-${key.replace(/[^A-Za-z0-9_-]/g, '_')}`;

/** The options in display order (what the arrow keys walk), with their targets. */
export function searchOptions(q, conversations, search) {
  const query = q.trim();
  const titles = filterByTitle(query, conversations).slice(0, TITLE_MATCHES_SHOWN);
  const ids = new Set(titles.map((c) => c.id));
  return [
    ...titles.map((c) => ({ key: 'c:' + c.id, target: { conversation_id: c.id, message_id: null } })),
    ...search.hits.filter((h) => !(h.role === 'title' && ids.has(h.conversation_id))).map((h) => ({ key: hitKey(h), target: h })),
  ];
}

function queryMessage(e) {
  const m = String(e?.message || 'This search cannot be understood.').replace(/^q:\s*/, '');
  return `Check the search: ${m.charAt(0).toLowerCase()}${m.slice(1)}`;
}

function shortAgo(iso) {
  const t = new Date(iso).getTime();
  if (!Number.isFinite(t)) return '';
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return 'now';
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  if (s < 7 * 86400) return `${Math.floor(s / 86400)}d`;
  const d = new Date(t);
  const sameYear = d.getFullYear() === new Date().getFullYear();
  return d.toLocaleDateString(undefined, sameYear ? { month: 'short', day: 'numeric' } : { year: 'numeric', month: 'short', day: 'numeric' });
}

