// Starts a real `confab` server for a browser test and tears it down again.
//
//   const srv = await startServer();          // fresh temp data dir, random port
//   ... srv.url, srv.setupUrl, srv.dataDir, srv.logs ...
//   await srv.stop();                          // SIGTERM, then the data dir is removed
//
// The binary is $CONFAB_BIN, else <repo>/target/debug/confab (honouring
// $CARGO_TARGET_DIR). tests/run.sh builds it once before the browser tests run.
// Every server started here is also killed (and its temp dir removed) when the
// node process exits, so a failing test never leaves a server behind.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export function confabBinary() {
  if (process.env.CONFAB_BIN) return path.resolve(process.env.CONFAB_BIN);
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR)
    : path.join(REPO_ROOT, 'target');
  return path.join(targetDir, 'debug', 'confab');
}

// Servers still running, so they can be killed if the test process dies.
const live = new Set();
process.on('exit', () => {
  for (const s of live) {
    try { s.proc.kill('SIGKILL'); } catch { /* already gone */ }
    if (s.ownsDataDir) {
      try { rmSync(s.dataDir, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(128 + (sig === 'SIGINT' ? 2 : 15)));
}

/**
 * Start `confab --data-dir <dir> serve --listen 127.0.0.1:0 ...args`.
 *
 * options:
 *   env          extra environment variables (merged over process.env)
 *   args         extra arguments appended after `serve --listen 127.0.0.1:0`
 *   globalArgs   extra arguments placed before `serve` (after --data-dir)
 *   dataDir      use this data dir instead of a fresh temp one (it is then not removed)
 *   waitForSetup wait for the "first-run setup" log line too (default: true for a
 *                fresh temp data dir, where no user can exist yet)
 *   timeoutMs    how long to wait for start-up (default 30 s)
 *
 * resolves to { url, setupUrl, dataDir, proc, logs, stderr, stdout, waitForLog(pred), stop() }
 *   logs    parsed JSON log lines (non-JSON lines are kept as { raw: line })
 */
export async function startServer(options = {}) {
  const {
    env = {},
    args = [],
    globalArgs = [],
    timeoutMs = 30_000,
  } = options;
  const bin = confabBinary();
  if (!existsSync(bin)) {
    throw new Error(`confab binary not found at ${bin}; run \`cargo build --bin confab\` first`);
  }

  const ownsDataDir = !options.dataDir;
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'confab-e2e-')));
  const waitForSetup = options.waitForSetup ?? ownsDataDir;

  const fullArgs = ['--data-dir', dataDir, ...globalArgs, 'serve', '--listen', '127.0.0.1:0', ...args];
  const proc = spawn(bin, fullArgs, {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  const logs = [];
  const stderrLines = [];
  const stdoutLines = [];
  const waiters = new Set(); // { pred, resolve }
  const echo = !!process.env.CONFAB_E2E_DEBUG;

  const handle = { proc, dataDir, ownsDataDir };
  live.add(handle);

  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    stdoutLines.push(line);
    if (echo) process.stderr.write(`[confab stdout] ${line}\n`);
  });
  readline.createInterface({ input: proc.stderr }).on('line', (line) => {
    stderrLines.push(line);
    if (echo) process.stderr.write(`[confab] ${line}\n`);
    let entry;
    try {
      entry = JSON.parse(line);
      if (entry === null || typeof entry !== 'object') entry = { raw: line };
    } catch {
      entry = { raw: line };
    }
    logs.push(entry);
    for (const w of waiters) {
      if (w.pred(entry)) {
        waiters.delete(w);
        w.resolve(entry);
      }
    }
  });

  let exited = null; // { code, signal } or { error }
  let onExited;
  const exitPromise = new Promise((resolve) => { onExited = resolve; });
  const markExited = (info) => {
    if (exited) return;
    exited = info;
    live.delete(handle);
    for (const w of waiters) w.reject(new Error(`confab exited (${describeExit(exited)}) before the expected log line`));
    waiters.clear();
    onExited(exited);
  };
  // 'close' fires once stdout/stderr are drained, so the logs are complete by then.
  proc.on('close', (code, signal) => markExited({ code, signal }));
  proc.on('error', (error) => markExited({ error }));

  /** Resolves with the first log entry (past or future) matching pred. */
  function waitForLog(pred, ms = timeoutMs) {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    if (exited) return Promise.reject(new Error(`confab already exited (${describeExit(exited)})`));
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (e) => { clearTimeout(t); resolve(e); }, reject: (err) => { clearTimeout(t); reject(err); } };
      const t = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`timed out after ${ms} ms waiting for a log line`));
      }, ms);
      waiters.add(w);
    });
  }

  let stopped = null;
  async function stop() {
    if (stopped) return stopped;
    stopped = (async () => {
      if (!exited) {
        proc.kill('SIGTERM');
        const killTimer = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, 10_000);
        await exitPromise;
        clearTimeout(killTimer);
      }
      live.delete(handle);
      if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
      return exited;
    })();
    return stopped;
  }

  const message = (m) => (e) => e?.fields?.message === m;
  try {
    const listening = await waitForLog(message('listening'));
    const url = String(listening.fields.url ?? '').replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+$/.test(url)) throw new Error(`"listening" log line has no usable url: ${JSON.stringify(listening)}`);
    let setupUrl = null;
    if (waitForSetup) {
      const setup = await waitForLog(message('first-run setup'));
      setupUrl = setup.fields.url ?? null;
    } else {
      setupUrl = logs.find(message('first-run setup'))?.fields?.url ?? null;
    }
    return {
      url,
      setupUrl,
      dataDir,
      proc,
      logs,
      stderr: stderrLines,
      stdout: stdoutLines,
      waitForLog,
      stop,
      get exited() { return exited; },
    };
  } catch (err) {
    await stop().catch(() => {});
    const tail = stderrLines.slice(-40).join('\n');
    throw new Error(
      `confab failed to start (${bin} ${fullArgs.join(' ')}): ${err.message}` +
        (exited ? `\nexit: ${describeExit(exited)}` : '') +
        `\n--- last stderr lines ---\n${tail || '(none)'}`,
      { cause: err },
    );
  }
}

function describeExit({ code, signal, error }) {
  if (error) return `spawn error: ${error.message}`;
  return signal ? `signal ${signal}` : `code ${code}`;
}
