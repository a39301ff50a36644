// A streaming parser for server-sent events read with fetch (a POST cannot
// use EventSource). Survives any split of the byte stream: events cut across
// reads, CRLF cut in two, UTF-8 characters cut in two.

/**
 * Async iterator of {id, event, data} from a fetch Response body.
 * `id` is the raw id string ('' when the event had none); comments and
 * retry fields are skipped.
 */
export async function* parseSSE(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  let buf = '';
  let id = '';
  let event = '';
  let data = [];
  let pendingCR = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      let text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      if (pendingCR && text.startsWith('\n')) text = text.slice(1);
      pendingCR = false;
      buf += text;
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        if (c === 13) {
          if (i + 1 === buf.length) pendingCR = true;
          else if (buf.charCodeAt(i + 1) === 10) {
            const line = buf.slice(start, i);
            i++;
            start = i + 1;
            const ev = feed(line);
            if (ev) yield ev;
            continue;
          }
        }
        const line = buf.slice(start, i);
        start = i + 1;
        const ev = feed(line);
        if (ev) yield ev;
      }
      buf = buf.slice(start);
      if (done) break;
    }
  } finally {
    reader.releaseLock?.();
  }

  function feed(line) {
    if (line === '') {
      if (!data.length && !event) return null;
      const ev = { id, event: event || 'message', data: data.join('\n') };
      event = '';
      data = [];
      return ev;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
    return null;
  }
}
