// The shared page (/s/{token}): a read-only snapshot of one conversation.
// It loads only the snapshot (GET /api/shared/{token}), never the app's
// sidebar, settings or anything else of the viewer or the owner. A
// signed-in viewer may copy it into their own account to continue it.

import { html, render, useState, useEffect } from './lib.js';
import { get, post, setCsrf } from './api.js';
import { renderMarkdown, decorateCodeBlocks } from './markdown.js';

const IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

function size(n) {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
  return (n / 1024 / 1024).toFixed(1) + ' MB';
}

/** A shared message's files, reached through the link only: images shown
 *  (a click opens the full image), other files as downloads. */
function SharedFiles({ files }) {
  if (!files?.length) return null;
  return html`<div class="msg-files share-files">
    ${files.map((a, i) => !a.url
      ? html`<span key=${i} class="msg-file muted">${a.name} (not available)</span>`
      : IMAGES.includes(a.mime)
      ? html`<a key=${i} class="msg-thumb" href=${a.url + '?inline=1'} target="_blank" rel="noopener noreferrer"
            aria-label=${'Open image ' + a.name}>
          <img src=${a.url + '?inline=1'} alt=${a.name} loading="lazy" data-testid="shared-image"
            width=${Math.min(160, a.width || 160)} height=${a.width ? Math.round(Math.min(160, a.width) * (a.height || 120) / a.width) : 120} />
        </a>`
      : html`<a key=${i} class="msg-file" href=${a.url} download=${a.name} data-testid="shared-file">
          <span>${a.name}</span><span class="muted small">${size(a.size)}</span>
        </a>`)}
  </div>`;
}

const token = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');

function describe(e) {
  if (e?.status === 404) return 'This shared conversation does not exist, or its owner stopped sharing it.';
  if (e?.status === 401) return 'This conversation is shared with signed-in users of this server only. Sign in to read it.';
  return e?.message || 'The shared conversation could not be loaded.';
}

function Message({ m }) {
  const ref = (el) => { if (el) decorateCodeBlocks(el); };
  const who = m.role === 'user' ? 'You' : m.role === 'assistant' ? (m.model || 'Assistant') : 'System';
  return html`<article class=${'msg ' + m.role} aria-label=${who}>
    <div class="msg-meta muted small">${m.role === 'user' ? 'User' : who}</div>
    <${SharedFiles} files=${m.attachments} />
    <div class="md" ref=${ref} dangerouslySetInnerHTML=${{ __html: renderMarkdown(m.content) }}></div>
  </article>`;
}

function SharePage() {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [contError, setContError] = useState(null);
  useEffect(() => {
    get('/shared/' + encodeURIComponent(token), null, { authRedirect: false })
      .then((d) => { setData(d); document.title = d.title + ' · shared conversation'; })
      .catch(setError);
  }, []);
  const next = encodeURIComponent(location.pathname);
  const cont = async () => {
    setBusy(true);
    setContError(null);
    try {
      const me = await get('/auth/me', null, { authRedirect: false });
      setCsrf(me.csrf_token);
      const c = await post('/shared/' + encodeURIComponent(token) + '/continue', {}, { authRedirect: false });
      location.href = '/c/' + c.id;
    } catch (e) {
      setContError(e?.status === 401 ? 'Sign in to continue this chat.'
        : e?.code === 'STORAGE_QUOTA_EXCEEDED' ? 'The shared files do not fit in your storage. Delete some of your files (Settings → Files) and try again.'
        : (e?.message || 'The chat could not be copied.'));
      setBusy(false);
    }
  };
  if (error) {
    return html`<main class="share-page">
      <h1>Shared conversation</h1>
      <p class="banner error" role="alert" data-testid="share-error">${describe(error)}</p>
      ${error.status === 401 && html`<p><a class="btn primary" href=${'/login?next=' + next}>Sign in</a></p>`}
    </main>`;
  }
  if (!data) return html`<main class="share-page"><p role="status">Loading…</p></main>`;
  return html`<main class="share-page">
    <header class="share-head">
      <h1 data-testid="share-title">${data.title}</h1>
      <p class="muted small">Shared conversation · ${new Date(data.created_at).toLocaleString()}${data.model ? ' · ' + data.model : ''}</p>
      <div class="share-actions">
        ${data.signed_in
          ? html`<button type="button" class="btn primary" disabled=${busy} onClick=${cont} data-testid="continue-chat">Continue this chat</button>`
          : html`<a class="btn primary" href=${'/login?next=' + next} data-testid="continue-sign-in">Sign in to continue this chat</a>`}
      </div>
      ${contError && html`<p class="error-text small" role="alert">${contError}</p>`}
    </header>
    <div class="share-thread">
      ${data.messages.map((m, i) => html`<${Message} key=${i} m=${m} />`)}
    </div>
  </main>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${SharePage} />`, root);
