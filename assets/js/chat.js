// The chat screen: puts together the sidebar (sidebar.js), the header
// (chat-header.js), the shown thread and its paging (chat-thread.js), the
// streaming answer (chat-stream.js), the thread and composer (thread.js);
// it owns the actions: send, stop, regenerate, edit, switch branch, the
// conversation's menu, the model, its settings and the system prompt, and
// the shortcuts.

import { html, useState, useEffect, useLayoutEffect, useRef, useCallback, useMemo } from './lib.js';
import { post, patch, del } from './api.js';
import { navigate } from './router.js';
import { useApp, takeDraft } from './state.js';
import { Icon, Logo, ErrorBanner, confirmDialog, promptDialog, Spinner, toast, plainTitle } from './ui.js';
import { Thread, Composer } from './thread.js';
import { usePendingFiles } from './attachments.js';
import { closeTemporary, closeOnPageHide, TemporaryToggle, TemporaryNote } from './temporary.js';
import { Sidebar, useConversations, isPhone } from './sidebar.js';
import { ChatHeader, useModels, rememberModel } from './chat-header.js';
import { ShareExportDialog } from './transfer.js';
import { useGeneration } from './chat-stream.js';
import { useThread } from './chat-thread.js';
import { pageTitle } from './branding.js';
import { PresetPicker, usePresets } from './presets.js';
import { ModelSettingsDialog, paramsSet as anyParamSet } from './model-settings.js';
import { CollectionsDialog } from './knowledge.js';

export function ChatScreen() {
  const { route, me } = useApp();
  const convId = route.params.id || null;
  const list = useConversations();

  const [error, setError] = useState(null);
  const [editingId, setEditingId] = useState(null);
  const [draftModel, setDraftModel] = useState('');
  const [draftSystem, setDraftSystem] = useState('');
  const [draftPreset, setDraftPreset] = useState(null); // a preset to start the new chat with
  const presets = usePresets();
  // Model settings picked before the first message of a new chat.
  const [draftParams, setDraftParams] = useState(null);
  const [paramsOpen, setParamsOpen] = useState(false);
  const [knowledgeOpen, setKnowledgeOpen] = useState(false);
  const [shareOpen, setShareOpen] = useState(false);
  const [drawer, setDrawer] = useState(false);
  const [atBottom, setAtBottom] = useState(true);
  const [announce, setAnnounce] = useState('');
  const [notice, setNotice] = useState(null);
  // Files attached to the message being written, and a drag over the chat.
  const pending = usePendingFiles();
  const [dragging, setDragging] = useState(false);
  const [temporary, setTemporary] = useState(false);

  const ownNav = useRef(null);
  const inputRef = useRef(null);
  const searchRef = useRef(null);
  const scrollRef = useRef(null);
  const stick = useRef(true);
  const pendingReveal = useRef(null); // {cid, mid}: reveal once that conversation has loaded

  const {
    conv, setConv, convRef, messages, setMessages, messagesRef, hasMore, setHasMore, olderState, loadingConv,
    convError, setConvError, loadConversation, loadOlder, revealMessage, resetPaging, leave,
  } = useThread({ scrollRef, stick, setError, isStreaming: () => !!genRef.current });
  const { models, down, loadHealth, model } = useModels(conv, draftModel);

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
    // Leaving a temporary chat closes it.
    if (convRef.current?.temporary) closeTemporary(convRef.current);
    setEditingId(null);
    setError(null);
    setNotice(null);
    if (convId && ownNav.current === convId) {
      ownNav.current = null;
      return;
    }
    closeStream();
    leave();
    stick.current = true;
    if (!convId) {
      setConv(null);
      setMessages([]);
      setHasMore(false);
      setConvError(null);
      setDraftSystem('');
      setDraftPreset(null);
      setDraftParams(null);
      requestAnimationFrame(() => inputRef.current?.focus());
      return;
    }
    resetPaging();
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
  useEffect(() => closeOnPageHide(() => convRef.current), []); // eslint-disable-line
  // Leaving the chat screen (settings, admin) leaves a temporary chat too.
  useEffect(() => () => closeTemporary(convRef.current), []); // eslint-disable-line

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
    document.title = conv?.title ? pageTitle(plainTitle(conv.title)) : convId ? pageTitle() : pageTitle('New chat');
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
  const { live, busy, liveStatus, genRef, closeStream, resume, start, stop } = useGeneration({
    setMessages, messagesRef, convRef, setConv, list, loadConversation, ownNav, setEditingId, stick, stickToBottom, setError, setAnnounce, inputRef, model,
  });

  const send = async (text) => {
    const body = { content: text, model: model || undefined };
    const attached = pending.attachments();
    if (attached.length) body.attachments = attached.map((a) => a.id);
    rememberModel(model);
    // A new chat's model settings go with its first message (the server
    // keeps them on the conversation it makes).
    if (!conv && draftParams) {
      for (const [k, v] of Object.entries(draftParams)) if (v !== null) body[k] = v;
    }
    if (conv) body.conversation_id = conv.id;
    else if (temporary) {
      body.temporary = true;
      if (draftSystem.trim()) body.system_prompt = draftSystem;
    }
    else if (draftPreset) {
      // The preset sets the model (shown picked), system prompt and settings.
      body.preset_id = draftPreset.id;
      setDraftPreset(null);
    } else if (draftSystem.trim()) {
      // A new chat with a system prompt: create it first.
      try {
        const c = await post('/conversations', { system_prompt: draftSystem, model: model || undefined, ...(draftParams || {}) });
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
    pending.clear();
    await start({ body, base: messages, userMsg: { content: text, parent_id: last?.id ?? null, attachments: attached }, retryText: text });
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
    // An edited message keeps the files the original attached.
    const attached = msg.attachments || [];
    const body = { conversation_id: c.id, parent_id: msg.parent_id ?? null, content: text, model: model || undefined };
    if (attached.length) body.attachments = attached.map((a) => a.id);
    start({
      body,
      base: messages.slice(0, i),
      userMsg: { content: text, parent_id: msg.parent_id ?? null, attachments: attached },
    });
    setMessages((ms) => ms.map((m) => (m.local && m.role === 'user' ? { ...m, sibling_ids: [...siblings, m.id] } : m)));
  };

  const switchBranch = async (msg, siblingId) => {
    const c = convRef.current;
    if (!c || !siblingId || busy) return;
    if (c.temporary) {
      toast('Other versions of a temporary chat cannot be shown.');
      return;
    }
    try {
      await patch('/conversations/' + c.id, { current_leaf: siblingId });
      await loadConversation(c.id, { quiet: true });
    } catch (e) {
      setError(e);
    }
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
    if (convRef.current?.temporary) closeTemporary(convRef.current);
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
    if (c?.temporary) {
      // Only the title can change, on this page.
      if (action === 'rename') setConv((o) => ({ ...o, title: value }));
      return;
    }
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

  const choosePreset = (p) => {
    setDraftPreset(p);
    setDraftSystem('');
    if (p?.model) setDraftModel(p.model);
  };

  const changeModel = async (m) => {
    rememberModel(m);
    if (!conv) {
      setDraftModel(m);
      return;
    }
    setConv((c) => ({ ...c, model: m }));
    // A temporary chat is not stored: each message names its model.
    if (conv.temporary) return;
    try {
      const u = await patch('/conversations/' + conv.id, { model: m });
      setConv((c) => ({ ...c, ...u }));
    } catch (e) {
      setError(e);
    }
  };

  const saveParams = async (p) => {
    if (!conv) {
      setDraftParams(anyParamSet(p) ? p : null);
      toast('Model settings saved for this new chat');
      return;
    }
    const u = await patch('/conversations/' + conv.id, p);
    setConv((c) => ({ ...c, ...u }));
    toast('Model settings saved');
  };

  const editSystemPrompt = async () => {
    if (conv?.temporary) {
      toast('A temporary chat keeps the system prompt it started with.');
      return;
    }
    const current = conv ? conv.system_prompt || '' : draftPreset?.system_prompt || draftSystem;
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
      // A prompt of one's own replaces the preset's.
      setDraftPreset(null);
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
  // A layout effect: the listener must see the drawer as drawn. With a plain
  // effect, an Escape right after the drawer opened could reach the previous
  // listener (drawer closed) and stop the answer instead.
  useLayoutEffect(() => {
    const onKey = (e) => {
      const mod = e.ctrlKey || e.metaKey;
      if (mod && !e.shiftKey && e.key.toLowerCase() === 'k') {
        e.preventDefault();
        setDrawer(true);
        const focusSearch = () => {
          searchRef.current?.focus();
          searchRef.current?.select();
        };
        // On a desktop the box is on screen already: focus it now, so the
        // keys typed next land in it. In a phone's closed drawer it can take
        // focus only once the drawer is drawn.
        if (!isPhone()) focusSearch();
        requestAnimationFrame(focusSearch);
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
          // Now, so that the next Escape (which stops the answer) does not
          // land in the closing drawer's search box; again once drawn.
          inputRef.current?.focus();
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
  const systemSet = !!(conv ? conv.system_prompt : draftPreset?.system_prompt || draftSystem.trim());
  const params = conv ? { temperature: conv.temperature, max_tokens: conv.max_tokens, top_p: conv.top_p } : draftParams;

  const modelDown = !!model && down.has(models.items.find((m) => m.id === model)?.provider);
  // Images for a model that cannot read them: said before sending.
  const shownModel = model || conv?.model || models.default_model;
  const modelInfo = models.items.find((m) => m.id === shownModel);
  const visionBlocked = pending.hasImages && !!modelInfo && !modelInfo.vision;
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  const dropProps = {
    onDragOver: (e) => { if (hasFiles(e)) { e.preventDefault(); if (!dragging) setDragging(true); } },
    onDragLeave: (e) => { if (!e.currentTarget.contains(e.relatedTarget)) setDragging(false); },
    onDrop: (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      setDragging(false);
      pending.add(e.dataTransfer.files);
      inputRef.current?.focus();
    },
  };
  return html`<div class=${'chat-layout' + (drawer ? ' drawer-open' : '')}>
    <a class="skip-link" href="#message-box" onClick=${(e) => { e.preventDefault(); inputRef.current?.focus(); }}>Skip to the message box</a>
    <${Sidebar} list=${list} activeId=${convId} onNewChat=${newChat} onAction=${onConvAction}
      searchRef=${searchRef} open=${drawer} onClose=${() => setDrawer(false)} onOpenHit=${openHit}
      onLeave=${() => inputRef.current?.focus()} />
    ${drawer && html`<div class="backdrop" aria-hidden="true" onClick=${() => setDrawer(false)}></div>`}
    <main class=${'chat-main' + (dragging ? ' drop-target' : '')} ...${dropProps}>
      <${ChatHeader} conv=${conv} convId=${convId} models=${models} down=${down} model=${model} busy=${busy} systemSet=${systemSet}
        paramsSet=${anyParamSet(params)} onModelSettings=${() => setParamsOpen(true)}
        onLoadHealth=${loadHealth} onOpenDrawer=${() => setDrawer(true)} onRename=${(v) => onConvAction(conv, 'rename', v)}
        onChangeModel=${changeModel} onSystemPrompt=${editSystemPrompt} onNewChat=${newChat}
        onKnowledge=${() => setKnowledgeOpen(true)} onShare=${() => setShareOpen(true)} />
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
                  <${PresetPicker} presets=${presets} value=${draftPreset ? draftPreset.id : ''} onChange=${choosePreset} />
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
        ${(conv?.temporary || (!conv && temporary)) && html`<${TemporaryNote} />`}
        ${(!conv || conv.temporary) && html`<${TemporaryToggle} on=${!!conv?.temporary || temporary} locked=${!!conv} setOn=${setTemporary} />`}
        ${visionBlocked && html`<div class="banner note warn" role="alert" data-testid="vision-notice">
          <${Icon} name="eye" /><div class="banner-text">${shownModel} can't read images. Pick a model that reads images (marked with an eye in the model list), or remove the images.</div>
        </div>`}
        <${Composer} inputRef=${inputRef} onSend=${send} onStop=${stop} busy=${busy}
          disabled=${!!convError} pending=${pending} blocked=${visionBlocked} />
        <div class="sr-only" role="status" aria-live="polite" data-testid="announcer">${announce}</div>
      </div>
    </main>
    ${shareOpen && conv && html`<${ShareExportDialog} conv=${conv} onClose=${() => setShareOpen(false)} />`}
    ${knowledgeOpen && conv && html`<${CollectionsDialog} conv=${conv}
      onSaved=${(c) => setConv((old) => (old && old.id === c.id ? { ...old, collections: c.collections } : old))}
      onClose=${() => setKnowledgeOpen(false)} />`}
    ${paramsOpen && html`<${ModelSettingsDialog} key=${conv?.id || 'new'} value=${params}
      onSave=${saveParams} onClose=${() => {
        setParamsOpen(false);
        // Back to the button that opened it, at once: a frame later it could
        // take the focus from the message box the person went on to.
        document.querySelector('.chat-header [aria-label="Model settings"]')?.focus();
      }} />`}
  </div>`;
}
