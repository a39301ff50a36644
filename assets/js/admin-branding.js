// Admin → Branding: the server's name, logo, accent colour and sign-in
// page message (PATCH /api/admin/branding, PUT/DELETE
// /api/admin/branding/logo). Saved changes apply at once (branding.js).

import { html, useState, useRef } from './lib.js';
import { patch, del, apiHeaders, errorFrom, networkError } from './api.js';
import { Card } from './settings.js';
import { ErrorBanner, toast } from './ui.js';
import { useBranding, setBranding, contrast } from './branding.js';

const MAX_LOGO = 256 * 1024;

async function uploadLogo(file) {
  let res;
  try {
    res = await fetch('/api/admin/branding/logo', {
      method: 'PUT',
      headers: apiHeaders('PUT', { 'Content-Type': 'application/octet-stream' }),
      body: file,
      credentials: 'same-origin',
    });
  } catch (e) {
    throw networkError(e);
  }
  if (!res.ok) throw await errorFrom(res);
  return res.json();
}

export function AdminBranding() {
  const b = useBranding();
  const [v, setV] = useState(() => ({ server_name: b.server_name || '', accent_color: b.accent_color || '', sign_in_message: b.sign_in_message || '' }));
  const [error, setError] = useState(null);
  const [logoError, setLogoError] = useState(null);
  const [busy, setBusy] = useState(false);
  const fileRef = useRef(null);
  const bind = (k) => ({ value: v[k], onInput: (e) => setV((s) => ({ ...s, [k]: e.target.value })) });

  const save = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const nb = await patch('/admin/branding', {
        server_name: v.server_name.trim() || null,
        accent_color: v.accent_color.trim() || null,
        sign_in_message: v.sign_in_message.trim() || null,
      });
      setBranding(nb);
      toast('Branding saved');
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const chooseLogo = async (e) => {
    const file = e.target.files?.[0];
    e.target.value = '';
    if (!file) return;
    setLogoError(null);
    if (file.size > MAX_LOGO) {
      setLogoError(new Error(`The logo is ${Math.ceil(file.size / 1024)} KiB; it must be at most 256 KiB.`));
      return;
    }
    try {
      setBranding(await uploadLogo(file));
      toast('Logo saved');
    } catch (err) {
      setLogoError(err);
    }
  };
  const removeLogo = async () => {
    setLogoError(null);
    try {
      setBranding(await del('/admin/branding/logo'));
      toast('Logo removed');
    } catch (err) {
      setLogoError(err);
    }
  };
  const hex = /^#[0-9a-f]{6}$/i.test(v.accent_color.trim()) ? v.accent_color.trim() : '#0b7a5e';
  const lowContrast = /^#[0-9a-f]{6}$/i.test(v.accent_color.trim()) && contrast(rgb(hex), [255, 255, 255]) < 3;

  return html`<div class="stack">
    <${Card} id="branding" title="Branding" description="How this server presents itself: in the header, the browser title and the sign-in page. Everyone can see these, before signing in too.">
      <form class="stack" onSubmit=${save}>
        <${ErrorBanner} error=${error} compact />
        <label class="field"><span>Server name</span>
          <input maxlength="60" ...${bind('server_name')} placeholder="confab" data-testid="brand-name" /></label>
        <div class="row-form">
          <label class="field grow"><span>Accent colour</span>
            <input maxlength="7" ...${bind('accent_color')} placeholder="#0b7a5e" spellcheck="false" aria-describedby="accent-hint" data-testid="brand-accent" /></label>
          <label class="field color-field"><span class="sr-only">Pick the accent colour</span>
            <input type="color" value=${hex} onInput=${(e) => setV((s) => ({ ...s, accent_color: e.target.value }))} /></label>
        </div>
        <small id="accent-hint" class="muted">A hex colour like #3b82f6. It is darkened or lightened where needed so text stays readable in both themes.${lowContrast ? ' This one is very light: buttons will use dark text.' : ''}</small>
        <label class="field"><span>Sign-in page message</span>
          <textarea rows="3" maxlength="1000" ...${bind('sign_in_message')} placeholder="Welcome! Ask IT for an account." data-testid="brand-message"></textarea></label>
        <div><button type="submit" class="btn primary" disabled=${busy}>Save branding</button></div>
      </form>
    <//>
    <${Card} id="logo" title="Logo" description="A PNG, JPEG, GIF or WebP image of at most 256 KiB, square at best. It replaces confab's logo in the header and on the sign-in page.">
      <${ErrorBanner} error=${logoError} compact />
      <div class="logo-row">
        ${b.logo_url ? html`<img class="logo-preview" src=${b.logo_url} width="48" height="48" alt="Current logo" />` : html`<span class="muted small">No logo: confab's own is shown.</span>`}
        <input ref=${fileRef} type="file" accept="image/png,image/jpeg,image/gif,image/webp" class="sr-only" id="logo-file" aria-label="Logo image file" tabindex="-1" onChange=${chooseLogo} data-testid="logo-file" />
        <button type="button" class="btn" onClick=${() => fileRef.current?.click()}>${b.logo_url ? 'Replace logo' : 'Upload logo'}</button>
        ${b.logo_url && html`<button type="button" class="btn danger-outline" onClick=${removeLogo}>Remove logo</button>`}
      </div>
    <//>
  </div>`;
}

function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
