// The chat screen: sidebar of conversations (pinned on top, paged as you
// scroll, search with full-text results, rename / pin / archive / delete),
// the thread (the newest 50 messages of the shown branch, older pages as the
// reader scrolls up; a search hit is revealed by paging back or switching
// branch), streaming answers with stop / regenerate / edit / branches, model
// picker and per-conversation system prompt.

import { html, useState, useEffect, useRef, useCallback, useMemo, useLayoutEffect } from './lib.js';
import { get, post, patch, del, ApiError, providerKey } from './api.js';
import { navigate } from './router.js';
import { useApp } from './state.js';
import { GenerationStream } from './stream.js';
import { Icon, Logo, ErrorBanner, confirmDialog, promptDialog, Spinner, toast, plainTitle } from './ui.js';
import { groupByDate } from './words.js';
import { takeDraft, sending } from './state.js';
import { Thread, Composer, paintWithin } from './thread.js';
import { SearchResults, useMessageSearch, searchOptions, optionId } from './search.js';
import { logout } from './auth.js';
import { setCsrf } from './api.js';

const PAGE_SIZE = 50;
const THREAD_PAGE = 50; // newest messages fetched when a conversation opens
const OLDER_PAGE = 100; // older messages fetched each time the reader nears the top
const HUNT_PAGE = 200; // pages fetched while looking for a search hit's message
const SEARCH_LIST_ID = 'search-results';
const MODEL_KEY = 'confab.model';
let localSeq = 0;

function storedModel() {
  try { return localStorage.getItem(MODEL_KEY) || ''; } catch { return ''; }
}
function rememberModel(m) {
  try { if (m) localStorage.setItem(MODEL_KEY, m); } catch { /* ignore */ }
}

// ---- sidebar -------------------------------------------------------------------

function useConversations() {
  const [pinned, setPinned] = useState([]);
  const [recent, setRecent] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [hasMore, setHasMore] = useState(true);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState(null);
  const [archived, setArchived] = useState(false);
  const loadingRef = useRef(false);
  const gen = useRef(0);

  const loadFirst = useCallback(async (arch = archived) => {
    const g = ++gen.current;
    loadingRef.current = true;
    setLoading(true);
    setError(null);
    try {
      const [p, r] = await Promise.all([
        arch ? Promise.resolve({ items: [] }) : get('/conversations', { pinned: true, limit: 200 }),
        get('/conversations', arch ? { archived: true, limit: PAGE_SIZE } : { pinned: false, limit: PAGE_SIZE }),
      ]);
      if (g !== gen.current) return;
      setPinned(p.items);
      setRecent(r.items);
      setCursor(r.next_cursor);
      setHasMore(!!r.next_cursor);
    } catch (e) {
      if (g === gen.current) setError(e);
    } finally {
      if (g === gen.current) {
        loadingRef.current = false;
        setLoading(false);
      }
    }
  }, [archived]);

  const loadMore = useCallback(async () => {
    if (loadingRef.current || !cursor) return;
    const g = gen.current;
    loadingRef.current = true;
    setLoading(true);
    try {
      const r = await get('/conversations', archived ? { archived: true, limit: PAGE_SIZE, cursor } : { pinned: false, limit: PAGE_SIZE, cursor });
      if (g !== gen.current) return;
      setRecent((xs) => {
        const seen = new Set(xs.map((x) => x.id));
        return [...xs, ...r.items.filter((x) => !seen.has(x.id))];
      });
      setCursor(r.next_cursor);
      setHasMore(!!r.next_cursor);
    } catch (e) {
      setError(e);
    } finally {
      loadingRef.current = false;
      setLoading(false);
    }
  }, [cursor, archived]);

  /** Re-reads the first page and merges it (titles change after the first answer). */
  const refreshTop = useCallback(async () => {
    if (archived) return;
    try {
      const [p, r] = await Promise.all([
        get('/conversations', { pinned: true, limit: 200 }),
        get('/conversations', { pinned: false, limit: PAGE_SIZE }),
      ]);
      setPinned(p.items);
      setRecent((xs) => {
        const top = new Set(r.items.map((x) => x.id));
        const oldest = r.items.length ? r.items[r.items.length - 1].updated_at : null;
        const rest = xs.filter((x) => !top.has(x.id) && (!oldest || x.updated_at <= oldest));
        return [...r.items, ...rest];
      });
    } catch {
      /* the next refresh will do */
    }
  }, [archived]);

  useEffect(() => { loadFirst(archived); }, [archived]); // eslint-disable-line

  const upsert = useCallback((c) => {
    if (c.archived !== archived) {
      setPinned((xs) => xs.filter((x) => x.id !== c.id));
      setRecent((xs) => xs.filter((x) => x.id !== c.id));
      return;
    }
    if (c.pinned && !archived) {
      setRecent((xs) => xs.filter((x) => x.id !== c.id));
      setPinned((xs) => (xs.some((x) => x.id === c.id) ? xs.map((x) => (x.id === c.id ? { ...x, ...c } : x)) : [c, ...xs]));
    } else {
      setPinned((xs) => xs.filter((x) => x.id !== c.id));
      setRecent((xs) => (xs.some((x) => x.id === c.id)
        ? xs.map((x) => (x.id === c.id ? { ...x, ...c } : x))
        : [c, ...xs].sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1))));
    }
  }, [archived]);

  const remove = useCallback((id) => {
    setPinned((xs) => xs.filter((x) => x.id !== id));
    setRecent((xs) => xs.filter((x) => x.id !== id));
  }, []);

  /** A conversation was named: change its title where it is listed. */
  const retitle = useCallback((id, title) => {
    const named = (xs) => xs.map((x) => (x.id === id ? { ...x, title } : x));
    setPinned(named);
    setRecent(named);
  }, []);

  return { pinned, recent, hasMore, loading, error, loadFirst, loadMore, refreshTop, upsert, retitle, remove, archived, setArchived };
}

function ConversationMenu({ conv, onRename, onAction, onClose, anchorRef }) {
  const ref = useRef(null);
  useEffect(() => {
    ref.current?.querySelector('button')?.focus();
    const outside = (e) => { if (!ref.current?.contains(e.target) && !anchorRef.current?.contains(e.target)) onClose(false); };
    document.addEventListener('pointerdown', outside);
    return () => document.removeEventListener('pointerdown', outside);
  }, []); // eslint-disable-line
  const keys = (e) => {
    const items = [...ref.current.querySelectorAll('button')];
    const i = items.indexOf(document.activeElement);
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); onClose(true); }
    else if (e.key === 'ArrowDown') { e.preventDefault(); items[(i + 1) % items.length].focus(); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); items[(i - 1 + items.length) % items.length].focus(); }
    else if (e.key === 'Tab') onClose(false);
  };
  const item = (icon, label, fn, cls = '') => html`<button type="button" role="menuitem" class=${'menu-item ' + cls}
    onClick=${() => { onClose(false); fn(); }}><${Icon} name=${icon} size=${16} />${label}</button>`;
  return html`<div class="menu" role="menu" ref=${ref} aria-label=${'Actions for ' + plainTitle(conv.title)} onKeyDown=${keys}>
    ${item('edit', 'Rename', onRename)}
    ${!conv.archived && item('pin', conv.pinned ? 'Unpin' : 'Pin', () => onAction('pin'))}
    ${item('archive', conv.archived ? 'Unarchive' : 'Archive', () => onAction('archive'))}
    ${item('trash', 'Delete', () => onAction('delete'), 'danger')}
  </div>`;
}

function ConversationItem({ conv, active, onAction }) {
  const [menu, setMenu] = useState(false);
  const [renaming, setRenaming] = useState(false);
  const btnRef = useRef(null);
  const inputRef = useRef(null);
  useEffect(() => {
    if (renaming) {
      inputRef.current?.focus();
      inputRef.current?.select();
    }
  }, [renaming]);
  const finishRename = async (save) => {
    const v = inputRef.current?.value.trim();
    setRenaming(false);
    if (save && v && v !== conv.title) await onAction(conv, 'rename', v);
    requestAnimationFrame(() => btnRef.current?.focus());
  };
  return html`<li class=${'conv' + (active ? ' active' : '') + (menu ? ' menu-open' : '')}>
    ${renaming
      ? html`<input ref=${inputRef} class="conv-rename" aria-label="New title" defaultValue=${conv.title} maxlength="200"
          onKeyDown=${(e) => {
            if (e.key === 'Enter') { e.preventDefault(); finishRename(true); }
            if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); finishRename(false); }
          }}
          onBlur=${() => renaming && finishRename(true)} />`
      : html`<a href=${'/c/' + conv.id} class="conv-link" aria-current=${active ? 'page' : undefined} title=${plainTitle(conv.title)}>
          ${conv.pinned && html`<${Icon} name="pin" size=${14} class="pin-icon" />`}<span class="conv-title">${plainTitle(conv.title)}</span></a>`}
    ${!renaming && html`<button type="button" ref=${btnRef} class="icon-btn tiny conv-more" aria-label=${'More actions for ' + plainTitle(conv.title)}
        aria-haspopup="menu" aria-expanded=${menu ? 'true' : 'false'} onClick=${() => setMenu((m) => !m)}>
      <${Icon} name="more" size=${16} /></button>`}
    ${menu && html`<${ConversationMenu} conv=${conv} anchorRef=${btnRef}
      onRename=${() => setRenaming(true)}
      onAction=${(a) => onAction(conv, a)}
      onClose=${(refocus) => { setMenu(false); if (refocus) btnRef.current?.focus(); }} />`}
  </li>`;
}

function Sidebar({ list, activeId, onNewChat, onAction, searchRef, open, onClose, onOpenHit, onLeave }) {
  const { me, setMe } = useApp();
  const [q, setQ] = useState('');
  const [activeKey, setActiveKey] = useState(null);
  const [chosenKey, setChosenKey] = useState(null);
  const endRef = useRef(null);
  const scrollRef = useRef(null);
  const search = useMessageSearch(q);
  const searching = !!q.trim();

  useEffect(() => {
    const el = endRef.current;
    if (!el || !list.hasMore || searching) return undefined;
    const io = new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting)) list.loadMore(); },
      { root: scrollRef.current, rootMargin: '0px 0px 300px 0px' });
    io.observe(el);
    return () => io.disconnect();
  }, [list.hasMore, list.loadMore, list.recent.length, searching]);

  const loaded = useMemo(() => [...list.pinned, ...list.recent], [list.pinned, list.recent]);
  const options = searching ? searchOptions(q, loaded, search) : [];
  const activeIndex = activeKey ? options.findIndex((o) => o.key === activeKey) : -1;
  useEffect(() => { setActiveKey(null); }, [q]);

  const choose = (target, key) => {
    setChosenKey(key);
    setActiveKey(key);
    onOpenHit(target);
  };

  const onSearchKey = (e) => {
    if (e.key === 'Escape') {
      // The topmost thing only: the query first, then (on a phone) the
      // drawer; on a desktop, leave the box for the message box. Never the
      // running answer.
      if (q) {
        e.preventDefault();
        e.stopPropagation();
        setQ('');
      } else if (!drawerShown()) {
        e.preventDefault();
        e.stopPropagation();
        onLeave();
      }
    } else if (!searching) {
      /* nothing to walk */
    } else if (e.key === 'ArrowDown') {
      e.preventDefault();
      if (!options.length) return;
      if (activeIndex === options.length - 1 && search.nextCursor) search.loadMore();
      setActiveKey(options[Math.min(activeIndex + 1, options.length - 1)].key);
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      setActiveKey(activeIndex <= 0 ? null : options[activeIndex - 1].key);
    } else if (e.key === 'Enter' && !e.isComposing) {
      e.preventDefault();
      const o = options[Math.max(0, activeIndex)];
      if (o) choose(o.target, o.key);
    }
  };

  const drawerShown = () => open && isPhone();
  const section = (title, items) => items.length > 0 && html`<section key=${title} class="conv-section" aria-label=${title}>
    <h2 class="conv-heading">${title}</h2>
    <ul class="conv-list">${items.map((c) => html`<${ConversationItem} key=${c.id} conv=${c} active=${c.id === activeId} onAction=${onAction} />`)}</ul>
  </section>`;

  return html`<aside class=${'sidebar' + (open ? ' open' : '')} aria-label="Conversations">
    <div class="sidebar-top">
      <a href="/" class="brand" aria-label="confab home"><${Logo} size=${26} /><span>confab</span></a>
      <button type="button" class="icon-btn drawer-close" aria-label="Close sidebar" onClick=${onClose}><${Icon} name="close" /></button>
    </div>
    <button type="button" class="btn new-chat" onClick=${onNewChat}><${Icon} name="plus" size=${16} />New chat<kbd class="kbd">Ctrl Shift O</kbd></button>
    <div class="search-box" role="search">
      <${Icon} name="search" size=${16} />
      <input ref=${searchRef} type="search" placeholder="Search chats" aria-label="Search conversations"
        role="combobox" aria-autocomplete="list" aria-expanded=${searching ? 'true' : 'false'}
        aria-controls=${searching ? SEARCH_LIST_ID : undefined}
        aria-activedescendant=${activeIndex >= 0 ? optionId(SEARCH_LIST_ID, activeKey) : undefined}
        autocomplete="off" spellcheck="false" enterkeyhint="search" value=${q}
        onInput=${(e) => setQ(e.target.value)} onKeyDown=${onSearchKey} />
      ${q
        ? html`<button type="button" class="icon-btn tiny search-clear" aria-label="Clear search"
            onClick=${() => { setQ(''); searchRef.current?.focus(); }}><${Icon} name="close" size=${14} /></button>`
        : html`<kbd class="kbd">Ctrl K</kbd>`}
    </div>
    <nav class="sidebar-scroll" ref=${scrollRef} aria-label=${searching ? 'Search results' : 'Conversation list'}>
      ${list.error && html`<${ErrorBanner} error=${list.error} compact onRetry=${() => list.loadFirst()} />`}
      ${searching
        ? html`<${SearchResults} q=${q} conversations=${loaded} search=${search} onOpen=${choose}
            activeKey=${activeIndex >= 0 ? activeKey : null} setActiveKey=${setActiveKey} chosenKey=${chosenKey} listId=${SEARCH_LIST_ID} />`
        : html`
          ${section('Pinned', list.pinned)}
          ${list.archived ? section('Archived', list.recent) : groupByDate(list.recent).map((g) => section(g.title, g.items))}
          ${!list.loading && !list.pinned.length && !list.recent.length && html`<p class="muted small pad">${list.archived ? 'Nothing archived.' : 'No conversations yet.'}</p>`}
          <div ref=${endRef} class="list-end">${list.loading && html`<${Spinner} label="Loading conversations" />`}</div>`}
    </nav>
    <div class="sidebar-foot">
      <button type="button" class="link-btn small" onClick=${() => list.setArchived(!list.archived)}>
        <${Icon} name="archive" size=${14} />${list.archived ? 'Back to chats' : 'Archived chats'}</button>
      <div class="user-row">
        <span class="avatar" aria-hidden="true">${(me.username || '?').slice(0, 1).toUpperCase()}</span>
        <span class="user-name">${me.username}</span>
        ${me.role === 'admin' && html`<a class="icon-btn" href="/admin" aria-label="Admin" title="Admin"><${Icon} name="shield" /></a>`}
        <a class="icon-btn" href="/settings" aria-label="Settings" title="Settings"><${Icon} name="settings" /></a>
        <button type="button" class="icon-btn" aria-label="Sign out" title="Sign out"
          onClick=${async () => { await logout(setMe); setCsrf(null); navigate('/login', { replace: true }); }}><${Icon} name="logout" /></button>
      </div>
    </div>
  </aside>`;
}

// ---- the screen ------------------------------------------------------------------

/** The sidebar is a drawer over the chat (app.css, max-width: 820px). */
const isPhone = () => window.matchMedia('(max-width: 820px)').matches;

/** The title in the header: a button that turns into a field to rename it. */
function HeaderTitle({ conv, fallback, onRename }) {
  const [editing, setEditing] = useState(false);
  const inputRef = useRef(null);
  const btnRef = useRef(null);
  useEffect(() => {
    if (editing) {
      inputRef.current?.focus();
      inputRef.current?.select();
    }
  }, [editing]);
  useEffect(() => { setEditing(false); }, [conv?.id]);
  const title = conv ? plainTitle(conv.title) : fallback;
  if (!conv) return html`<h1 class="chat-title">${fallback}</h1>`;
  const finish = async (save) => {
    const v = inputRef.current?.value.trim();
    setEditing(false);
    requestAnimationFrame(() => btnRef.current?.focus());
    if (save && v && v !== conv.title) await onRename(v);
  };
  return html`<h1 class="chat-title">
    ${editing
      ? html`<input ref=${inputRef} class="title-input" aria-label="Conversation title" defaultValue=${conv.title} maxlength="200"
          onKeyDown=${(e) => {
            if (e.key === 'Enter') { e.preventDefault(); finish(true); }
            if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); finish(false); }
          }}
          onBlur=${() => finish(true)} />`
      : html`<button type="button" ref=${btnRef} class="title-btn" title="Rename" aria-label=${'Rename conversation: ' + title}
          onClick=${() => setEditing(true)}><span class="title-text">${title}</span><${Icon} name="edit" size=${14} /></button>`}
  </h1>`;
}

/** Marks the models of providers the last health check could not reach. */
function modelLabel(m, down) {
  const name = m.display_name && m.display_name !== m.id ? `${m.display_name} (${m.id})` : m.id;
  return down.has(m.provider) ? `${name} (unreachable)` : name;
}

export function ChatScreen() {
  const { route, me } = useApp();
  const convId = route.params.id || null;
  const list = useConversations();

  const [models, setModels] = useState({ items: [], default_model: null });
  const [conv, setConv] = useState(null);
  const [messages, setMessages] = useState([]);
  const [hasMore, setHasMore] = useState(false); // older messages of the shown thread not loaded yet
  const [olderState, setOlderState] = useState(null); // null | 'loading' | 'error'
  const [reveal, setReveal] = useState(null); // {id}: scroll to this message once it is rendered
  const [loadingConv, setLoadingConv] = useState(false);
  const [convError, setConvError] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [liveStatus, setLiveStatus] = useState('live');
  const [editingId, setEditingId] = useState(null);
  const [draftModel, setDraftModel] = useState('');
  const [draftSystem, setDraftSystem] = useState('');
  const [drawer, setDrawer] = useState(false);
  const [atBottom, setAtBottom] = useState(true);
  const [announce, setAnnounce] = useState('');
  const [notice, setNotice] = useState(null);

  const streamRef = useRef(null);
  const genRef = useRef(null); // {gid, assistantId}
  const ownNav = useRef(null);
  const inputRef = useRef(null);
  const searchRef = useRef(null);
  const scrollRef = useRef(null);
  const stick = useRef(true);
  const convRef = useRef(null);
  convRef.current = conv;
  const messagesRef = useRef(messages);
  messagesRef.current = messages;
  const hasMoreRef = useRef(hasMore);
  hasMoreRef.current = hasMore;
  const olderBusy = useRef(false);
  const anchorRef = useRef(null);
  const pendingReveal = useRef(null); // {cid, mid}: reveal once that conversation has loaded
  const revealSeq = useRef(0);

  // The answer being streamed: its text lives here, not in `messages`, so a
  // delta re-renders that one message (thread.js LiveBody), not the thread.
  const live = useMemo(() => {
    const subs = new Set();
    return {
      key: null,
      text: '',
      onPaint: null,
      set(t) {
        this.text = t;
        for (const fn of subs) fn(t);
      },
      subscribe(fn) {
        subs.add(fn);
        return () => subs.delete(fn);
      },
    };
  }, []);

  // Models, once; the providers' health now and then (a check runs every
  // minute on the server), to mark the models of unreachable ones.
  const [down, setDown] = useState(() => new Set());
  const loadHealth = useCallback(() => {
    get('/providers').then((r) => {
      setDown(new Set(r.items.filter((p) => p.enabled && !p.reachable && p.last_error).map((p) => p.name)));
    }).catch(() => {});
  }, []);
  useEffect(() => {
    get('/models').then(setModels).catch(() => {});
    loadHealth();
    const t = setInterval(loadHealth, 60000);
    return () => clearInterval(t);
  }, [loadHealth]);

  const modelIds = models.items.map((m) => m.id);
  const pick = (m) => (m && (modelIds.length === 0 || modelIds.includes(m)) ? m : '');
  const model = pick(conv?.model) || pick(draftModel) || pick(storedModel()) || models.default_model || modelIds[0] || '';

  // ---- loading a conversation ----
  const closeStream = () => {
    streamRef.current?.close();
    streamRef.current = null;
    genRef.current = null;
    live.key = null;
    setBusy(false);
  };

  /**
   * Loads the newest THREAD_PAGE messages of the shown thread. `quiet`: a
   * refresh of what is shown (after an answer, a branch switch), which keeps
   * the older messages already loaded when the new window continues them.
   */
  const loadConversation = useCallback(async (id, { quiet = false } = {}) => {
    if (!quiet) setLoadingConv(true);
    try {
      const c = await get('/conversations/' + encodeURIComponent(id), { limit: THREAD_PAGE });
      if (convRef.current && convRef.current.id !== id && quiet) return null;
      const { messages: fetched, has_more: more, ...meta } = c;
      setConv(meta);
      convRef.current = meta;
      const old = messagesRef.current;
      // Messages shown before keep their render key (a streamed one was keyed
      // by its local id): a new key would re-mount it, and the thread would
      // lose its scroll position for a frame and land at the top.
      const keys = new Map(old.filter((m) => m.key && m.key !== m.id).map((m) => [m.id, m.key]));
      const msgs = keys.size ? fetched.map((m) => (keys.has(m.id) ? { ...m, key: keys.get(m.id) } : m)) : fetched;
      const at = quiet && msgs.length ? old.findIndex((m) => m.id === msgs[0].id) : -1;
      if (at > 0) {
        // Same path above the new window: keep what the reader paged in.
        setMessages([...old.slice(0, at), ...msgs]);
      } else {
        setMessages(msgs);
        setHasMore(!!more);
        setOlderState(null);
      }
      setConvError(null);
      return c;
    } catch (e) {
      if (!quiet) {
        setConv(null);
        setMessages([]);
        setHasMore(false);
        setConvError(e);
      }
      return null;
    } finally {
      if (!quiet) setLoadingConv(false);
    }
  }, []);

  /** The first message (from the top) at least partly in view, to keep in place while prepending. */
  const captureAnchor = () => {
    const root = scrollRef.current;
    if (!root) return;
    const top = root.getBoundingClientRect().top;
    // Chunks first: touching the messages of a skipped chunk would lay it out.
    for (const chunk of root.querySelectorAll('.chunk')) {
      if (chunk.getBoundingClientRect().bottom <= top) continue;
      for (const el of chunk.querySelectorAll('.msg')) {
        const r = el.getBoundingClientRect();
        if (r.bottom > top) {
          anchorRef.current = { id: el.dataset.id, top: r.top };
          return;
        }
      }
    }
  };

  // Older messages prepended: put the anchor back where it was.
  useLayoutEffect(() => {
    const a = anchorRef.current;
    const root = scrollRef.current;
    anchorRef.current = null;
    if (!a || !root) return;
    const el = root.querySelector(`.msg[data-id="${CSS.escape(a.id)}"]`);
    if (!el) return;
    const diff = el.getBoundingClientRect().top - a.top;
    if (Math.abs(diff) >= 1) root.scrollTop += diff;
  }, [messages]);

  /** Fetches the OLDER_PAGE messages before the first loaded one. */
  const loadOlder = useCallback(async () => {
    const c = convRef.current;
    const ms = messagesRef.current;
    if (olderBusy.current || !c || !hasMoreRef.current || !ms.length || ms[0].local) return;
    const first = ms[0].id;
    olderBusy.current = true;
    setOlderState('loading');
    try {
      const r = await get(`/conversations/${encodeURIComponent(c.id)}/messages`, { before: first, limit: OLDER_PAGE });
      if (convRef.current?.id !== c.id || messagesRef.current[0]?.id !== first) {
        setOlderState(null);
        return;
      }
      captureAnchor();
      setMessages((cur) => [...r.messages, ...cur]);
      setHasMore(!!r.has_more);
      setOlderState(null);
    } catch (e) {
      if (convRef.current?.id !== c.id) return;
      if (e instanceof ApiError && e.status === 400) {
        // The shown branch changed elsewhere: start again from its newest messages.
        setOlderState(null);
        loadConversation(c.id, { quiet: true });
      } else setOlderState('error');
    } finally {
      olderBusy.current = false;
    }
  }, [loadConversation]);

  /**
   * Shows message `mid` of conversation `cid` (loaded, the current one):
   * pages back until it is loaded; if the shown branch does not hold it,
   * switches to the newest path through it first. Then scrolls to it.
   */
  const revealMessage = async (cid, mid, start = null) => {
    const token = ++revealSeq.current;
    const stale = () => token !== revealSeq.current || convRef.current?.id !== cid;
    // Page back from `msgs` until `mid` is among them or the thread is exhausted.
    const hunt = async (msgs, more) => {
      let older = [];
      const has = () => older.some((m) => m.id === mid) || msgs.some((m) => m.id === mid);
      while (!has() && more) {
        const first = older[0] || msgs[0];
        if (!first || first.local) break;
        const r = await get(`/conversations/${encodeURIComponent(cid)}/messages`, { before: first.id, limit: HUNT_PAGE });
        if (stale()) return null;
        older = [...r.messages, ...older];
        more = !!r.has_more;
      }
      return { older, more, found: has() };
    };
    olderBusy.current = true;
    try {
      const msgs = start ? start.msgs : messagesRef.current;
      const first = msgs[0]?.id;
      let h = await hunt(msgs, start ? start.more : hasMoreRef.current);
      if (!h) return;
      if (h.found) {
        if (h.older.length) {
          setMessages((cur) => (cur[0]?.id === first ? [...h.older, ...cur] : cur));
          setHasMore(h.more);
        }
      } else {
        // Not on the shown branch: show the newest path through it.
        if (genRef.current) {
          toast('That message is on another branch: stop the answer first.', 'error');
          return;
        }
        try {
          await patch('/conversations/' + encodeURIComponent(cid), { current_leaf: mid });
        } catch (e) {
          if (!(e instanceof ApiError) || e.status !== 400) throw e;
          if (!stale()) toast('That message is no longer in this conversation.', 'error');
          return;
        }
        const c = await get('/conversations/' + encodeURIComponent(cid), { limit: THREAD_PAGE });
        if (stale()) return;
        const { messages: fresh, has_more: more, ...meta } = c;
        h = await hunt(fresh, !!more);
        if (!h) return;
        setConv(meta);
        convRef.current = meta;
        setMessages([...h.older, ...fresh]);
        setHasMore(h.more);
        setOlderState(null);
        if (!h.found) {
          toast('That message is no longer in this conversation.', 'error');
          return;
        }
      }
      setReveal({ id: mid, n: token });
    } catch (e) {
      if (!stale()) setError(e);
    } finally {
      if (token === revealSeq.current) olderBusy.current = false;
    }
  };

  // Scroll to the revealed message once it is in the DOM, and flash it.
  useLayoutEffect(() => {
    if (!reveal) return;
    const root = scrollRef.current;
    const el = root?.querySelector(`.msg[data-id="${CSS.escape(reveal.id)}"]`);
    if (!el) return;
    setReveal(null);
    showMessage(root, el);
  }, [reveal, messages]);

  const showMessage = (root, el) => {
    stick.current = false;
    const chunk = el.closest('.chunk');
    if (chunk) {
      chunk.classList.add('pinned');
      paintWithin(chunk);
    }
    const place = () => {
      const tall = el.getBoundingClientRect().height > root.clientHeight * 0.7;
      el.scrollIntoView({ block: tall ? 'start' : 'center', behavior: 'instant' });
    };
    place();
    el.classList.remove('flash');
    void el.offsetWidth; // restart the animation
    el.classList.add('flash');
    el.setAttribute('tabindex', '-1');
    el.focus({ preventScroll: true });
    // Boxes above may settle to their real sizes over the next frames.
    let n = 0;
    const check = () => {
      if (!el.isConnected) return;
      const r = el.getBoundingClientRect();
      const v = root.getBoundingClientRect();
      if (r.bottom < v.top + 8 || r.top > v.bottom - 8) place();
      if (++n < 4) requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
    setTimeout(() => {
      el.classList.remove('flash');
      chunk?.classList.remove('pinned');
    }, 2600);
  };

  /** A search result was chosen: {conversation_id, message_id|null}. */
  const openHit = (target) => {
    setDrawer(false);
    const cid = target.conversation_id;
    const mid = target.message_id;
    if (cid === convId && convRef.current?.id === cid && !loadingConv) {
      if (mid) revealMessage(cid, mid);
      else scrollToBottom();
      return;
    }
    pendingReveal.current = mid ? { cid, mid } : null;
    navigate('/c/' + cid);
  };

  useEffect(() => {
    setEditingId(null);
    setError(null);
    setNotice(null);
    if (convId && ownNav.current === convId) {
      ownNav.current = null;
      return;
    }
    closeStream();
    stick.current = true;
    if (!convId) {
      setConv(null);
      setMessages([]);
      setHasMore(false);
      setConvError(null);
      setDraftSystem('');
      requestAnimationFrame(() => inputRef.current?.focus());
      return;
    }
    revealSeq.current++;
    olderBusy.current = false;
    anchorRef.current = null;
    const p = pendingReveal.current;
    pendingReveal.current = null;
    (async () => {
      const c = await loadConversation(convId);
      if (!c) return;
      const last = c.messages[c.messages.length - 1];
      if (last && last.status === 'streaming' && last.generation_id) resume(last);
      if (p && p.cid === convId) revealMessage(p.cid, p.mid, { msgs: c.messages, more: !!c.has_more });
      else requestAnimationFrame(() => inputRef.current?.focus());
    })();
  }, [convId]); // eslint-disable-line

  useEffect(() => () => closeStream(), []); // eslint-disable-line

  // A message typed when the session ended comes back after signing in.
  useEffect(() => {
    const d = takeDraft(location.pathname, me?.id);
    if (!d) return;
    requestAnimationFrame(() => {
      inputRef.current?.confabSetText?.(d);
      inputRef.current?.focus();
    });
    setNotice('Your message was not sent because your session had ended. It is back in the message box: send it again.');
  }, [convId]);

  useEffect(() => {
    document.title = conv?.title ? `${plainTitle(conv.title)} · confab` : convId ? 'confab' : 'New chat · confab';
  }, [conv?.title, convId]);

  // ---- scrolling ----
  const onScroll = () => {
    const el = scrollRef.current;
    if (!el) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    stick.current = bottom;
    if (bottom !== atBottom) setAtBottom(bottom);
  };
  const stickToBottom = useCallback(() => {
    const el = scrollRef.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, []);
  const scrollToBottom = () => {
    stick.current = true;
    const el = scrollRef.current;
    if (el) el.scrollTo({ top: el.scrollHeight, behavior: 'smooth' });
  };

  // ---- streaming ----
  const pending = useRef('');
  const frame = useRef(0);
  const liveId = useRef(null);

  const updateLive = (fn) => {
    const id = liveId.current;
    setMessages((ms) => ms.map((m) => (m.id === id ? fn(m) : m)));
  };
  const flush = () => {
    frame.current = 0;
    const add = pending.current;
    if (!add) return;
    pending.current = '';
    live.set(live.text + add);
  };
  /** Writes the streamed text into the message (once, at the end). */
  const commitLive = (extra = {}) => {
    const text = live.text;
    updateLive((m) => ({ ...m, content: text, ...extra }));
  };
  live.onPaint = stickToBottom;

  const finishStream = async (cid) => {
    if (frame.current) cancelAnimationFrame(frame.current);
    flush();
    if (live.key) {
      const text = live.text;
      updateLive((m) => (m.content === text ? m : { ...m, content: text }));
      live.key = null;
    }
    streamRef.current = null;
    genRef.current = null;
    setBusy(false);
    setLiveStatus('live');
    if (cid && (!convRef.current || convRef.current.id === cid)) await loadConversation(cid, { quiet: true });
    list.refreshTop();
  };

  function handlers(ctx) {
    return {
      meta(d) {
        sending.text = null;
        genRef.current = { gid: d.generation_id, assistantId: d.assistant_message_id };
        ctx.cid = d.conversation_id;
        if (ctx.tempAssistant) {
          const ids = { [ctx.tempAssistant]: d.assistant_message_id };
          if (ctx.tempUser && d.user_message_id) ids[ctx.tempUser] = d.user_message_id;
          setMessages((ms) => ms.map((m) => (ids[m.id] ? { ...m, id: ids[m.id], key: m.key || m.id, local: false, model: d.model || m.model } : m)));
          liveId.current = d.assistant_message_id;
          ctx.tempAssistant = null;
        }
        if (!convRef.current || convRef.current.id !== d.conversation_id) {
          const now = new Date().toISOString();
          const c = { id: d.conversation_id, title: 'New chat', model: d.model, system_prompt: null, pinned: false, archived: false, created_at: now, updated_at: now };
          setConv(c);
          convRef.current = c;
          list.upsert(c);
          ownNav.current = d.conversation_id;
          navigate('/c/' + d.conversation_id);
        }
      },
      delta(t) {
        pending.current += t;
        if (!frame.current) frame.current = requestAnimationFrame(flush);
      },
      usage(u) {
        updateLive((m) => ({ ...m, usage: u }));
      },
      /** The server named the conversation (first answers). */
      title(t) {
        if (convRef.current && convRef.current.id === t.conversation_id) setConv((old) => (old ? { ...old, title: t.title } : old));
        list.retitle(t.conversation_id, t.title);
      },
      done(d) {
        flush();
        setAnnounce(d.finish_reason === 'stopped' ? 'Answer stopped.' : 'Answer finished.');
        commitLive({ status: d.finish_reason === 'stopped' ? 'interrupted' : 'complete', finish_reason: d.finish_reason });
        finishStream(ctx.cid);
      },
      error(e) {
        flush();
        // Shown in the answer itself (with Retry when it can help), not twice.
        commitLive({ status: 'error', error: { code: e.code, message: e.message, request_id: e.request_id } });
        setAnnounce('The answer failed.');
        finishStream(ctx.cid);
      },
      status(s) { setLiveStatus(s); },
      gone() { finishStream(ctx.cid); },
      lost(err) {
        setError(err);
        finishStream(ctx.cid);
      },
    };
  }

  const resume = (msg) => {
    closeStream();
    liveId.current = msg.id;
    live.key = msg.key || msg.id;
    // The server sends the live text and the last event it includes: show
    // the one and follow from the other (nothing is replayed twice).
    const from = Number.isFinite(msg.generation_event_id) ? msg.generation_event_id : 0;
    live.text = from ? msg.content || '' : '';
    pending.current = '';
    const ctx = { cid: msg.conversation_id };
    const s = new GenerationStream(handlers(ctx));
    streamRef.current = s;
    genRef.current = { gid: msg.generation_id, assistantId: msg.id };
    setBusy(true);
    setLiveStatus('live');
    s.resume(msg.generation_id, from);
  };

  /** Starts an answer. `base`: the messages kept before the new ones. */
  const start = async ({ body, base, userMsg, retryText }) => {
    closeStream();
    setError(null);
    setEditingId(null);
    const tempA = 'local-a-' + ++localSeq;
    const tempU = userMsg ? 'local-u-' + localSeq : null;
    const assistant = { id: tempA, key: tempA, role: 'assistant', content: '', status: 'streaming', model: body.model || model, local: true, parent_id: userMsg ? tempU : userMsg?.parent_id };
    const added = [];
    if (userMsg) added.push({ ...userMsg, id: tempU, key: tempU, role: 'user', status: 'complete', local: true });
    added.push(assistant);
    const before = messages;
    live.key = tempA;
    live.text = '';
    setMessages([...base, ...added]);
    liveId.current = tempA;
    pending.current = '';
    stick.current = true;
    setBusy(true);
    setLiveStatus('live');
    setAnnounce('');
    const ctx = { cid: body.conversation_id || null, tempAssistant: tempA, tempUser: tempU };
    const s = new GenerationStream(handlers(ctx));
    streamRef.current = s;
    const headers = {};
    const key = providerKey();
    if (key) headers['X-Provider-Key'] = key;
    sending.text = retryText ?? null;
    try {
      await s.start(body, headers);
    } catch (e) {
      sending.text = null;
      if (streamRef.current !== s) return;
      streamRef.current = null;
      live.key = null;
      setBusy(false);
      setMessages(before);
      // The session ended: the app has gone to the sign-in page and kept
      // the text (app.js, `sending`); it comes back here after signing in.
      if (e instanceof ApiError && e.status === 401) return;
      if (retryText != null) inputRef.current?.confabSetText?.(retryText);
      setError({
        code: e.code, message: e.message, request_id: e.request_id, status: e.status, retry_after: e.retry_after,
        retry: () => start({ body, base, userMsg, retryText: null }),
      });
      if (ctx.cid && ctx.cid !== convRef.current?.id) return;
      if (body.conversation_id) loadConversation(body.conversation_id, { quiet: true });
    }
  };

  const send = async (text) => {
    const body = { content: text, model: model || undefined };
    rememberModel(model);
    if (conv) body.conversation_id = conv.id;
    else if (draftSystem.trim()) {
      // A new chat with a system prompt: create it first.
      try {
        const c = await post('/conversations', { system_prompt: draftSystem, model: model || undefined });
        setConv(c);
        convRef.current = c;
        list.upsert(c);
        ownNav.current = c.id;
        navigate('/c/' + c.id);
        body.conversation_id = c.id;
      } catch (e) {
        setError(e);
        inputRef.current?.confabSetText?.(text);
        return;
      }
    }
    const last = messages[messages.length - 1];
    await start({ body, base: messages, userMsg: { content: text, parent_id: last?.id ?? null }, retryText: text });
  };

  const regenerate = (msg) => {
    const c = convRef.current;
    if (!c || busy) return;
    const i = messages.findIndex((m) => m.id === msg.id);
    if (i < 0) return;
    const base = messages.slice(0, i);
    const siblings = msg.sibling_ids || [msg.id];
    start({
      body: { conversation_id: c.id, regenerate_of: msg.id, model: model || undefined },
      base,
      userMsg: null,
    }).then(() => {});
    // Show the coming version number right away.
    setMessages((ms) => ms.map((m) => (m.local && m.role === 'assistant' ? { ...m, sibling_ids: [...siblings, m.id] } : m)));
  };

  const saveEdit = (msg, text) => {
    const c = convRef.current;
    if (!c || busy) return;
    const i = messages.findIndex((m) => m.id === msg.id);
    if (i < 0) return;
    const siblings = msg.sibling_ids || [msg.id];
    start({
      body: { conversation_id: c.id, parent_id: msg.parent_id ?? null, content: text, model: model || undefined },
      base: messages.slice(0, i),
      userMsg: { content: text, parent_id: msg.parent_id ?? null },
    });
    setMessages((ms) => ms.map((m) => (m.local && m.role === 'user' ? { ...m, sibling_ids: [...siblings, m.id] } : m)));
  };

  const switchBranch = async (msg, siblingId) => {
    const c = convRef.current;
    if (!c || !siblingId || busy) return;
    try {
      await patch('/conversations/' + c.id, { current_leaf: siblingId });
      await loadConversation(c.id, { quiet: true });
    } catch (e) {
      setError(e);
    }
  };

  const stop = async () => {
    const g = genRef.current;
    if (!g?.gid) return;
    try {
      await del('/generations/' + encodeURIComponent(g.gid));
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) setError(e);
      else finishStream(convRef.current?.id);
    }
    inputRef.current?.focus();
  };

  // Stable action callbacks for memoized messages.
  const actionsRef = useRef({});
  actionsRef.current = { regenerate, saveEdit, switchBranch, startEdit: (m) => setEditingId(m.id), cancelEdit: () => setEditingId(null) };
  const actions = useMemo(() => ({
    regenerate: (m) => actionsRef.current.regenerate(m),
    saveEdit: (m, t) => actionsRef.current.saveEdit(m, t),
    switchBranch: (m, s) => actionsRef.current.switchBranch(m, s),
    startEdit: (m) => actionsRef.current.startEdit(m),
    cancelEdit: () => actionsRef.current.cancelEdit(),
  }), []);

  // ---- sidebar actions ----
  const newChat = () => {
    setDrawer(false);
    if (convId) navigate('/');
    else {
      closeStream();
      setConv(null);
      setMessages([]);
      setHasMore(false);
      setError(null);
    }
    requestAnimationFrame(() => inputRef.current?.focus());
  };

  const onConvAction = async (c, action, value) => {
    try {
      if (action === 'rename') {
        const u = await patch('/conversations/' + c.id, { title: value });
        list.upsert(u);
        if (conv?.id === c.id) setConv((o) => ({ ...o, title: u.title }));
      } else if (action === 'pin') {
        const u = await patch('/conversations/' + c.id, { pinned: !c.pinned });
        list.upsert(u);
        toast(u.pinned ? 'Pinned' : 'Unpinned');
      } else if (action === 'archive') {
        const u = await patch('/conversations/' + c.id, { archived: !c.archived });
        list.upsert(u);
        if (conv?.id === c.id) setConv((o) => ({ ...o, archived: u.archived }));
        toast(u.archived ? 'Archived' : 'Restored from the archive');
        if (u.archived && conv?.id === c.id) navigate('/');
      } else if (action === 'delete') {
        const ok = await confirmDialog({
          title: 'Delete this conversation?',
          body: `“${plainTitle(c.title)}” and all its messages will be deleted. This cannot be undone.`,
          confirm: 'Delete',
          danger: true,
        });
        if (!ok) return;
        await del('/conversations/' + c.id);
        list.remove(c.id);
        toast('Conversation deleted');
        if (conv?.id === c.id) navigate('/');
      }
    } catch (e) {
      setError(e);
    }
  };

  const changeModel = async (m) => {
    rememberModel(m);
    if (!conv) {
      setDraftModel(m);
      return;
    }
    setConv((c) => ({ ...c, model: m }));
    try {
      const u = await patch('/conversations/' + conv.id, { model: m });
      setConv((c) => ({ ...c, ...u }));
    } catch (e) {
      setError(e);
    }
  };

  const editSystemPrompt = async () => {
    const current = conv ? conv.system_prompt || '' : draftSystem;
    const v = await promptDialog({
      title: 'System prompt',
      body: 'Instructions the model follows throughout this conversation.',
      label: 'System prompt',
      value: current,
      multiline: true,
      placeholder: 'You are a helpful assistant…',
      confirm: 'Save',
    });
    if (v === null) return;
    if (!conv) {
      setDraftSystem(v);
      return;
    }
    try {
      const u = await patch('/conversations/' + conv.id, { system_prompt: v.trim() ? v : null });
      setConv((c) => ({ ...c, ...u }));
      toast('System prompt saved');
    } catch (e) {
      setError(e);
    }
  };

  // ---- keyboard ----
  useEffect(() => {
    const onKey = (e) => {
      const mod = e.ctrlKey || e.metaKey;
      if (mod && !e.shiftKey && e.key.toLowerCase() === 'k') {
        e.preventDefault();
        setDrawer(true);
        requestAnimationFrame(() => {
          searchRef.current?.focus();
          searchRef.current?.select();
        });
      } else if (mod && e.shiftKey && e.key.toLowerCase() === 'o') {
        e.preventDefault();
        newChat();
      } else if (e.key === 'Escape' && !e.defaultPrevented) {
        // The topmost thing only: a dialog handles its own; then the drawer;
        // only when nothing is open does Escape stop the running answer.
        if (document.querySelector('dialog[open]')) return;
        if (drawer && isPhone()) {
          e.preventDefault();
          setDrawer(false);
          requestAnimationFrame(() => inputRef.current?.focus());
          return;
        }
        if (drawer) setDrawer(false);
        if (genRef.current) {
          e.preventDefault();
          stop();
        }
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  useEffect(() => { setDrawer(false); }, [convId]);

  // ---- render ----
  const retryError = () => {
    const r = error?.retry;
    setError(null);
    if (typeof r === 'function') r();
    else if (r === 'regenerate') {
      const last = [...messages].reverse().find((m) => m.role === 'assistant');
      if (last) regenerate(last);
    } else if (convId) loadConversation(convId);
  };

  const empty = !convId && messages.length === 0;
  const systemSet = !!(conv ? conv.system_prompt : draftSystem.trim());

  const modelDown = !!model && down.has(models.items.find((m) => m.id === model)?.provider);
  return html`<div class=${'chat-layout' + (drawer ? ' drawer-open' : '')}>
    <a class="skip-link" href="#message-box" onClick=${(e) => { e.preventDefault(); inputRef.current?.focus(); }}>Skip to the message box</a>
    <${Sidebar} list=${list} activeId=${convId} onNewChat=${newChat} onAction=${onConvAction}
      searchRef=${searchRef} open=${drawer} onClose=${() => setDrawer(false)} onOpenHit=${openHit}
      onLeave=${() => inputRef.current?.focus()} />
    ${drawer && html`<div class="backdrop" aria-hidden="true" onClick=${() => setDrawer(false)}></div>`}
    <main class="chat-main">
      <header class="chat-header">
        <button type="button" class="icon-btn menu-btn" aria-label="Open sidebar" onClick=${() => setDrawer(true)}><${Icon} name="menu" /></button>
        <${HeaderTitle} conv=${conv} fallback=${convId ? '' : 'New chat'} onRename=${(v) => onConvAction(conv, 'rename', v)} />
        ${conv?.archived && html`<span class="badge warn archived-badge">Archived</span>`}
        <div class="header-tools">
          <label class="model-picker">
            <span class="sr-only">Model</span>
            <select aria-label="Model" value=${model} onFocus=${loadHealth} disabled=${busy || models.items.length === 0}
                onChange=${(e) => changeModel(e.target.value)}>
              ${models.items.length === 0 && html`<option value="">No models available</option>`}
              ${models.items.map((m) => html`<option value=${m.id}>${modelLabel(m, down)}</option>`)}
            </select>
            <${Icon} name="chevronDown" size=${14} />
          </label>
          <button type="button" class=${'icon-btn' + (systemSet ? ' on' : '')} aria-label="System prompt" title="System prompt"
            aria-pressed=${systemSet ? 'true' : 'false'} onClick=${editSystemPrompt}><${Icon} name="sliders" /></button>
          <button type="button" class="icon-btn" aria-label="New chat" title="New chat (Ctrl+Shift+O)" onClick=${newChat}><${Icon} name="plus" /></button>
        </div>
      </header>
      <div class="chat-scroll" ref=${scrollRef} onScroll=${onScroll}>
        ${convError
          ? html`<div class="center-pad"><${ErrorBanner} error=${convError} onRetry=${() => loadConversation(convId)} /></div>`
          : loadingConv && messages.length === 0
            ? html`<div class="center-pad"><${Spinner} label="Loading conversation" /></div>`
            : empty
              ? html`<div class="welcome">
                  <${Logo} size=${48} />
                  <h2>How can I help you today?</h2>
                  ${models.items.length === 0 && html`<p class="muted">No model is available yet. An administrator can add a provider in Admin → Providers.</p>`}
                </div>`
              : html`<${Thread} key=${convId || 'new'} messages=${messages} hasMore=${hasMore} olderState=${olderState}
                  onLoadOlder=${loadOlder} busy=${busy} liveStatus=${liveStatus} live=${live}
                  editingId=${editingId} actions=${actions} scrollRef=${scrollRef} stickToBottom=${stickToBottom} />`}
      </div>
      <div class="chat-bottom">
        ${!atBottom && !empty && html`<button type="button" class="scroll-down icon-btn" aria-label="Scroll to the newest message" onClick=${scrollToBottom}><${Icon} name="arrowDown" /></button>`}
        ${conv?.archived && html`<div class="banner note" role="note" data-testid="archived-note">
          <${Icon} name="archive" /><div class="banner-text">This chat is archived: it is hidden from the list of chats.</div>
          <div class="banner-actions"><button type="button" class="btn small" onClick=${() => onConvAction(conv, 'archive')}>Unarchive</button></div>
        </div>`}
        ${modelDown && html`<div class="banner note warn" role="note" data-testid="model-down">
          <${Icon} name="alert" /><div class="banner-text">The provider of ${model} could not be reached at its last check, so answers may fail. Pick another model if they do.</div>
        </div>`}
        ${notice && html`<div class="banner note" role="status">
          <${Icon} name="alert" /><div class="banner-text">${notice}</div>
          <div class="banner-actions"><button type="button" class="icon-btn" aria-label="Dismiss" onClick=${() => setNotice(null)}><${Icon} name="close" size=${16} /></button></div>
        </div>`}
        ${error && html`<${ErrorBanner} error=${error} onDismiss=${() => setError(null)}
            onRetry=${error.retry || convId ? retryError : null} />`}
        <${Composer} inputRef=${inputRef} onSend=${send} onStop=${stop} busy=${busy}
          disabled=${!!convError} />
        <div class="sr-only" role="status" aria-live="polite" data-testid="announcer">${announce}</div>
      </div>
    </main>
  </div>`;
}
