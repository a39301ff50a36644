// The sidebar: the list of conversations (pinned on top, paged as you
// scroll, grouped by date), search with full-text results, and each
// conversation's menu (rename / pin / archive / delete).

import { html, useState, useEffect, useRef, useCallback, useMemo } from './lib.js';
import { get, setCsrf } from './api.js';
import { navigate } from './router.js';
import { useApp } from './state.js';
import { Icon, Logo, ErrorBanner, Spinner, plainTitle, useRenameFocus } from './ui.js';
import { BrandName, brandName } from './branding.js';
import { groupByDate } from './words.js';
import { SearchResults, useMessageSearch, searchOptions, optionId } from './search.js';
import { logout } from './auth.js';

const PAGE_SIZE = 50;
const SEARCH_LIST_ID = 'search-results';

/** The sidebar is a drawer over the chat (app.css, max-width: 820px). */
export const isPhone = () => window.matchMedia('(max-width: 820px)').matches;

export function useConversations() {
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
  const focusBack = useRenameFocus(renaming, inputRef, btnRef);
  const finishRename = async (save) => {
    const v = inputRef.current?.value.trim();
    focusBack();
    setRenaming(false);
    if (save && v && v !== conv.title) await onAction(conv, 'rename', v);
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

export function Sidebar({ list, activeId, onNewChat, onAction, searchRef, open, onClose, onOpenHit, onLeave }) {
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
      <a href="/" class="brand" aria-label=${brandName() + ' home'}><${Logo} size=${26} /><span><${BrandName} /></span></a>
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
