// Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core,
// plus helpers to watch a page for console errors / CSP violations and to
// take screenshots into target/e2e/.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { REPO_ROOT } from './server.mjs';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// The machines have no outside network: keep Chromium from phoning home.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const SCREENSHOT_DIR = path.join(
  process.env.CARGO_TARGET_DIR ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR) : path.join(REPO_ROOT, 'target'),
  'e2e',
);

/** Launch headless Chromium. Extra playwright launch options may be passed. */
export async function launch(options = {}) {
  const { args = [], ...rest } = options;
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    timeout: 60_000,
    ...rest,
  });
}

const CSP_RE = /content security policy/i;

/**
 * Watch a page for problems. Call before the first navigation.
 *
 * Returns a live record:
 *   consoleErrors   console.error / error-level console messages (text + location),
 *                   except those about CSP, which go to cspViolations
 *   pageErrors      uncaught exceptions and unhandled rejections in the page
 *   cspViolations   `securitypolicyviolation` events and console messages mentioning
 *                   Content Security Policy
 *   failedRequests  requests that failed at the network level
 *   problems()      all of the above flattened into readable strings
 *   clear()         forget everything seen so far
 */
export async function watchPage(page) {
  const rec = {
    consoleErrors: [],
    pageErrors: [],
    cspViolations: [],
    failedRequests: [],
    problems() {
      return [
        ...rec.consoleErrors.map((e) => `console error: ${e.text}${e.url ? ` (${e.url})` : ''}`),
        ...rec.pageErrors.map((e) => `page error: ${e}`),
        ...rec.cspViolations.map((v) => `CSP violation: ${typeof v === 'string' ? v : JSON.stringify(v)}`),
        ...rec.failedRequests.map((r) => `request failed: ${r}`),
      ];
    },
    clear() {
      rec.consoleErrors.length = 0;
      rec.pageErrors.length = 0;
      rec.cspViolations.length = 0;
      rec.failedRequests.length = 0;
    },
  };

  page.on('console', (msg) => {
    const text = msg.text();
    if (CSP_RE.test(text)) rec.cspViolations.push(text);
    else if (msg.type() === 'error') rec.consoleErrors.push({ text, url: msg.location()?.url || '' });
  });
  page.on('pageerror', (err) => rec.pageErrors.push(err?.stack || String(err)));
  page.on('requestfailed', (req) => {
    // A navigation superseded by another one is "aborted"; that is not a problem.
    const failure = req.failure()?.errorText || 'unknown';
    if (failure === 'net::ERR_ABORTED') return;
    rec.failedRequests.push(`${req.method()} ${req.url()}: ${failure}`);
  });

  // securitypolicyviolation events, reported back through a binding. Init scripts
  // and bindings are injected over CDP, so the page's own CSP does not block them.
  await page.exposeBinding('__e2eReportCspViolation', (_source, v) => rec.cspViolations.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      // eslint-disable-next-line no-undef
      globalThis.__e2eReportCspViolation({
        violatedDirective: e.violatedDirective,
        effectiveDirective: e.effectiveDirective,
        blockedURI: e.blockedURI,
        sourceFile: e.sourceFile,
        lineNumber: e.lineNumber,
        sample: e.sample,
      });
    });
  });

  return rec;
}

/** Save a full-page screenshot to target/e2e/<name>.png and return its path. */
export async function screenshot(page, name) {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name.replace(/[^A-Za-z0-9._-]+/g, '_')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Alias of watchPage(). */
export const collectErrors = watchPage;

/**
 * Parse a Content-Security-Policy header value into Map<directive, string[]>.
 * (Only the first occurrence of a directive counts, as in browsers.)
 */
export function parseCsp(header) {
  const map = new Map();
  for (const part of String(header ?? '').split(';')) {
    const [name, ...values] = part.trim().split(/\s+/).filter(Boolean);
    if (name && !map.has(name.toLowerCase())) map.set(name.toLowerCase(), values);
  }
  return map;
}

/** The sources that govern scripts: script-src, else default-src, else null (= anything goes). */
export function effectiveScriptSrc(header) {
  const csp = parseCsp(header);
  return csp.get('script-src') ?? csp.get('default-src') ?? null;
}
