// A real OpenID Connect provider for confab's tests: the certified
// `oidc-provider` package (installed in tests/e2e/node_modules), configured
// with one confidential client that must use PKCE, a few accounts and a
// login page. The test that starts it controls it over a small test-only
// API on the same port:
//
//   POST /__test/mode?id_token=MODE  re-sign the next ID tokens with MODE:
//        normal | wrong_audience | expired | wrong_nonce
//        (re-signed with the provider's own key: only the claim differs)
//
// Usage: node provider.mjs PORT REDIRECT_URI [KEY_GENERATION]
// A new KEY_GENERATION (restart on the same port) is a rotated signing key:
// the JWKS then lists the new key first and the old one after it.
// Prints "READY <issuer>" on stdout when it listens.

import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, '..', 'e2e', 'node_modules');
const { default: Provider } = await import(pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href);
const jose = await import(pathToFileURL(path.join(modules, 'jose', 'dist', 'webapi', 'index.js')).href);

const [port, redirectUri, generation = '1'] = process.argv.slice(2);
if (!port || !redirectUri) {
  console.error('usage: node provider.mjs PORT REDIRECT_URI [KEY_GENERATION]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

// Deterministic per generation is not needed: each generation is a fresh
// key with its own kid; generation N also publishes N-1's kid so tokens
// signed before a rotation would still verify.
async function key(gen) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid: `gen-${gen}`, alg: 'RS256', use: 'sig' };
}
const current = await key(generation);
const keys = [current];
if (Number(generation) > 1) keys.push(await key(Number(generation) - 1));

// Accounts: sub → claims.
const accounts = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Admin', groups: ['confab-users', 'confab-admins'] },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob', groups: ['confab-users'] },
  carol: { email: 'carol@elsewhere.test', email_verified: true, name: 'Carol', groups: [] },
  dave: { email: 'dave@example.com', email_verified: false, name: 'Dave', groups: [] },
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'confab',
    client_secret: 'confab-test-secret-0123456789abcdef',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: true,
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['confab-test-cookie-key'] },
  ttl: { IdToken: 600, AccessToken: 600, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
  async findAccount(ctx, id) {
    const a = accounts[id];
    if (!a) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, ...a };
      },
    };
  },
});

let mode = 'normal';

// Re-signs the ID token of a token response, changing one claim, with the
// provider's own current key (what a provider with that bug would send).
async function tamper(body) {
  if (mode === 'normal' || !body || typeof body.id_token !== 'string') return body;
  const claims = jose.decodeJwt(body.id_token);
  const now = Math.floor(Date.now() / 1000);
  if (mode === 'wrong_audience') claims.aud = 'someone-else';
  if (mode === 'expired') { claims.iat = now - 7200; claims.exp = now - 3600; }
  if (mode === 'wrong_nonce') claims.nonce = 'not-the-nonce-confab-sent';
  const signingKey = await jose.importJWK(current, 'RS256');
  body.id_token = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: current.kid, typ: 'JWT' })
    .sign(signingKey);
  return body;
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/mode' && ctx.method === 'POST') {
    mode = ctx.query.id_token || 'normal';
    ctx.body = { mode };
    return;
  }
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (m && ctx.method === 'GET') {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    ctx.type = 'html';
    ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test provider sign-in</title></head>
<body><main><h1>Test provider</h1>
<form method="post" action="/interaction/${details.uid}">
<label for="login">Account</label> <input id="login" name="login" autocomplete="username">
<button type="submit">Continue</button></form></main></body></html>`;
    return;
  }
  if (m && ctx.method === 'POST') {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const raw = await new Promise((resolve) => {
      let s = '';
      ctx.req.on('data', (c) => { s += c; });
      ctx.req.on('end', () => resolve(s));
    });
    const login = new URLSearchParams(raw).get('login') || '';
    if (!accounts[login]) {
      ctx.status = 400;
      ctx.body = 'unknown account';
      return;
    }
    const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: login }, consent: { grantId } }, { mergeWithLastSubmission: false });
    ctx.respond = false;
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.status === 200) {
    ctx.body = await tamper(ctx.body);
  }
});

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
