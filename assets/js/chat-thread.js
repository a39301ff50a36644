// The shown thread: loading a conversation's newest messages, paging older
// ones in above while keeping the reading position, and revealing a message
// (a search hit) by paging back or switching to the branch that holds it.

import { useState, useRef, useCallback, useLayoutEffect } from './lib.js';
import { get, patch, ApiError } from './api.js';
import { toast } from './ui.js';
import { paintWithin } from './thread.js';

const THREAD_PAGE = 50; // newest messages fetched when a conversation opens
const OLDER_PAGE = 100; // older messages fetched each time the reader nears the top
const HUNT_PAGE = 200; // pages fetched while looking for a search hit's message

/**
 * The conversation shown and its loaded messages. `s`: the scroll container
 * (`scrollRef`) and whether it follows the newest message (`stick`), where
 * to report (`setError`) and whether an answer is streaming
 * (`isStreaming()`: the branch cannot change then).
 */
export function useThread(s) {
  const { scrollRef, stick, setError, isStreaming } = s;
  const [conv, setConv] = useState(null);
  const [messages, setMessages] = useState([]);
  const [hasMore, setHasMore] = useState(false); // older messages of the shown thread not loaded yet
  const [olderState, setOlderState] = useState(null); // null | 'loading' | 'error'
  const [reveal, setReveal] = useState(null); // {id}: scroll to this message once it is rendered
  const [loadingConv, setLoadingConv] = useState(false);
  const [convError, setConvError] = useState(null);

  const convRef = useRef(null);
  convRef.current = conv;
  const messagesRef = useRef(messages);
  messagesRef.current = messages;
  const hasMoreRef = useRef(hasMore);
  hasMoreRef.current = hasMore;
  const olderBusy = useRef(false);
  const anchorRef = useRef(null);
  const revealSeq = useRef(0);
  // Bumped when the person goes to another conversation or a new chat: a
  // load answered after that is dropped (it would show, and send into, the
  // conversation they left).
  const routeSeq = useRef(0);

  // ---- loading a conversation ----
  /**
   * Loads the newest THREAD_PAGE messages of the shown thread. `quiet`: a
   * refresh of what is shown (after an answer, a branch switch), which keeps
   * the older messages already loaded when the new window continues them.
   */
  const loadConversation = useCallback(async (id, { quiet = false } = {}) => {
    const seq = routeSeq.current;
    const current = () => routeSeq.current === seq;
    if (!quiet) setLoadingConv(true);
    try {
      const c = await get('/conversations/' + encodeURIComponent(id), { limit: THREAD_PAGE });
      if (!current()) return null;
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
      if (!quiet && current()) {
        setConv(null);
        setMessages([]);
        setHasMore(false);
        setConvError(e);
      }
      return null;
    } finally {
      if (!quiet && current()) setLoadingConv(false);
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
        if (isStreaming()) {
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

  /** The person left the shown conversation: loads still on their way are dropped. */
  const leave = () => {
    routeSeq.current++;
    setLoadingConv(false);
  };

  /** Forgets the paging of the conversation left (another one opens). */
  const resetPaging = () => {
    revealSeq.current++;
    olderBusy.current = false;
    anchorRef.current = null;
  };

  return {
    conv, setConv, convRef, messages, setMessages, messagesRef, hasMore, setHasMore, olderState, loadingConv,
    convError, setConvError, loadConversation, loadOlder, revealMessage, resetPaging, leave,
  };
}
