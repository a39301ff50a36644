// Model output → marked (GFM, math, highlighted code) → HTML → DOMPurify →
// DOM. Safe by construction:
// - raw HTML in model output is shown as text, never parsed (only <br> in
//   tables is kept), so the only markup is what marked, KaTeX and
//   highlight.js generate;
// - the final HTML is sanitized by DOMPurify anyway;
// - links keep only http(s) and mailto URLs and open in a new tab with
//   rel="noopener noreferrer"; images become links (the CSP blocks remote
//   images, and they would leak the reader's address);
// - KaTeX runs with trust: false (no \href to javascript:, no \htmlStyle…).
// Rendered HTML is cached by text, so re-showing a message costs nothing.

import { Marked } from '../vendor/marked@18.2.1/marked.esm.js';
import DOMPurify from '../vendor/dompurify@3.4.18/purify.es.mjs';

const HLJS_URL = '/vendor/highlight.js@11.12.0/highlight.min.js';
const KATEX_JS = '/vendor/katex@0.19.1/katex.min.js';
const KATEX_CSS = '/vendor/katex@0.19.1/katex.min.css';

let hljs = null;
let katex = null;
let hljsLoading = null;
let katexLoading = null;
/** Bumps when a library arrives, so views re-render what they showed without it. */
export let libsVersion = 0;
const listeners = new Set();
export function onLibsChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
function bump() {
  libsVersion++;
  cache.clear();
  for (const fn of listeners) fn(libsVersion);
}

export function loadHighlighter() {
  hljsLoading ||= import(HLJS_URL).then(
    (m) => {
      hljs = m.default;
      bump();
    },
    () => { hljsLoading = null; },
  );
  return hljsLoading;
}

export function loadKatex() {
  katexLoading ||= new Promise((resolve) => {
    if (!document.querySelector(`link[href="${KATEX_CSS}"]`)) {
      const link = document.createElement('link');
      link.rel = 'stylesheet';
      link.href = KATEX_CSS;
      document.head.append(link);
    }
    // The KaTeX build is UMD: a classic script that defines self.katex.
    const s = document.createElement('script');
    s.src = KATEX_JS;
    s.async = true;
    s.onload = () => {
      katex = window.katex || null;
      bump();
      resolve();
    };
    s.onerror = () => {
      katexLoading = null;
      resolve();
    };
    document.head.append(s);
  });
  return katexLoading;
}

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// ---- math -----------------------------------------------------------------

function renderMath(tex, display) {
  if (!katex) {
    loadKatex();
    const cls = display ? 'math-pending math-display' : 'math-pending';
    return `<code class="${cls}">${escapeHtml(tex)}</code>`;
  }
  try {
    return katex.renderToString(tex, {
      displayMode: display,
      throwOnError: false,
      trust: false,
      strict: 'ignore',
      output: 'htmlAndMathml',
      maxExpand: 1000,
      maxSize: 50,
    });
  } catch {
    return `<code>${escapeHtml(tex)}</code>`;
  }
}

const mathBlock = {
  name: 'mathBlock',
  level: 'block',
  start(src) {
    const m = src.match(/^ {0,3}(\$\$|\\\[)/m);
    return m ? m.index : undefined;
  },
  tokenizer(src) {
    const m = /^ {0,3}\$\$([\s\S]+?)\$\$[ \t]*(?:\n+|$)/.exec(src) || /^ {0,3}\\\[([\s\S]+?)\\\][ \t]*(?:\n+|$)/.exec(src);
    if (m) return { type: 'mathBlock', raw: m[0], text: m[1].trim() };
    return undefined;
  },
  renderer(token) {
    return `<div class="math-block">${renderMath(token.text, true)}</div>\n`;
  },
};

const mathInline = {
  name: 'mathInline',
  level: 'inline',
  start(src) {
    const i = src.search(/\$|\\\(/);
    return i < 0 ? undefined : i;
  },
  tokenizer(src) {
    let m = /^\$\$(?!\$)([\s\S]+?)\$\$/.exec(src);
    if (m) return { type: 'mathInline', raw: m[0], text: m[1].trim(), display: true };
    m = /^\\\(([\s\S]+?)\\\)/.exec(src);
    if (m) return { type: 'mathInline', raw: m[0], text: m[1].trim(), display: false };
    // $x$: no space just inside the dollars, no digit right after the closing
    // one, so "costs $5 and $10" stays text.
    m = /^\$(?![\s$])((?:\\.|[^\\$\n])+?)(?<![\s\\])\$(?!\d)/.exec(src);
    if (m) return { type: 'mathInline', raw: m[0], text: m[1], display: false };
    return undefined;
  },
  renderer(token) {
    return renderMath(token.text, token.display);
  },
};

// ---- code, links, raw HTML -------------------------------------------------

const LANG_RE = /^[A-Za-z0-9_+#.-]{1,32}$/;

function highlight(code, lang) {
  if (!hljs) {
    loadHighlighter();
    return { html: escapeHtml(code), lang };
  }
  try {
    if (lang && hljs.getLanguage(lang)) {
      return { html: hljs.highlight(code, { language: lang, ignoreIllegals: true }).value, lang };
    }
    if (!lang && code.length < 20000) {
      const r = hljs.highlightAuto(code);
      if (r.relevance >= 5) return { html: r.value, lang: '' };
    }
  } catch {
    /* fall through to plain text */
  }
  return { html: escapeHtml(code), lang };
}

const renderer = {
  code({ text, lang }) {
    const raw = (lang || '').trim().split(/\s+/)[0] || '';
    const l = LANG_RE.test(raw) ? raw.toLowerCase() : '';
    const out = highlight(text.replace(/\n$/, ''), l);
    const attr = l ? ` data-lang="${escapeHtml(l)}"` : '';
    const cls = l ? ` language-${escapeHtml(l)}` : '';
    return `<pre${attr}><code class="hljs${cls}">${out.html}</code></pre>\n`;
  },
  html({ text, block }) {
    if (/^<br\s*\/?>$/i.test(text.trim())) return '<br>';
    const shown = escapeHtml(text);
    return block ? `<p class="raw-html">${shown}</p>\n` : shown;
  },
  image({ href, text }) {
    const label = text || href || 'image';
    if (!safeUrl(href)) return escapeHtml(label);
    return `<a href="${escapeHtml(href)}" class="image-link">🖼 ${escapeHtml(label)}</a>`;
  },
};

function safeUrl(href) {
  try {
    const u = new URL(href, 'https://invalid.example/');
    return (u.protocol === 'http:' || u.protocol === 'https:' || u.protocol === 'mailto:') && u.origin !== 'https://invalid.example';
  } catch {
    return false;
  }
}

const marked = new Marked({ gfm: true, breaks: false, async: false });
marked.use({ extensions: [mathBlock, mathInline], renderer });

// ---- sanitizing --------------------------------------------------------------

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName === 'A') {
    const href = node.getAttribute('href');
    if (!href || !safeUrl(href)) {
      node.removeAttribute('href');
    } else {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  }
  if (node.nodeName === 'INPUT' && node.getAttribute('type') !== 'checkbox') node.remove();
  if (node.nodeName === 'INPUT') {
    node.setAttribute('disabled', '');
    // A task-list box: say what it marks (screen readers otherwise read "checkbox").
    const task = (node.parentElement?.textContent || '').trim().slice(0, 120);
    node.setAttribute('aria-label', `${node.hasAttribute('checked') ? 'Done' : 'To do'}${task ? ': ' + task : ''}`);
  }
});

const PURIFY = {
  ADD_ATTR: ['target'],
  FORBID_TAGS: ['style', 'form', 'button', 'textarea', 'select', 'option', 'iframe', 'frame', 'frameset',
    'object', 'embed', 'link', 'meta', 'base', 'template', 'dialog', 'video', 'audio', 'source', 'img', 'picture'],
  FORBID_ATTR: ['id', 'name', 'formaction', 'action', 'srcset', 'ping', 'autofocus', 'tabindex'],
  ALLOW_UNKNOWN_PROTOCOLS: false,
};

/** Sanitize an HTML string (the last step before the DOM). */
export function sanitize(htmlString) {
  return DOMPurify.sanitize(htmlString, PURIFY);
}

// ---- the cache -----------------------------------------------------------------

const CACHE_MAX = 600;
const cache = new Map();

/** Markdown text → sanitized HTML string (cached). */
export function renderMarkdown(text) {
  const key = text;
  const hit = cache.get(key);
  if (hit !== undefined) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  let out;
  try {
    out = sanitize(marked.parse(text));
  } catch {
    out = `<p>${escapeHtml(text)}</p>`;
  }
  cache.set(key, out);
  if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
  return out;
}

// Per message id as well: a thread re-mounting its messages (paging, branch
// switches, a chunk coming back) finds each one's HTML by id without
// re-hashing its text. An entry is only used while the text is unchanged.
const BY_ID_MAX = 4000;
const byId = new Map();

/** Sanitized HTML for message `id` whose markdown is `text` (cached per id). */
export function renderMarkdownFor(id, text) {
  if (!id) return renderMarkdown(text);
  const hit = byId.get(id);
  if (hit && hit.text === text && hit.v === libsVersion) return hit.html;
  const out = renderMarkdown(text);
  byId.delete(id);
  byId.set(id, { text, v: libsVersion, html: out });
  if (byId.size > BY_ID_MAX) byId.delete(byId.keys().next().value);
  return out;
}

/** For streaming text: not cached (each frame differs), same pipeline. */
export function renderMarkdownUncached(text) {
  try {
    return sanitize(marked.parse(text));
  } catch {
    return `<p>${escapeHtml(text)}</p>`;
  }
}

/** Warm the optional libraries once the app is idle. */
export function preloadLibs() {
  const go = () => {
    loadHighlighter();
    loadKatex();
  };
  if ('requestIdleCallback' in window) requestIdleCallback(go, { timeout: 3000 });
  else setTimeout(go, 1500);
}

/** Add the language label and the copy button to each code block of a rendered container. */
export function decorateCodeBlocks(root) {
  for (const pre of root.querySelectorAll('pre')) {
    if (pre.parentElement?.classList.contains('code-block')) continue;
    const wrap = document.createElement('div');
    wrap.className = 'code-block';
    const head = document.createElement('div');
    head.className = 'code-head';
    const label = document.createElement('span');
    label.textContent = pre.dataset.lang || 'text';
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'copy-code';
    btn.setAttribute('aria-label', 'Copy code');
    btn.textContent = 'Copy';
    head.append(label, btn);
    pre.replaceWith(wrap);
    wrap.append(head, pre);
  }
}
