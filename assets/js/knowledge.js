// Documents answered with sources: the source chips under an answer (each
// opens its passage in a dialog), attaching knowledge collections to a chat
// (a dialog from the chat header), and the Knowledge card of the settings
// (create a collection, add uploaded documents, remove, delete).

import { html, useState, useEffect, useRef, useCallback } from './lib.js';
import { get, post, patch, del } from './api.js';
import { describeError, ErrorBanner, Spinner, confirmDialog, toast, Icon, useModal } from './ui.js';

/** "page 3", "pages 3–4", "lines 10–42", "paragraph 2". */
export function locationOf(s) {
  const range = (what, a, b) => (a == null ? null : b != null && b !== a ? `${what}s ${a}–${b}` : `${what} ${a}`);
  const parts = [
    range('page', s.page_start, s.page_end),
    range('line', s.line_start, s.line_end),
    range('paragraph', s.paragraph_start, s.paragraph_end),
  ].filter(Boolean);
  if (s.whole) parts.push('whole document');
  return parts.join(', ');
}

function SourceDialog({ source, n, onClose }) {
  const [ref, close] = useModal(onClose);
  const where = locationOf(source);
  return html`<dialog ref=${ref} class="dialog source-dialog" aria-labelledby="src-title" aria-describedby="src-where"
      onCancel=${(e) => { e.preventDefault(); close(); }}
      onClick=${(e) => { if (e.target === ref.current) close(); }}>
    <div class="dialog-body">
      <h2 id="src-title"><span class="src-n">[${n}]</span> ${source.name}</h2>
      <p class="muted small" id="src-where">${where || 'Passage'}${source.heading ? ` · under “${source.heading}”` : ''}</p>
      <blockquote class="src-passage" data-testid="source-passage">${source.snippet}</blockquote>
      <div class="dialog-actions">
        <button type="button" class="btn" data-autofocus onClick=${close}>Close</button>
      </div>
    </div>
  </dialog>`;
}

/** The passages an answer was given, as chips; each opens its passage. */
export function SourceChips({ sources }) {
  const [open, setOpen] = useState(null);
  if (!sources || sources.length === 0) return null;
  return html`<div class="sources" role="group" aria-label="Sources">
    <span class="sources-label muted small">Sources</span>
    ${sources.map((s, i) => {
      const where = locationOf(s);
      return html`<button type="button" class="source-chip" aria-haspopup="dialog"
          title=${`${s.name}${where ? ', ' + where : ''}`} onClick=${() => setOpen(i)}>
        <span class="src-n">[${i + 1}]</span>
        <span class="src-name">${s.name}</span>
        ${where && html`<span class="src-where">${where}</span>`}
      </button>`;
    })}
    ${open !== null && sources[open] && html`<${SourceDialog} source=${sources[open]} n=${open + 1} onClose=${() => setOpen(null)} />`}
  </div>`;
}

/**
 * Attach knowledge collections to the open chat: a checkbox per
 * collection; saving sends the whole list (`PATCH /api/conversations/{id}`).
 */
export function CollectionsDialog({ conv, onSaved, onClose }) {
  const [ref, close] = useModal(onClose);
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [chosen, setChosen] = useState(() => new Set(conv?.collections || []));
  const [saving, setSaving] = useState(false);
  useEffect(() => {
    get('/collections').then((r) => setItems(r.items)).catch(setError);
  }, []);
  const save = async (e) => {
    e.preventDefault();
    setSaving(true);
    try {
      const c = await patch(`/conversations/${conv.id}`, { collections: [...chosen] });
      onSaved(c);
      toast(chosen.size ? 'Knowledge attached to this chat' : 'Knowledge detached');
      close();
    } catch (err) {
      setError(err);
    } finally {
      setSaving(false);
    }
  };
  const toggle = (id) => setChosen((s) => {
    const n = new Set(s);
    if (n.has(id)) n.delete(id); else n.add(id);
    return n;
  });
  return html`<dialog ref=${ref} class="dialog collections-dialog" aria-labelledby="kc-title" aria-describedby="kc-intro"
      onCancel=${(e) => { e.preventDefault(); close(); }}
      onClick=${(e) => { if (e.target === ref.current) close(); }}>
    <form class="dialog-body" onSubmit=${save}>
      <h2 id="kc-title">Knowledge for this chat</h2>
      <p class="muted" id="kc-intro">Answers in this chat draw on the documents of the collections you pick, and show their sources.</p>
      ${error && html`<p class="error-text" role="alert">${describeError(error).text}</p>`}
      ${items === null && !error && html`<${Spinner} label="Loading collections" />`}
      ${items && items.length === 0 && html`<p class="muted">No collections yet. Create one in <a href="/settings#knowledge">Settings → Knowledge</a>.</p>`}
      ${items && items.length > 0 && html`<fieldset class="kc-list">
        <legend class="sr-only">Collections</legend>
        ${items.map((c, i) => html`<label class="kc-item">
          <input type="checkbox" data-autofocus=${i === 0 ? true : undefined} checked=${chosen.has(c.id)} onChange=${() => toggle(c.id)} />
          <span class="kc-name">${c.name}</span>
          <span class="muted small">${c.documents.length} ${c.documents.length === 1 ? 'document' : 'documents'}</span>
        </label>`)}
      </fieldset>`}
      <div class="dialog-actions">
        <button type="button" class="btn ghost" data-autofocus=${items && items.length ? undefined : true} onClick=${close}>Cancel</button>
        <button type="submit" class="btn primary" disabled=${saving || !items}>Save</button>
      </div>
    </form>
  </dialog>`;
}

const STATUS = { ready: 'Ready', failed: 'Could not be read', pending: 'Reading…' };

function DocumentRow({ d, onRemove }) {
  const detail = d.status === 'ready'
    ? [d.pages ? `${d.pages} pages` : null, `${d.chunks} ${d.chunks === 1 ? 'passage' : 'passages'}`].filter(Boolean).join(' · ')
    : d.status === 'failed' ? d.error : '';
  return html`<li class="kdoc" data-status=${d.status}>
    <${Icon} name="file" size=${16} />
    <span class="kdoc-name">${d.name}</span>
    <span class=${'badge' + (d.status === 'failed' ? ' warn' : '')}>${STATUS[d.status] || d.status}</span>
    ${detail && html`<span class="muted small kdoc-detail">${detail}</span>`}
    ${d.truncated && html`<span class="muted small">(${d.truncated})</span>`}
    <button type="button" class="icon-btn tiny" aria-label=${'Remove ' + d.name + ' from the collection'} onClick=${onRemove}><${Icon} name="close" size=${15} /></button>
  </li>`;
}

function CollectionItem({ c, files, onChange }) {
  const [pick, setPick] = useState('');
  const [busy, setBusy] = useState(false);
  const inside = new Set(c.documents.map((d) => d.file_id));
  const addable = (files || []).filter((f) => !inside.has(f.id) && !f.mime.startsWith('image/'));
  const change = async (body, message) => {
    setBusy(true);
    try {
      onChange(await patch(`/collections/${c.id}`, body));
      if (message) toast(message);
    } catch (err) {
      toast(describeError(err).text, 'error');
    } finally {
      setBusy(false);
    }
  };
  const remove = async () => {
    if (!await confirmDialog({ title: `Delete the collection “${c.name}”?`, body: 'The documents stay in your files; chats it is attached to stop using it.', confirm: 'Delete', danger: true })) return;
    try {
      await del(`/collections/${c.id}`);
      onChange(null);
      toast('Collection deleted');
    } catch (err) {
      toast(describeError(err).text, 'error');
    }
  };
  const selId = 'kadd-' + c.id;
  return html`<li class="kcol" data-testid="collection">
    <div class="kcol-head">
      <h3>${c.name}</h3>
      <span class="muted small">${c.documents.length} ${c.documents.length === 1 ? 'document' : 'documents'}</span>
      <button type="button" class="btn ghost small danger" onClick=${remove}><${Icon} name="trash" size=${15} />Delete</button>
    </div>
    ${c.documents.length > 0 && html`<ul class="kdocs">${c.documents.map((d) => html`<${DocumentRow} d=${d}
      onRemove=${() => change({ remove: [d.file_id] }, `${d.name} removed`)} />`)}</ul>`}
    <form class="kadd" onSubmit=${(e) => { e.preventDefault(); if (pick) change({ add: [pick] }, 'Document added').then(() => setPick('')); }}>
      <label for=${selId}>Add a document</label>
      <select id=${selId} value=${pick} disabled=${busy || addable.length === 0} onChange=${(e) => setPick(e.target.value)}>
        <option value="">${addable.length ? 'Choose an uploaded file…' : 'No other uploaded documents'}</option>
        ${addable.map((f) => html`<option value=${f.id}>${f.name}</option>`)}
      </select>
      <button type="submit" class="btn small" disabled=${busy || !pick}>Add</button>
    </form>
  </li>`;
}

/** Settings → Knowledge: the caller's collections. */
export function KnowledgeCard({ Card }) {
  const [items, setItems] = useState(null);
  const [files, setFiles] = useState(null);
  const [error, setError] = useState(null);
  const [name, setName] = useState('');
  const [creating, setCreating] = useState(false);
  const load = useCallback(async () => {
    try {
      const [c, f] = await Promise.all([get('/collections'), get('/files', { limit: 200 }).catch(() => ({ items: [] }))]);
      setItems(c.items);
      setFiles(f.items || []);
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, []);
  useEffect(() => { load(); }, [load]);
  // Documents are read in the background: look again while some are pending.
  useEffect(() => {
    if (!items || !items.some((c) => c.documents.some((d) => d.status === 'pending'))) return undefined;
    const t = setTimeout(load, 1500);
    return () => clearTimeout(t);
  }, [items, load]);
  const create = async (e) => {
    e.preventDefault();
    if (!name.trim()) return;
    setCreating(true);
    try {
      const c = await post('/collections', { name: name.trim() });
      setItems((xs) => [...(xs || []), c].sort((a, b) => a.name.localeCompare(b.name)));
      setName('');
      toast('Collection created');
    } catch (err) {
      toast(describeError(err).text, 'error');
    } finally {
      setCreating(false);
    }
  };
  const replace = (id, c) => setItems((xs) => (c ? xs.map((x) => (x.id === id ? c : x)) : xs.filter((x) => x.id !== id)));
  return html`<${Card} title="Knowledge" id="knowledge"
      description="Collections of your uploaded documents. Attach one to a chat (the book button in the chat header) and answers draw on it, with their sources.">
    ${error && html`<${ErrorBanner} error=${error} onRetry=${load} />`}
    <form class="kcreate" onSubmit=${create}>
      <label for="kc-new">New collection</label>
      <input id="kc-new" type="text" maxlength="100" placeholder="e.g. Product manuals" value=${name}
        onInput=${(e) => setName(e.target.value)} />
      <button type="submit" class="btn primary small" disabled=${creating || !name.trim()}>Create</button>
    </form>
    ${items === null && !error && html`<${Spinner} label="Loading collections" />`}
    ${items && items.length === 0 && html`<p class="muted">No collections yet.</p>`}
    ${items && items.length > 0 && html`<ul class="kcols">${items.map((c) => html`<${CollectionItem} key=${c.id} c=${c} files=${files}
      onChange=${(n) => replace(c.id, n)} />`)}</ul>`}
  <//>`;
}
