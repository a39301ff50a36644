// Your own provider keys, one per provider kind (OpenAI-compatible,
// Anthropic), kept in this browser only and only while you are signed in.
//
// How they are protected (docs/ARCHITECTURE.md, "Own keys"): each key is
// encrypted with AES-GCM (Web Crypto) under a key generated at the first
// save of a sign-in session and created non-extractable, so no script can
// read its bytes out. Both the wrapping key (as a CryptoKey object) and the
// ciphertexts live in one IndexedDB database, `confab-own-keys`; plain text
// exists only in this module's memory while a chat is being sent. Signing
// out, a session that ends (any 401) or a different user signing in deletes
// the whole database, wrapping key included, so nothing of a key remains in
// localStorage, sessionStorage or IndexedDB. A key is checked with the
// server (`POST /api/chat/validate-key`) before it is kept, and sent only
// with chats to a model whose provider is of the key's kind.

import { get, post } from './api.js';

const DB = 'confab-own-keys';
const STORE = 'keys';
const WRAP = 'wrap';
export const KINDS = [
  { kind: 'openai', label: 'OpenAI-compatible', placeholder: 'sk-…' },
  { kind: 'anthropic', label: 'Anthropic', placeholder: 'sk-ant-…' },
];

// The key of the former version, kept in plain localStorage: never again.
try { localStorage.removeItem('confab.providerKey'); } catch { /* storage unavailable */ }

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const out = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(out && 'result' in out ? out.result : undefined);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  } finally {
    db.close();
  }
}

const read = (id) => tx('readonly', (s) => s.get(id));
const write = (id, v) => tx('readwrite', (s) => s.put(v, id));
const remove = (id) => tx('readwrite', (s) => s.delete(id));

/** Deletes every key and the wrapping key (sign-out, session end). */
export function wipeKeys() {
  return new Promise((resolve) => {
    let req;
    try { req = indexedDB.deleteDatabase(DB); } catch { resolve(); return; }
    req.onsuccess = req.onerror = req.onblocked = () => resolve();
  });
}

/** Keeps the keys only for `userId`: another user's are deleted. */
export async function bindUser(userId) {
  try {
    const w = await read(WRAP);
    if (w && w.user !== userId) await wipeKeys();
  } catch { /* IndexedDB unavailable: no keys either */ }
}

async function wrappingKey(userId) {
  const w = await read(WRAP);
  if (w && w.user === userId) return w.key;
  await wipeKeys();
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  await write(WRAP, { user: userId, key });
  return key;
}

const hint = (k) => (k.length > 8 ? k.slice(0, 3) + '…' + k.slice(-4) : '…');

/** Checks `key` with the server; resolves to its answer `{valid, provider, models, message}`. */
export function validateKey(kind, key) {
  return post('/chat/validate-key', { kind, key: key.trim() });
}

/** Encrypts and keeps a key (already validated) for `kind`. */
export async function saveKey(userId, kind, key) {
  const k = key.trim();
  const wrap = await wrappingKey(userId);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const data = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(kind) }, wrap, new TextEncoder().encode(k));
  await write(kind, { iv, data, hint: hint(k), saved_at: new Date().toISOString() });
}

export async function removeKey(kind) {
  await remove(kind);
}

/** What is kept, without the keys: `{openai: {hint, saved_at}, …}`. */
export async function keptKeys() {
  const out = {};
  try {
    for (const { kind } of KINDS) {
      const r = await read(kind);
      if (r) out[kind] = { hint: r.hint, saved_at: r.saved_at };
    }
  } catch { /* IndexedDB unavailable */ }
  return out;
}

async function keyFor(kind) {
  const [w, r] = [await read(WRAP), await read(kind)];
  if (!w || !r) return '';
  const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: r.iv, additionalData: new TextEncoder().encode(kind) }, w.key, r.data);
  return new TextDecoder().decode(plain);
}

let catalog = null;
let catalogAt = 0;

async function providerOf(model) {
  // Short-lived: an admin may switch a provider's users' keys off.
  if (!catalog || Date.now() - catalogAt > 15_000) {
    const [models, providers] = await Promise.all([get('/models'), get('/providers')]);
    catalog = { models: models.items, providers: providers.items };
    catalogAt = Date.now();
  }
  const m = catalog.models.find((x) => x.id === model);
  return m && catalog.providers.find((p) => p.name === m.provider);
}

/**
 * The headers that send your key with a chat on `model`: only when its
 * provider is of a kind you have a key for and accepts users' keys.
 */
export async function ownKeyHeaders(model) {
  try {
    if (!model) return {};
    const kept = await keptKeys();
    if (!Object.keys(kept).length) return {};
    const p = await providerOf(model);
    if (!p || !p.user_keys || !kept[p.kind]) return {};
    const key = await keyFor(p.kind);
    return key ? { 'X-Provider-Key': key, 'X-Provider-Key-Kind': p.kind } : {};
  } catch {
    return {};
  }
}
