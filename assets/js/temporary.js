// Temporary chats: kept only in the server's memory, never saved or
// searchable, and closed (forgotten at once) when you leave them: another
// chat, a new chat, or closing the page.

import { html } from './lib.js';
import { del, apiHeaders } from './api.js';
import { Icon } from './ui.js';

/** Forgets a temporary chat on the server; a chat already gone is fine. */
export function closeTemporary(conv) {
  if (!conv?.temporary) return;
  del('/chat/temporary/' + encodeURIComponent(conv.id)).catch(() => {});
}

/** Closes the temporary chat `getConv()` returns when the page goes away. */
export function closeOnPageHide(getConv) {
  const onHide = () => {
    const c = getConv();
    if (!c?.temporary) return;
    // keepalive: the request outlives the page.
    fetch('/api/chat/temporary/' + encodeURIComponent(c.id), {
      method: 'DELETE', keepalive: true, credentials: 'same-origin', headers: apiHeaders('DELETE'),
    }).catch(() => {});
  };
  window.addEventListener('pagehide', onHide);
  return () => window.removeEventListener('pagehide', onHide);
}

/** The switch shown when starting a chat; locked once the chat has begun. */
export function TemporaryToggle({ on, locked, setOn }) {
  return html`<div class="temp-toggle-row"><label class=${'temp-toggle' + (on ? ' on' : '')} data-testid="temporary-toggle">
    <input type="checkbox" role="switch" checked=${on} disabled=${locked}
      aria-describedby=${on ? 'temporary-note' : undefined}
      onChange=${(e) => setOn(e.target.checked)} />
    <${Icon} name="clock" size=${16} /><span>Temporary chat</span>
  </label></div>`;
}

/** Says, while a temporary chat is on, what that means. */
export function TemporaryNote() {
  return html`<div class="banner note temp-note" role="note" id="temporary-note" data-testid="temporary-note">
    <${Icon} name="clock" /><div class="banner-text"><strong>Temporary chat.</strong> Not saved and not searchable; it disappears when you leave it. Usage still counts.</div>
  </div>`;
}
