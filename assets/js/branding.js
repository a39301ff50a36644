// The server's branding (GET /api/branding, no sign-in needed): its name in
// the header and the browser title, its logo, its accent colour and the
// sign-in page message. Loaded once at boot and again after an admin
// changes it.

import { useState, useEffect } from './lib.js';
import { get } from './api.js';

const EMPTY = { server_name: null, accent_color: null, sign_in_message: null, logo_url: null };
let current = EMPTY;
const listeners = new Set();

export function branding() {
  return current;
}

/** The name to show: the server's, or confab. */
export function brandName() {
  return current.server_name || 'confab';
}

/** A browser title: "part · name", or the name alone. */
export function pageTitle(part) {
  return part ? `${part} · ${brandName()}` : brandName();
}

export function setBranding(b) {
  current = { ...EMPTY, ...(b || {}) };
  applyAccent(current.accent_color);
  listeners.forEach((f) => f(current));
}

/** Fetches the branding; a failure leaves confab's own look. */
export async function loadBranding() {
  try {
    setBranding(await get('/branding', null, { authRedirect: false }));
  } catch {
    /* confab's own look */
  }
}

/** The branding, re-rendering when it changes. */
export function useBranding() {
  const [b, setB] = useState(current);
  useEffect(() => {
    listeners.add(setB);
    setB(current);
    return () => listeners.delete(setB);
  }, []);
  return b;
}

/** The server's name as text, kept current. */
export function BrandName() {
  const b = useBranding();
  return b.server_name || 'confab';
}

// ---- accent colour ---------------------------------------------------------
// The chosen colour is used as given where it is readable: on light pages it
// is darkened, on dark pages lightened, until text in it reaches 4.5:1
// against the page, and text on it is black or white, whichever reads better.

function parseHex(hex) {
  const m = /^#([0-9a-f]{6})$/i.exec(hex || '');
  if (!m) return null;
  const n = parseInt(m[1], 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function toHex(rgb) {
  return '#' + rgb.map((v) => Math.round(Math.max(0, Math.min(255, v))).toString(16).padStart(2, '0')).join('');
}

function luminance(rgb) {
  const [r, g, b] = rgb.map((v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

export function contrast(a, b) {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

/** Moves `rgb` towards `target` until it reads 4.5:1 against `page`. */
function readableOn(rgb, page, target) {
  let c = rgb;
  for (let i = 0; i < 40 && contrast(c, page) < 4.5; i++) {
    c = c.map((v, k) => v + (target[k] - v) * 0.08);
  }
  return c;
}

function variables(rgb, page, towards, soft) {
  const accent = readableOn(rgb, page, towards);
  const white = [255, 255, 255];
  const black = [0, 0, 0];
  const fg = contrast(accent, white) >= contrast(accent, black) ? '#ffffff' : '#000000';
  return `--accent: ${toHex(accent)}; --accent-fg: ${fg}; --accent-soft: color-mix(in srgb, ${toHex(accent)} ${soft}%, ${toHex(page)});`;
}

function applyAccent(hex) {
  let el = document.getElementById('brand-accent');
  const rgb = parseHex(hex);
  if (!rgb) {
    el?.remove();
    return;
  }
  if (!el) {
    el = document.createElement('style');
    el.id = 'brand-accent';
    document.head.appendChild(el);
  }
  el.textContent = `:root { ${variables(rgb, [255, 255, 255], [0, 0, 0], 12)} }
:root[data-theme="dark"] { ${variables(rgb, [26, 26, 28], [255, 255, 255], 22)} }`;
}
