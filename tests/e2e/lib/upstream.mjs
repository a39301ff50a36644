// Starts examples/fake_upstream (the fake LLM provider of the Rust tests) as a
// process, and scripts it over its stdin (one JSON command per line, one JSON
// answer per line on stdout). tests/run.sh builds it with
// `cargo build --example fake_upstream`.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { REPO_ROOT } from './server.mjs';

export function upstreamBinary() {
  if (process.env.FAKE_UPSTREAM_BIN) return path.resolve(process.env.FAKE_UPSTREAM_BIN);
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR)
    : path.join(REPO_ROOT, 'target');
  return path.join(targetDir, 'debug', 'examples', 'fake_upstream');
}

const live = new Set();
process.on('exit', () => { for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

/**
 * Start the fake upstream. `replies`: {model: text} scripted before start.
 * Resolves to {openaiBase, baseUrl, command(obj), setReplyFor(model, text), stop()}.
 */
export async function startUpstream({ replies = {} } = {}) {
  const bin = upstreamBinary();
  if (!existsSync(bin)) throw new Error(`fake upstream not found at ${bin}; run \`cargo build --example fake_upstream\``);
  const proc = spawn(bin, [], {
    env: { ...process.env, FAKE_UPSTREAM_REPLIES: JSON.stringify(replies) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  live.add(proc);
  const lines = readline.createInterface({ input: proc.stdout });
  const queue = [];
  const waiting = [];
  lines.on('line', (l) => {
    const w = waiting.shift();
    if (w) w(l);
    else queue.push(l);
  });
  const nextLine = (ms = 10_000) => new Promise((resolve, reject) => {
    if (queue.length) return resolve(queue.shift());
    const t = setTimeout(() => reject(new Error('fake upstream did not answer')), ms);
    waiting.push((l) => { clearTimeout(t); resolve(l); });
  });
  const hello = JSON.parse(await nextLine());
  let chain = Promise.resolve();
  const command = (obj) => {
    const p = chain.then(async () => {
      proc.stdin.write(JSON.stringify(obj) + '\n');
      const ans = JSON.parse(await nextLine());
      if (!ans.ok) throw new Error(`fake upstream refused ${JSON.stringify(obj)}: ${ans.error}`);
      return ans;
    });
    chain = p.catch(() => {});
    return p;
  };
  return {
    baseUrl: hello.base_url,
    openaiBase: hello.openai_base,
    command,
    setReplyFor: (model, text) => command({ cmd: 'set_reply_for', model, text }),
    setReply: (text) => command({ cmd: 'set_reply', text }),
    chatRequests: () => command({ cmd: 'chat_requests' }),
    async stop() {
      if (proc.exitCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.stdin.end();
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await done;
      clearTimeout(t);
      live.delete(proc);
    },
  };
}
