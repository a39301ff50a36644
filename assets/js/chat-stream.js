// The answer being streamed: starting it (POST /api/chat/stream), following
// it (GenerationStream: reconnects with Last-Event-ID), resuming one that
// runs on the server, stopping it, and applying its events to the thread
// (text, usage, the conversation's title, the end).

import { useState, useRef, useMemo } from './lib.js';
import { del, ApiError } from './api.js';
import { ownKeyHeaders } from './own-keys.js';
import { navigate } from './router.js';
import { sending } from './state.js';
import { GenerationStream } from './stream.js';

let localSeq = 0;

/**
 * The chat screen's stream controller. `s` holds what it works on: the
 * thread (setMessages, messagesRef, stick, stickToBottom), the conversation
 * (convRef, setConv, loadConversation, ownNav, setEditingId), the sidebar
 * `list`, the `model` picked, and where to report (setError, setAnnounce,
 * inputRef).
 */
export function useGeneration(s) {
  const { setMessages, messagesRef, convRef, setConv, list, loadConversation, ownNav, setEditingId, stick, stickToBottom, setError, setAnnounce, inputRef, model } = s;
  const [busy, setBusy] = useState(false);
  const [liveStatus, setLiveStatus] = useState('live');
  const streamRef = useRef(null);
  const genRef = useRef(null); // {gid, assistantId}

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

  const closeStream = () => {
    streamRef.current?.close();
    streamRef.current = null;
    genRef.current = null;
    live.key = null;
    setBusy(false);
  };

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
    // A temporary chat is not stored: what streamed is all there is.
    if (convRef.current?.temporary) return;
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
        // The passages of documents this answer is given.
        if (d.sources && d.sources.length) updateLive((m) => ({ ...m, sources: d.sources }));
        if (!convRef.current || convRef.current.id !== d.conversation_id) {
          const now = new Date().toISOString();
          // The model settings the first message carried are the new chat's.
          const p = ctx.body || {};
          const temporary = !!ctx.temporary;
          const c = { id: d.conversation_id, title: temporary ? 'Temporary chat' : 'New chat', model: d.model, system_prompt: ctx.systemPrompt || null, pinned: false, archived: false, created_at: now, updated_at: now, temporary,
            temperature: p.temperature ?? null, max_tokens: p.max_tokens ?? null, top_p: p.top_p ?? null };
          setConv(c);
          convRef.current = c;
          // A temporary chat has no address and is never listed: it lives
          // on this page only.
          if (!temporary) {
            list.upsert(c);
            ownNav.current = d.conversation_id;
            navigate('/c/' + d.conversation_id);
          }
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
        commitLive({ status: d.finish_reason === 'stopped' ? 'interrupted' : 'complete', finish_reason: d.finish_reason, ...(d.sources ? { sources: d.sources } : {}) });
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
    const before = messagesRef.current;
    live.key = tempA;
    live.text = '';
    setMessages([...base, ...added]);
    liveId.current = tempA;
    pending.current = '';
    stick.current = true;
    setBusy(true);
    setLiveStatus('live');
    setAnnounce('');
    const ctx = { cid: body.conversation_id || null, tempAssistant: tempA, tempUser: tempU, body, temporary: !!body.temporary, systemPrompt: body.system_prompt || null };
    const s = new GenerationStream(handlers(ctx));
    streamRef.current = s;
    // Your own key, only for a model whose provider is of the key's kind.
    const headers = await ownKeyHeaders(body.model || model);
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

  return { live, busy, liveStatus, genRef, closeStream, resume, start, stop };
}
