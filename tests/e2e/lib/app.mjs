// A confab server wired to the fake upstream, plus helpers the browser tests
// share: the admin account, signing in a browser context, API calls from node.

import { mkdtemp, writeFile, rm, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer, REPO_ROOT } from './server.mjs';
import { startUpstream } from './upstream.mjs';

export const ADMIN = { username: 'admin', password: 'correct horse battery' };

/** The fake's default answer (tests/it/common_upstream DEFAULT_REPLY). */
export const DEFAULT_REPLY = 'Hello from the fake upstream! This answer arrives token by token.';

export const MODELS = ['fake-model', 'fake-model-2', 'fake-model+slow', 'long+slow', 'xss', 'markdown'];

/**
 * Start the fake upstream and confab (config file with one openai provider
 * pointing at it). options.setup: create the admin through the API (default true).
 * Resolves to {url, upstream, server, api(method, path, body), cookieHeader, stop()}.
 */
export async function startApp({ replies = {}, setup = true, registration = 'open', extraConfig = '' } = {}) {
  const upstream = await startUpstream({ replies });
  const dir = await mkdtemp(path.join(tmpdir(), 'confab-e2e-cfg-'));
  const config = path.join(dir, 'confab.toml');
  await writeFile(config, [
    'detect_local_providers = false',
    `registration = "${registration}"`,
    'allow_user_keys = true',
    extraConfig,
    '[auth]',
    'login_per_ip_per_minute = 10000',
    'login_burst = 10000',
    'login_failures_per_account_per_hour = 10000',
    '',
    '[[providers]]',
    'kind = "openai"',
    'name = "fake"',
    `base_url = "${upstream.openaiBase}"`,
    'api_key = "sk-test-0123456789"',
    `models = ${JSON.stringify(MODELS)}`,
    '',
  ].join('\n'));
  let server;
  try {
    server = await startServer({ globalArgs: ['--config', config] });
  } catch (e) {
    await upstream.stop();
    throw e;
  }
  const app = {
    url: server.url,
    server,
    upstream,
    cookie: null,
    csrf: null,
    async stop() {
      await server.stop();
      await upstream.stop();
      await rm(dir, { recursive: true, force: true });
    },
    /** API call from node with the admin's session (after setup). */
    async api(method, p, body, headers = {}) {
      const res = await fetch(server.url + '/api' + p, {
        method,
        headers: {
          ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
          ...(app.cookie ? { Cookie: app.cookie } : {}),
          ...(app.csrf && method !== 'GET' ? { 'X-CSRF-Token': app.csrf } : {}),
          ...headers,
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      let json = null;
      try { json = text ? JSON.parse(text) : null; } catch { json = text; }
      if (!res.ok) throw new Error(`${method} ${p} → ${res.status} ${text}`);
      return json;
    },
  };
  if (setup) {
    const token = new URL(server.setupUrl).searchParams.get('token');
    const res = await fetch(server.url + '/api/setup', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token, ...ADMIN }),
    });
    if (res.status !== 201) throw new Error(`setup failed: ${res.status} ${await res.text()}`);
    app.csrf = (await res.json()).csrf_token;
    app.cookie = res.headers.get('set-cookie').split(';')[0];
  }
  return app;
}

/** Sign in through the login page; resolves once the chat screen shows. */
export async function signIn(page, url, { username = ADMIN.username, password = ADMIN.password, next = '' } = {}) {
  await page.goto(url + '/login' + (next ? '?next=' + encodeURIComponent(next) : ''));
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();
}

/**
 * Picks `id` in the chat's model picker as a person would: open it, type to
 * search, click the option.
 */
export async function pickModel(page, id) {
  await page.getByRole('button', { name: /^Model\b(?! settings)/ }).click();
  await page.getByRole('combobox', { name: 'Search models' }).fill(id);
  await page.locator(`[role=option][data-model="${id}"]`).first().click();
  await page.getByRole('listbox', { name: 'Models' }).waitFor({ state: 'detached' });
}

/** Console noise a browser prints for expected HTTP errors (e.g. 401 before sign-in). */
export function unexpectedProblems(watch, allow = []) {
  const ok = [/Failed to load resource: the server responded with a status of 401/, ...allow];
  return watch.problems().filter((p) => !ok.some((re) => re.test(p)));
}

/** A browser context that fails fast (15 s per action instead of 30). */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(15_000);
  if (process.env.CONFAB_E2E_ASSETS_FROM_DISK) await serveAssetsFromDisk(context);
  return context;
}

/**
 * Development aid (CONFAB_E2E_ASSETS_FROM_DISK=1): answer the app's own .js/.css
 * requests from assets/ on disk instead of the copy embedded in the binary, so
 * front-end changes can be tried without rebuilding. The server's response
 * headers (CSP, content type) are kept; only the body is replaced. tests/run.sh
 * never sets it: the suite always tests what the binary embeds.
 */
async function serveAssetsFromDisk(context) {
  const root = path.join(REPO_ROOT, 'assets');
  await context.route(/^http:\/\/127\.0\.0\.1:\d+\/(?!api\/)[^?#]*\.(?:js|mjs|css)(?:[?#].*)?$/, async (route) => {
    const file = path.join(root, decodeURIComponent(new URL(route.request().url()).pathname));
    if (!file.startsWith(root + path.sep) || !existsSync(file)) return route.continue();
    const res = await route.fetch();
    const headers = { ...res.headers() };
    for (const h of ['content-encoding', 'content-length', 'etag', 'cache-control', 'vary']) delete headers[h];
    headers['content-type'] = file.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8';
    return route.fulfill({ status: 200, headers: { ...headers, 'cache-control': 'no-store' }, body: await readFile(file) });
  });
}
