// Moving in and out: export one chat (Markdown, JSON, print view) and share
// it (ShareExportDialog, from the chat header); in Settings, export
// everything, import from confab, ChatGPT, Claude, Open WebUI or LibreChat
// with a progress bar and the report (the job is found again after a page
// reload), delete every chat, and the list of shared links.

import { html, useState, useEffect, useRef, useCallback } from './lib.js';
import { get, post, del, apiHeaders, errorFrom } from './api.js';
import { describeError, ErrorBanner, Spinner, confirmDialog, toast, timeAgo, CopyButton, useModal } from './ui.js';

/** Export and share one conversation. */
export function ShareExportDialog({ conv, onClose }) {
  const [ref, close] = useModal(onClose);
  const [signedInOnly, setSignedInOnly] = useState(false);
  const [share, setShare] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const base = `/api/conversations/${conv.id}/export`;
  const create = async () => {
    setBusy(true);
    setError(null);
    try {
      setShare(await post(`/conversations/${conv.id}/shares`, { signed_in_only: signedInOnly }));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async () => {
    try {
      await del('/shares/' + share.id);
      setShare(null);
      toast('Link revoked: it no longer opens the conversation');
    } catch (e) {
      setError(e);
    }
  };
  const print = () => { close(); requestAnimationFrame(() => window.print()); };
  return html`<dialog ref=${ref} class="dialog share-dialog" aria-labelledby="se-title"
      onCancel=${(e) => { e.preventDefault(); close(); }}
      onClick=${(e) => { if (e.target === ref.current) close(); }}>
    <div class="dialog-body">
      <h2 id="se-title">Share and export</h2>
      <h3 class="small-head">Export this chat</h3>
      <div class="row-actions">
        <a class="btn" href=${base + '?format=markdown'} download data-testid="export-markdown" data-autofocus>Markdown</a>
        <a class="btn" href=${base + '?format=json'} download data-testid="export-json">JSON</a>
        <button type="button" class="btn" onClick=${print} data-testid="export-print">Print or save as PDF</button>
      </div>
      <h3 class="small-head">Share a link</h3>
      <p class="muted small">Anyone with the link sees the messages shown now (this branch), not later ones, and nothing else of yours. You can revoke it in Settings → Shared links.</p>
      ${error && html`<p class="error-text" role="alert">${describeError(error).text}</p>`}
      ${share
        ? html`<div class="share-link">
            <input class="grow" readonly value=${share.url} aria-label="Shared link" data-testid="share-url" onFocus=${(e) => e.target.select()} />
            <${CopyButton} text=${share.url} label="Copy link">Copy<//>
            <button type="button" class="btn small danger-outline" onClick=${revoke}>Revoke</button>
          </div>`
        : html`<div class="row-actions">
            <label class="check"><input type="checkbox" checked=${signedInOnly} onChange=${(e) => setSignedInOnly(e.target.checked)} />Only signed-in users of this server</label>
            <button type="button" class="btn primary" disabled=${busy} onClick=${create} data-testid="create-share">Create link</button>
          </div>`}
      <div class="dialog-actions">
        <button type="button" class="btn ghost" onClick=${close}>Close</button>
      </div>
    </div>
  </dialog>`;
}

/** Sends the file to POST /api/imports, reporting upload progress (0–1). */
function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('POST', '/api/imports?name=' + encodeURIComponent(file.name));
    const h = apiHeaders('POST', { 'Content-Type': file.name.endsWith('.zip') ? 'application/zip' : 'application/octet-stream' });
    for (const [k, v] of Object.entries(h)) x.setRequestHeader(k, v);
    x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    x.onload = async () => {
      const res = new Response(x.responseText, { status: x.status, headers: { 'content-type': 'application/json' } });
      if (x.status >= 200 && x.status < 300) resolve(JSON.parse(x.responseText));
      else reject(await errorFrom(res));
    };
    x.onerror = () => reject(new Error('The upload failed. Check your connection and try again.'));
    x.send(file);
  });
}

function Report({ job }) {
  const [open, setOpen] = useState(false);
  const r = job.report;
  if (!r && job.status === 'interrupted') {
    return html`<div class="import-report" data-testid="import-report">
      <p role="status">Interrupted: <strong>${job.imported}</strong> ${job.imported === 1 ? 'conversation' : 'conversations'} imported, <strong>${job.skipped}</strong> skipped.</p>
      <p class="error-text" role="alert" data-testid="import-error">${job.error}</p>
    </div>`;
  }
  if (!r) return job.error ? html`<p class="error-text" role="alert" data-testid="import-error">${job.error}</p>` : null;
  return html`<div class="import-report" data-testid="import-report">
    <p role="status"><strong>${r.imported.length}</strong> ${r.imported.length === 1 ? 'conversation' : 'conversations'} imported, <strong>${r.skipped.length}</strong> skipped${r.files_imported ? `, ${r.files_imported} files` : ''}.</p>
    ${job.error && html`<p class="error-text" role="alert" data-testid="import-error">${job.error}</p>`}
    ${(r.imported.length + r.skipped.length) > 0 && html`<button type="button" class="btn small ghost" aria-expanded=${open ? 'true' : 'false'} onClick=${() => setOpen(!open)}>${open ? 'Hide details' : 'Show details'}</button>`}
    ${open && html`<ul class="rows compact">
      ${r.imported.map((i) => html`<li class="row" key=${'i' + i.id}><div class="row-main"><a href=${'/c/' + i.id}>${i.title}</a> <span class="muted small">${i.messages} messages${i.format ? ' · ' + i.format : ''}</span></div></li>`)}
      ${r.skipped.map((s, n) => html`<li class="row" key=${'s' + n}><div class="row-main"><span>${s.title || s.source_id || 'Untitled'}</span> <span class="muted small">skipped: ${s.reason}</span></div></li>`)}
    </ul>`}
  </div>`;
}

/** Export everything, import, delete every chat. */
export function DataCard({ Card }) {
  const [job, setJob] = useState(null);
  const [sending, setSending] = useState(null); // upload progress 0–1
  const [error, setError] = useState(null);
  const fileRef = useRef(null);
  const timer = useRef(null);
  const poll = useCallback((id) => {
    clearTimeout(timer.current);
    get('/imports/' + id).then((j) => {
      setJob(j);
      if (j.status === 'running') timer.current = setTimeout(() => poll(id), 500);
      else if (j.status === 'done') toast(`Import finished: ${j.imported} imported, ${j.skipped} skipped`);
    }).catch(setError);
  }, []);
  // The newest import, running or finished, survives a page reload.
  useEffect(() => {
    get('/imports').then((r) => {
      const j = r.items[0];
      if (j) { setJob(j); if (j.status === 'running') poll(j.id); }
    }).catch(() => {});
    return () => clearTimeout(timer.current);
  }, [poll]);
  const start = async (e) => {
    const f = e.target.files?.[0];
    e.target.value = '';
    if (!f) return;
    setError(null);
    setJob(null);
    setSending(0);
    try {
      const j = await upload(f, setSending);
      setSending(null);
      setJob(j);
      poll(j.id);
    } catch (err) {
      setSending(null);
      setError(err);
    }
  };
  const removeAll = async () => {
    if (!await confirmDialog({ title: 'Delete every chat?', body: 'All your conversations, archived ones too, and their shared links are deleted for good. Export them first if you may want them back.', confirm: 'Delete all chats', danger: true })) return;
    try {
      const r = await del('/conversations?confirm=all');
      toast(`${r.deleted} ${r.deleted === 1 ? 'chat' : 'chats'} deleted`);
    } catch (err) {
      toast(describeError(err).text, 'error');
    }
  };
  const pct = (v) => Math.round(v * 100);
  return html`<${Card} id="data" title="Your data" description="Export your chats, bring your history from another chat app, or delete it.">
    <div class="row-actions">
      <a class="btn" href="/api/export" download data-testid="export-all">Export all chats</a>
      <button type="button" class="btn" onClick=${() => fileRef.current?.click()} disabled=${sending !== null || job?.status === 'running'} data-testid="import-button">Import chats…</button>
      <input ref=${fileRef} type="file" accept=".json,.zip,application/json,application/zip" class="sr-only" tabindex="-1" aria-label="Export file to import" data-testid="import-file" onChange=${start} />
      <button type="button" class="btn danger-outline" onClick=${removeAll} data-testid="delete-all">Delete all chats</button>
    </div>
    <p class="muted small">Import takes a confab export, a ChatGPT or Claude data export (the zip or its conversations.json), or an Open WebUI or LibreChat export. Importing the same file again adds only what is missing.</p>
    <${ErrorBanner} error=${error} compact />
    ${sending !== null && html`<div class="import-progress"><label>Uploading… ${pct(sending)}%
      <progress max="100" value=${pct(sending)} data-testid="import-upload-progress"></progress></label></div>`}
    ${job && html`<div class="import-progress">
      ${job.status === 'running' && html`<label>Importing ${job.file_name || ''}… ${pct(job.progress)}% · ${job.imported} imported
        <progress max="100" value=${pct(job.progress)} data-testid="import-progress"></progress></label>`}
      ${job.status !== 'running' && html`<${Report} job=${job} />`}
    </div>`}
  <//>`;
}

/** The links the user shared, each revocable. */
export function SharesCard({ Card }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const load = useCallback(() => get('/shares').then((r) => setItems(r.items)).catch(setError), []);
  useEffect(() => { load(); }, [load]);
  const revoke = async (s) => {
    if (!await confirmDialog({ title: `Stop sharing “${s.title}”?`, body: 'The link stops working at once.', confirm: 'Revoke link', danger: true })) return;
    try { await del('/shares/' + s.id); toast('Link revoked'); load(); } catch (e) { toast(describeError(e).text, 'error'); }
  };
  return html`<${Card} id="shares" title="Shared links" description="Read-only snapshots of chats you shared. Anyone with a link can read it unless it is for signed-in users only.">
    <${ErrorBanner} error=${error} onRetry=${load} compact />
    ${!items && !error && html`<${Spinner} />`}
    ${items && (items.length === 0
      ? html`<p class="muted small">You have not shared any chat. Share one from its header (Share and export).</p>`
      : html`<ul class="rows" data-testid="shares-list">${items.map((s) => html`<li class="row" key=${s.id}>
          <div class="row-main"><a href=${s.url} target="_blank" rel="noopener noreferrer">${s.title}</a>
            <div class="muted small">${s.signed_in_only ? 'Signed-in users only' : 'Anyone with the link'} · shared ${timeAgo(s.created_at)}</div></div>
          <${CopyButton} text=${s.url} label=${'Copy link to ' + s.title}>Copy<//>
          <button type="button" class="btn small danger-outline" aria-label=${'Revoke link to ' + s.title} onClick=${() => revoke(s)}>Revoke</button>
        </li>`)}</ul>`)}
  <//>`;
}
