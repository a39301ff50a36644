// Attachments: uploading files (the attach button, drag-and-drop, pasted
// images) with progress, the chips of a message being written, the
// thumbnails of a message in the thread with the full image in a dialog,
// and the Files section of Settings.

import { html, useState, useEffect, useRef, useCallback } from './lib.js';
import { apiHeaders, errorFrom, networkError, del } from './api.js';
import { Icon, ErrorBanner, Spinner, confirmDialog, toast, describeError, timeAgo } from './ui.js';
import { Card, useList } from './settings.js';

export const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
const MAX_FILES = 10;

export function isImage(mime) {
  return IMAGE_TYPES.includes(mime);
}

/** `25 MiB`, `1.5 KiB`, `12 bytes`. */
export function humanSize(n) {
  if (n == null) return '';
  const units = [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]];
  for (const [name, size] of units) {
    if (n >= size) {
      const v = n / size;
      return (Number.isInteger(v) ? v : v.toFixed(1)) + ' ' + name;
    }
  }
  return n + (n === 1 ? ' byte' : ' bytes');
}

/**
 * POST /api/files with one file; `onProgress(fraction)` while it is sent.
 * Resolves with the file view, rejects with an ApiError.
 */
export function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/files');
    xhr.withCredentials = true;
    for (const [k, v] of Object.entries(apiHeaders('POST'))) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress?.(e.loaded / e.total); };
    xhr.onload = async () => {
      const res = new Response(xhr.responseText, {
        status: xhr.status,
        headers: { 'content-type': xhr.getResponseHeader('content-type') || 'application/json' },
      });
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(await errorFrom(res));
    };
    xhr.onerror = () => reject(networkError(new Error('network')));
    const form = new FormData();
    form.append('file', file, file.name || 'pasted-image.png');
    xhr.send(form);
  });
}

let seq = 0;

/**
 * The files of the message being written: each uploads as soon as it is
 * added. `items`: {key, name, size, mime, progress, status: uploading | done
 * | error, error, file (the server's view once done), preview (object URL)}.
 */
export function usePendingFiles() {
  const [items, setItems] = useState([]);
  const itemsRef = useRef(items);
  itemsRef.current = items;
  const update = (key, patch) => setItems((list) => list.map((i) => (i.key === key ? { ...i, ...patch } : i)));
  const add = useCallback((files) => {
    const room = MAX_FILES - itemsRef.current.length;
    const list = [...files].slice(0, Math.max(0, room));
    if (files.length > list.length) toast(`A message can carry at most ${MAX_FILES} files.`, 'error');
    for (const f of list) {
      const key = 'f' + ++seq;
      const preview = isImage(f.type) ? URL.createObjectURL(f) : null;
      setItems((l) => [...l, { key, name: f.name || 'pasted image', size: f.size, mime: f.type, progress: 0, status: 'uploading', preview }]);
      uploadFile(f, (p) => update(key, { progress: p }))
        .then((view) => update(key, { status: 'done', progress: 1, file: view, mime: view.mime }))
        .catch((e) => update(key, { status: 'error', error: describeError(e).text }));
    }
  }, []);
  const remove = useCallback((key) => {
    setItems((l) => {
      const gone = l.find((i) => i.key === key);
      if (gone?.preview) URL.revokeObjectURL(gone.preview);
      return l.filter((i) => i.key !== key);
    });
  }, []);
  const clear = useCallback(() => {
    for (const i of itemsRef.current) if (i.preview) URL.revokeObjectURL(i.preview);
    setItems([]);
  }, []);
  useEffect(() => () => { for (const i of itemsRef.current) if (i.preview) URL.revokeObjectURL(i.preview); }, []);
  const done = items.filter((i) => i.status === 'done');
  return {
    items,
    add,
    remove,
    clear,
    uploading: items.some((i) => i.status === 'uploading'),
    failed: items.some((i) => i.status === 'error'),
    hasImages: items.some((i) => isImage(i.file?.mime || i.mime)),
    /** The attachment references to send, and to show in the thread at once. */
    attachments: () => done.map((i) => ({ id: i.file.id, name: i.file.name, mime: i.file.mime, size: i.file.size, width: i.file.width, height: i.file.height })),
  };
}

/** The chips of the files being attached, above the message box. */
export function PendingChips({ pending }) {
  if (!pending.items.length) return null;
  return html`<ul class="attach-chips" aria-label="Attached files">
    ${pending.items.map((i) => html`<li key=${i.key} class=${'attach-chip ' + i.status} data-testid="attach-chip">
      ${i.preview
        ? html`<img class="chip-thumb" src=${i.preview} alt="" />`
        : html`<span class="chip-icon" aria-hidden="true"><${Icon} name="file" size=${16} /></span>`}
      <span class="chip-text">
        <span class="chip-name" title=${i.name}>${i.name}</span>
        <span class="chip-meta">${i.status === 'error'
          ? html`<span class="chip-error" role="alert">${i.error}</span>`
          : i.status === 'uploading'
            ? html`<span>${humanSize(i.size)} · uploading ${Math.round(i.progress * 100)}%</span>`
            : humanSize(i.file?.size ?? i.size)}</span>
        ${i.status === 'uploading' && html`<progress class="chip-progress" max="1" value=${i.progress}
          aria-label=${'Uploading ' + i.name}></progress>`}
      </span>
      <button type="button" class="icon-btn tiny" aria-label=${'Remove ' + i.name} onClick=${() => pending.remove(i.key)}>
        <${Icon} name="close" size=${14} />
      </button>
    </li>`)}
  </ul>`;
}

/** The full image in a dialog; Escape or the button closes it. */
export function ImageDialog({ attachment, onClose }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const closed = () => onClose();
    d?.addEventListener('close', closed);
    return () => d?.removeEventListener('close', closed);
  }, []);
  const label = attachment.name + (attachment.width ? ` (${attachment.width}×${attachment.height})` : '');
  return html`<dialog ref=${ref} class="image-dialog" aria-label=${label} data-testid="image-dialog"
      onClick=${(e) => { if (e.target === ref.current) ref.current.close(); }}>
    <div class="image-dialog-head">
      <span class="image-dialog-name">${label}</span>
      <a class="btn small ghost" href=${`/api/files/${attachment.id}/content`} download=${attachment.name}>Download</a>
      <button type="button" class="icon-btn" aria-label="Close image" onClick=${() => ref.current.close()}><${Icon} name="close" /></button>
    </div>
    <img class="image-full" src=${`/api/files/${attachment.id}/content?inline=1`} alt=${attachment.name} />
  </dialog>`;
}

/** The files of a message in the thread: thumbnails of images (click for
 *  the full image), the name of other files (a download). */
export function MessageFiles({ attachments }) {
  const [open, setOpen] = useState(null);
  const openerRef = useRef(null);
  if (!attachments?.length) return null;
  return html`<div class="msg-files">
    ${attachments.map((a) => isImage(a.mime)
      ? html`<button type="button" key=${a.id} class="msg-thumb" aria-label=${'Open image ' + a.name}
            onClick=${(e) => { openerRef.current = e.currentTarget; setOpen(a); }}>
          <img src=${a.preview || `/api/files/${a.id}/thumbnail`} alt=${a.name} loading="lazy"
            width=${thumbSize(a)[0]} height=${thumbSize(a)[1]} />
        </button>`
      : html`<a key=${a.id} class="msg-file" href=${`/api/files/${a.id}/content`} download=${a.name}>
          <${Icon} name="file" size=${16} /><span>${a.name}</span><span class="muted small">${humanSize(a.size)}</span>
        </a>`)}
    ${open && html`<${ImageDialog} attachment=${open} onClose=${() => { setOpen(null); openerRef.current?.focus(); }} />`}
  </div>`;
}

/** The box a thumbnail takes before it loads (at most 160 px a side). */
function thumbSize(a) {
  const w = a.width || 160;
  const h = a.height || 120;
  const s = Math.min(1, 160 / Math.max(w, h));
  return [Math.max(1, Math.round(w * s)), Math.max(1, Math.round(h * s))];
}

/** Settings → Files: the caller's files, storage used and quota, delete. */
export function FilesCard() {
  const { data, error, load } = useList('/files', { limit: 200 });
  const remove = async (f) => {
    const ok = await confirmDialog({
      title: `Delete “${f.name}”?`,
      body: 'Messages that attached it keep its name, but not its content.',
      confirm: 'Delete',
      danger: true,
    });
    if (!ok) return;
    try {
      await del('/files/' + f.id);
      toast('File deleted');
      load();
    } catch (e) {
      toast(describeError(e).text, 'error');
    }
  };
  const used = data ? humanSize(data.used_bytes) : '';
  const quota = data?.quota_bytes != null ? humanSize(data.quota_bytes) : null;
  return html`<${Card} id="files" title="Files" description="Files you attached to messages. Images are shown to models that read images.">
    ${error && html`<${ErrorBanner} error=${error} onRetry=${load} compact />`}
    ${!data && !error && html`<${Spinner} label="Loading files" />`}
    ${data && html`
      <p class="small" data-testid="storage">${quota ? `${used} of ${quota} used` : `${used} used`} · up to ${humanSize(data.max_file_bytes)} per file</p>
      ${quota && html`<progress class="storage-meter" max=${data.quota_bytes} value=${data.used_bytes} aria-label="Storage used"></progress>`}
      ${data.items.length === 0
        ? html`<p class="muted">No files yet. Attach one to a message with the paperclip, by dropping it on the chat, or by pasting an image.</p>`
        : html`<ul class="file-list">
          ${data.items.map((f) => html`<li key=${f.id} class="file-row">
            ${f.kind === 'image'
              ? html`<img class="file-thumb" src=${`/api/files/${f.id}/thumbnail`} alt="" loading="lazy" />`
              : html`<span class="file-thumb icon" aria-hidden="true"><${Icon} name="file" /></span>`}
            <span class="file-main">
              <a href=${`/api/files/${f.id}/content`} download=${f.name} class="file-name">${f.name}</a>
              <span class="muted small">${humanSize(f.size)} · ${f.mime} · ${timeAgo(f.created_at)}</span>
            </span>
            <button type="button" class="icon-btn" aria-label=${'Delete ' + f.name} onClick=${() => remove(f)}><${Icon} name="trash" /></button>
          </li>`)}
        </ul>`}`}
  <//>`;
}
