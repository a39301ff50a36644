// Follows one generation: the POST that starts it, then, if the connection
// drops, GET /api/generations/{id}/events with Last-Event-ID until `done` or
// `error` arrives. Event ids are integers counting up within a generation,
// so nothing is applied twice and nothing is lost.

import { apiHeaders, errorFrom, networkError, ApiError, NETWORK_ERROR } from './api.js';
import { parseSSE } from './sse.js';

const MAX_BACKOFF_MS = 8000;

export function backoff(attempt) {
  const base = Math.min(MAX_BACKOFF_MS, 250 * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}

export class GenerationStream {
  /**
   * handlers: meta(data), delta(text), title(data), usage(data), done(data), error(data),
   * status('live' | 'reconnecting'), gone() (the generation is no longer
   * known to the server: reload the thread), lost(err) (dropped before meta).
   */
  constructor(handlers) {
    this.h = handlers;
    this.lastId = 0;
    this.gid = null;
    this.finished = false;
    this.closed = false;
    this.ctrl = new AbortController();
    this.wake = null;
  }

  /** POST /api/chat/stream and follow the answer to its end. Rejects with ApiError if the request is refused. */
  async start(body, extraHeaders = {}) {
    let res;
    try {
      res = await fetch('/api/chat/stream', {
        method: 'POST',
        headers: { ...apiHeaders('POST', extraHeaders, true), Accept: 'text/event-stream' },
        body: JSON.stringify(body),
        credentials: 'same-origin',
        signal: this.ctrl.signal,
      });
    } catch (e) {
      if (this.closed) return;
      throw networkError(e);
    }
    if (!res.ok) throw await errorFrom(res);
    await this.consume(res);
    await this.follow(false);
  }

  /** Follow a running generation from event `after` (0 = from the start). */
  async resume(gid, after = 0) {
    this.gid = gid;
    this.lastId = after;
    await this.follow(true);
  }

  async consume(res) {
    try {
      for await (const ev of parseSSE(res.body)) {
        if (this.closed) return;
        this.handle(ev);
        if (this.finished) return;
      }
    } catch {
      /* the connection dropped: follow() reconnects */
    }
  }

  handle(ev) {
    if (ev.id !== '') {
      const id = Number(ev.id);
      if (Number.isFinite(id)) {
        if (id <= this.lastId) return;
        this.lastId = id;
      }
    }
    let data = {};
    try {
      data = ev.data ? JSON.parse(ev.data) : {};
    } catch {
      return;
    }
    const h = this.h;
    switch (ev.event) {
      case 'meta':
        this.gid = data.generation_id || this.gid;
        h.meta?.(data);
        break;
      case 'delta':
        if (typeof data.text === 'string') h.delta?.(data.text);
        break;
      case 'usage':
        h.usage?.(data);
        break;
      case 'title':
        h.title?.(data);
        break;
      case 'done':
        this.finished = true;
        h.done?.(data);
        break;
      case 'error':
        this.finished = true;
        h.error?.(data);
        break;
      default:
    }
  }

  async follow(immediate) {
    let attempt = immediate ? -1 : 0;
    while (!this.finished && !this.closed) {
      if (!this.gid) {
        this.finished = true;
        this.h.lost?.(new ApiError({ code: NETWORK_ERROR, message: 'The connection dropped before the answer started.' }));
        return;
      }
      if (attempt >= 0) {
        this.h.status?.('reconnecting');
        await this.sleep(backoff(attempt));
        if (this.closed) return;
      }
      attempt++;
      let res;
      try {
        res = await fetch(`/api/generations/${encodeURIComponent(this.gid)}/events`, {
          headers: { Accept: 'text/event-stream', 'Last-Event-ID': String(this.lastId) },
          credentials: 'same-origin',
          signal: this.ctrl.signal,
        });
      } catch {
        continue;
      }
      if (res.status === 404) {
        this.finished = true;
        this.h.gone?.();
        return;
      }
      if (res.status === 401) {
        await errorFrom(res);
        this.close();
        return;
      }
      if (!res.ok) continue;
      this.h.status?.('live');
      const before = this.lastId;
      await this.consume(res);
      if (this.lastId > before) attempt = 0;
    }
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        window.removeEventListener('online', done);
        this.wake = null;
        resolve();
      };
      const t = setTimeout(done, ms);
      window.addEventListener('online', done);
      this.wake = done;
    });
  }

  /** Stop following locally (the generation goes on on the server). */
  close() {
    this.closed = true;
    this.ctrl.abort();
    this.wake?.();
  }
}
