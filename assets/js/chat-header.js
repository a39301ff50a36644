// The chat header: the conversation's title (click to rename), the model
// picker (model-picker.js: searchable, unreachable models marked), the model
// settings, system prompt and new-chat buttons. The models and providers' health are
// loaded here (useModels).

import { html, useState, useEffect, useRef, useCallback } from './lib.js';
import { get } from './api.js';
import { Icon, plainTitle, useRenameFocus } from './ui.js';
import { ModelPicker } from './model-picker.js';

const MODEL_KEY = 'confab.model';

function storedModel() {
  try { return localStorage.getItem(MODEL_KEY) || ''; } catch { return ''; }
}
/** The model picked last, offered first next time. */
export function rememberModel(m) {
  try { if (m) localStorage.setItem(MODEL_KEY, m); } catch { /* ignore */ }
}

/**
 * The models offered and the one in use: the conversation's, else the one
 * picked for a new chat (`draftModel`), else the last picked, else the
 * server's default.
 */
export function useModels(conv, draftModel) {
  const [models, setModels] = useState({ items: [], default_model: null });
  // Models, once; the providers' health now and then (a check runs every
  // minute on the server), to mark the models of unreachable ones.
  const [down, setDown] = useState(() => new Set());
  const loadHealth = useCallback(() => {
    get('/providers').then((r) => {
      setDown(new Set(r.items.filter((p) => p.enabled && !p.reachable && p.last_error).map((p) => p.name)));
    }).catch(() => {});
  }, []);
  useEffect(() => {
    get('/models', { use: 'chat' }).then(setModels).catch(() => {});
    loadHealth();
    const t = setInterval(loadHealth, 60000);
    return () => clearInterval(t);
  }, [loadHealth]);

  const modelIds = models.items.map((m) => m.id);
  const pick = (m) => (m && (modelIds.length === 0 || modelIds.includes(m)) ? m : '');
  const model = pick(conv?.model) || pick(draftModel) || pick(storedModel()) || models.default_model || modelIds[0] || '';
  return { models, down, loadHealth, model };
}

/** The title in the header: a button that turns into a field to rename it. */
function HeaderTitle({ conv, fallback, onRename }) {
  const [editing, setEditing] = useState(false);
  const inputRef = useRef(null);
  const btnRef = useRef(null);
  const focusBack = useRenameFocus(editing, inputRef, btnRef);
  useEffect(() => { setEditing(false); }, [conv?.id]);
  const title = conv ? plainTitle(conv.title) : fallback;
  if (!conv) return html`<h1 class="chat-title">${fallback}</h1>`;
  const finish = async (save) => {
    const v = inputRef.current?.value.trim();
    focusBack();
    setEditing(false);
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

/** The header of the chat: menu button, title, model picker and tools. */
export function ChatHeader({ conv, convId, models, down, model, busy, systemSet, paramsSet, onLoadHealth, onOpenDrawer, onRename, onChangeModel, onModelSettings, onSystemPrompt, onNewChat, onKnowledge, onShare }) {
  const knowledgeOn = (conv?.collections || []).length > 0;
  return html`<header class="chat-header">
        <button type="button" class="icon-btn menu-btn" aria-label="Open sidebar" onClick=${onOpenDrawer}><${Icon} name="menu" /></button>
        <${HeaderTitle} conv=${conv} fallback=${convId ? '' : 'New chat'} onRename=${onRename} />
        ${conv?.archived && html`<span class="badge warn archived-badge">Archived</span>`}
        <div class="header-tools">
          <${ModelPicker} models=${models} model=${model} down=${down} disabled=${busy} onOpen=${onLoadHealth} onChange=${onChangeModel} />
          <button type="button" class=${'icon-btn' + (paramsSet ? ' on' : '')} aria-label="Model settings" title="Model settings"
            aria-haspopup="dialog" aria-pressed=${paramsSet ? 'true' : 'false'} onClick=${onModelSettings}><${Icon} name="gauge" /></button>
          ${conv && !conv.temporary && html`<button type="button" class=${'icon-btn' + (knowledgeOn ? ' on' : '')} aria-label="Knowledge" title="Knowledge"
            aria-haspopup="dialog" aria-pressed=${knowledgeOn ? 'true' : 'false'} onClick=${onKnowledge}><${Icon} name="book" /></button>`}
          <button type="button" class=${'icon-btn' + (systemSet ? ' on' : '')} aria-label="System prompt" title="System prompt"
            aria-pressed=${systemSet ? 'true' : 'false'} onClick=${onSystemPrompt}><${Icon} name="sliders" /></button>
          ${conv && !conv.temporary && html`<button type="button" class="icon-btn" aria-label="Share and export" title="Share and export"
            aria-haspopup="dialog" onClick=${onShare} data-testid="share-export"><${Icon} name="link" /></button>`}
          <button type="button" class="icon-btn" aria-label="New chat" title="New chat (Ctrl+Shift+O)" onClick=${onNewChat}><${Icon} name="plus" /></button>
        </div>
      </header>`;
}
