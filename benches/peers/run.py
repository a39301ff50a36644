#!/usr/bin/env python3
"""confab side by side with LiteLLM proxy and Open WebUI (issue 21, point 3).

Installs the peers from PyPI (pinned versions) into venvs under
target/peers/, builds confab release, starts ONE fake OpenAI-compatible
upstream (confab's own test fake, `benches/peers_upstream.rs`, streaming
OpenAI SSE chunks with a fixed per-token delay) and runs each product against
it in turn, in one run. Per product:

- install size: du of what was installed (a venv; confab: the binary);
- cold start: spawn -> health endpoint answers 200 (fresh data dir);
- idle RSS: after start, no load (the process and all its children);
- RSS per open stream: after three warm-up answers, N slow streams held open
  through the product (each has received its first token):
  (RSS with N open - RSS just before) / N;
- added TTFT (after a restart on the same data dir, so no held stream
  lingers): time to first token through the product minus time to first
  token sent straight to the fake, same client, same run, alternating rounds,
  at 1 and 50 concurrent streams (median and p99, nearest rank).

Stdlib only (the client is a small asyncio HTTP/1.1 client, the same for
every path). Every wait is bounded; every child is killed on exit.
Run through `benches/peers.sh`.
"""

import argparse
import asyncio
import atexit
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

LITELLM_VERSION = "1.106.12"
OPENWEBUI_VERSION = "0.12.4"
MODEL = "fake-model"
SLOW_MODEL = "fake-model+slow"
UPSTREAM_KEY = "sk-bench-0000000000"
PASSWORD = "bench-password-1234"
# LiteLLM refuses to start without a master key (its documented setup).
LITELLM_MASTER_KEY = "sk-" + os.urandom(24).hex()
PROMPT = "Say something short."
TOKEN_DELAY_MS = 2
LEVELS = [(1, 30), (50, 2)]  # (concurrent streams, streams per client per round)
ROUNDS = 3
WARMUP_STREAMS = 3
STREAM_TIMEOUT = 60.0
START_TIMEOUT = 300.0
HOLD_TIMEOUT = 300.0
STALL = 30.0

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "target" / "peers"

CHILDREN = []  # Popen objects, each the leader of its own process group


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cleanup():
    for p in CHILDREN:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for p in CHILDREN:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    CHILDREN.clear()


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


def spawn(args, **kw):
    p = subprocess.Popen(args, start_new_session=True, **kw)
    CHILDREN.append(p)
    return p


def stop(p):
    if p in CHILDREN:
        CHILDREN.remove(p)
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def du_bytes(path):
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


# --------------------------------------------------------------------------
# Memory: the process and all its descendants


def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def rss_tree_mb(pid):
    kids = _children_map()
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        stack.extend(kids.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total / 1e6, len(seen)


# --------------------------------------------------------------------------
# HTTP: a blocking helper for setup, an asyncio client for the streams


def http_json(method, url, body=None, headers=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, r.headers, (json.loads(raw) if raw.strip() else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")[:300]
        return e.code, e.headers, parsed


def wait_healthy(proc, url, t0, timeout=START_TIMEOUT):
    """Seconds from `t0` (just before the spawn) until `url` answers 200
    (polled every 20 ms)."""
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


class Target:
    def __init__(self, url, token, model=MODEL):
        m = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
        self.host, self.port, self.path = m.group(1), int(m.group(2)), m.group(3)
        self.token = token
        self.model = model

    def request(self, model=None):
        body = json.dumps(
            {
                "model": model or self.model,
                "messages": [{"role": "user", "content": PROMPT}],
                "stream": True,
            }
        ).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body


class Stream:
    """One streamed chat completion over its own connection."""

    def __init__(self, target, model=None):
        self.target = target
        self.model = model
        self.writer = None
        self.first = asyncio.get_running_loop().create_future()

    async def run(self):
        """Reads the whole answer; sets `first` at the first non-empty
        content delta. Returns TTFT in seconds."""
        t0 = time.perf_counter()
        reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer.write(self.target.request(self.model))
        await self.writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        chunked = b"transfer-encoding: chunked" in head.lower()
        if status != 200:
            body = await reader.read(2000)
            raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
        ttft = None
        pending = b""
        while True:
            if chunked:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                data = await reader.readexactly(size + 2)
                data = data[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                line = line.strip()
                if ttft is None and line.startswith(b"data:") and line != b"data: [DONE]":
                    try:
                        ev = json.loads(line[5:])
                        content = ev["choices"][0]["delta"].get("content")
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                        continue
                    if content:
                        ttft = time.perf_counter() - t0
                        if not self.first.done():
                            self.first.set_result(ttft)
        self.close()
        if ttft is None:
            raise RuntimeError("the stream ended without a content delta")
        return ttft

    def close(self):
        if self.writer is not None:
            self.writer.close()


async def one(target):
    s = Stream(target)
    try:
        return await asyncio.wait_for(s.run(), STREAM_TIMEOUT)
    finally:
        s.close()


async def batch(target, level, per_client):
    async def client():
        return [await one(target) for _ in range(per_client)]

    results = await asyncio.gather(*(client() for _ in range(level)))
    return [t for r in results for t in r]


def pct(xs, q):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(-(-q * len(xs) // 100)) - 1))
    return xs[k]


async def ttft_levels(direct, product):
    rows = {}
    for level, per_client in LEVELS:
        await batch(direct, level, 1)
        await batch(product, level, 1)
        d, p = [], []
        for _ in range(ROUNDS):
            d += await batch(direct, level, per_client)
            p += await batch(product, level, per_client)
        rows[level] = {
            "samples": len(p),
            "direct_p50_ms": pct(d, 50) * 1e3,
            "direct_p99_ms": pct(d, 99) * 1e3,
            "product_p50_ms": pct(p, 50) * 1e3,
            "product_p99_ms": pct(p, 99) * 1e3,
            "added_p50_ms": (pct(p, 50) - pct(d, 50)) * 1e3,
            "added_p99_ms": (pct(p, 99) - pct(d, 99)) * 1e3,
        }
        log(f"    {level:>3} streams: " + ", ".join(f"{k} {v:.1f}" for k, v in rows[level].items()))
    return rows


async def hold(target, n, pid):
    """Opens n slow streams, waits (bounded) until each has its first token
    (or until none has arrived for STALL seconds), reads the RSS, closes them.
    Returns (before MB, during MB, processes, streams answered)."""
    before, _ = rss_tree_mb(pid)
    streams = [Stream(target, SLOW_MODEL) for _ in range(n)]
    tasks = [asyncio.ensure_future(s.run()) for s in streams]
    try:
        deadline = time.monotonic() + HOLD_TIMEOUT
        last, last_change = -1, time.monotonic()
        while True:
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise RuntimeError(f"{len(failed)} held streams failed: {failed[0].exception()}")
            answered = sum(1 for s in streams if s.first.done())
            if answered != last:
                last, last_change = answered, time.monotonic()
            if answered == n:
                break
            now = time.monotonic()
            if now > deadline or now - last_change > STALL:
                log(f"    only {answered} of {n} streams got a first token (waited {now - last_change:.0f} s without progress)")
                break
            await asyncio.sleep(0.05)
        if last == 0:
            raise RuntimeError("no held stream got a first token")
        await asyncio.sleep(1.0)  # let the allocator settle after the last open
        during, procs = rss_tree_mb(pid)
    finally:
        for s in streams:
            s.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return before, during, procs, last


# --------------------------------------------------------------------------
# Products


def setup_confab(binary, upstream, tmp, first=True):
    port = free_port()
    cfg = tmp / "confab.toml"
    cfg.write_text(
        "detect_local_providers = false\n"
        "provider_idle_timeout_secs = 600\n\n"
        "[http]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n\n"
        "[auth]\nlogin_per_ip_per_minute = 1000000\nlogin_burst = 1000000\n\n"
        "[limits]\nenabled = false\nmax_concurrent_generations = 1000000\n\n"
        "[[providers]]\n"
        f'kind = "openai"\nname = "fake"\nbase_url = "{upstream}"\n'
        f'api_key = "{UPSTREAM_KEY}"\nmodels = ["{MODEL}", "{SLOW_MODEL}"]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFAB_")}
    errlog = open(tmp / "stderr.log", "a")
    t0 = time.monotonic()
    p = spawn(
        [
            str(binary),
            "--config",
            str(cfg),
            "--data-dir",
            str(tmp / "data"),
            "--log-format",
            "json",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=errlog,
        cwd=tmp,
    )
    base = f"http://127.0.0.1:{port}"
    cold = wait_healthy(p, f"{base}/health", t0)
    if not first:
        return p, base, cold, None
    token = None
    deadline = time.monotonic() + 30
    while token is None and time.monotonic() < deadline:
        for line in (tmp / "stderr.log").read_text().splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            url = (v.get("fields") or {}).get("url") or ""
            if (v.get("fields") or {}).get("message") == "first-run setup" and "token=" in url:
                token = url.split("token=", 1)[1].split("&", 1)[0]
        if token is None:
            time.sleep(0.05)
    if token is None:
        raise RuntimeError("confab logged no first-run setup URL")
    return p, base, cold, token


def ready_confab(base, token):
    status, headers, body = http_json(
        "POST", f"{base}/api/setup", {"token": token, "username": "admin", "password": PASSWORD}
    )
    if status != 201:
        raise RuntimeError(f"setup answered {status}: {body}")
    cookie = next(
        c.split(";", 1)[0]
        for c in headers.get_all("Set-Cookie")
        if c.startswith("confab_session=")
    )
    status, _, body = http_json(
        "POST",
        f"{base}/api/keys",
        {"name": "bench"},
        {"Cookie": cookie, "X-CSRF-Token": body["csrf_token"]},
    )
    if status != 201:
        raise RuntimeError(f"creating an API key answered {status}: {body}")
    return Target(f"{base}/v1/chat/completions", body["key"])


def setup_litellm(venv, upstream, tmp):
    port = free_port()
    cfg = tmp / "litellm.yaml"
    models = "".join(
        f"  - model_name: \"{m}\"\n    litellm_params:\n      model: \"openai/{m}\"\n"
        f"      api_base: \"{upstream}\"\n      api_key: \"{UPSTREAM_KEY}\"\n"
        for m in (MODEL, SLOW_MODEL)
    )
    cfg.write_text(
        f"model_list:\n{models}litellm_settings:\n  telemetry: false\n"
        f"general_settings:\n  master_key: \"{LITELLM_MASTER_KEY}\"\n"
    )
    env = dict(os.environ)
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "DO_NOT_TRACK": "true",
            "ANONYMIZED_TELEMETRY": "false",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    errlog = open(tmp / "stderr.log", "a")
    t0 = time.monotonic()
    p = spawn(
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(cfg),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=errlog,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    base = f"http://127.0.0.1:{port}"
    cold = wait_healthy(p, f"{base}/health/readiness", t0)
    return p, base, cold, None


def ready_litellm(base, _):
    return Target(f"{base}/chat/completions", LITELLM_MASTER_KEY)


def setup_openwebui(venv, upstream, tmp):
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "DATA_DIR": str(tmp / "data"),
            "WEBUI_SECRET_KEY": "peers-bench-secret",
            "WEBUI_AUTH": "False",
            "ENABLE_OLLAMA_API": "False",
            "OPENAI_API_BASE_URL": upstream,
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "SCARF_NO_ANALYTICS": "true",
            "DO_NOT_TRACK": "true",
            "ANONYMIZED_TELEMETRY": "false",
            "OFFLINE_MODE": "true",
            "HF_HUB_OFFLINE": "1",
            "ENABLE_VERSION_UPDATE_CHECK": "false",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    (tmp / "data").mkdir(exist_ok=True)
    errlog = open(tmp / "stderr.log", "a")
    t0 = time.monotonic()
    p = spawn(
        [str(venv / "bin" / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=errlog,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    base = f"http://127.0.0.1:{port}"
    cold = wait_healthy(p, f"{base}/health", t0)
    return p, base, cold, None


def ready_openwebui(base, _):
    # WEBUI_AUTH=False: signing in (any body) answers the single admin's token.
    status, _, body = http_json(
        "POST", f"{base}/api/v1/auths/signin", {"email": "", "password": ""}
    )
    if status != 200 or not isinstance(body, dict) or not body.get("token"):
        raise RuntimeError(f"signin answered {status}: {body}")
    token = body["token"]
    # The model list is fetched from the upstream; wait (bounded) for ours.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _, body = http_json(
            "GET", f"{base}/api/models", headers={"Authorization": f"Bearer {token}"}
        )
        ids = [m.get("id") for m in (body or {}).get("data", [])] if status == 200 else []
        if MODEL in ids and SLOW_MODEL in ids:
            return Target(f"{base}/api/chat/completions", token)
        time.sleep(0.2)
    raise RuntimeError(f"Open WebUI did not list {MODEL} within 60 s (last: {status} {body})")


# --------------------------------------------------------------------------
# Install and build


def pip_version(venv, pkg):
    out = subprocess.run(
        [str(venv / "bin" / "pip"), "show", pkg], capture_output=True, text=True
    )
    m = re.search(r"^Version: (\S+)", out.stdout, re.M)
    return m.group(1) if m else None


def install(name, spec, pkg, version):
    venv = WORK / f"{name}-venv"
    if (venv / "bin" / "pip").exists() and pip_version(venv, pkg) == version:
        log(f"{pkg} {version} already in {venv.relative_to(ROOT)}")
        return venv
    log(f"installing {spec} into {venv.relative_to(ROOT)} (from PyPI)…")
    if not (venv / "bin" / "pip").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", spec],
        check=True,
        timeout=3600,
    )
    got = pip_version(venv, pkg)
    if got != version:
        raise RuntimeError(f"{pkg}: installed {got}, wanted {version}")
    return venv


def cargo(args, json_out=False):
    cmd = ["cargo", *args]
    if json_out:
        cmd.append("--message-format=json-render-diagnostics")
    r = subprocess.run(
        cmd, cwd=ROOT, stdout=subprocess.PIPE if json_out else None, text=True, check=True
    )
    return r.stdout


def build():
    log("building confab (release) and the fake upstream bench…")
    cargo(["build", "--release", "--bin", "confab"])
    out = cargo(["bench", "--no-run", "--bench", "peers_upstream"], json_out=True)
    exe = None
    for line in out.splitlines():
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if v.get("reason") == "compiler-artifact" and v.get("target", {}).get("name") == "peers_upstream":
            exe = v.get("executable") or exe
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target_dir.is_absolute():
        target_dir = ROOT / target_dir
    binary = target_dir / "release" / "confab"
    if not exe or not binary.exists():
        raise RuntimeError("the build produced no confab binary or peers_upstream bench")
    return binary, Path(exe)


def start_upstream(exe):
    env = dict(os.environ)
    env.update({"PEERS_UPSTREAM_SERVE": "1", "PEERS_UPSTREAM_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS)})
    p = spawn([str(exe)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    if not sel.select(timeout=30):
        raise RuntimeError("the fake upstream printed no URL within 30 s")
    line = p.stdout.readline().strip()
    if not line.startswith("http://"):
        raise RuntimeError(f"the fake upstream printed {line!r}")
    return p, line


# --------------------------------------------------------------------------


def machine():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {mem / 2**30:.0f} GiB RAM, Linux {platform.release()}"


def fmt_mb(b):
    return f"{b / 1e6:,.0f} MB" if b >= 10e6 else f"{b / 1e6:.1f} MB"


def table(results, n):
    cols = [r for r in results]
    head = "| | " + " | ".join(r["label"] for r in cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    rows = [head, sep]

    def row(name, f):
        rows.append(f"| {name} | " + " | ".join(f(r) for r in cols) + " |")

    def ok(f):
        def g(r):
            if r.get("error"):
                return "did not run"
            try:
                return f(r)
            except (KeyError, TypeError):
                return "n/a"

        return g

    row("Install size", lambda r: fmt_mb(r["install_bytes"]) if r.get("install_bytes") else "n/a")
    row("Cold start to healthy", ok(lambda r: f"{r['cold_start_s']:.2f} s"))
    row("Idle RSS", ok(lambda r: f"{r['idle_rss_mb']:.0f} MB"))
    row(
        f"RSS per open stream (N = {n})",
        ok(
            lambda r: f"{r['per_stream_kb']:.0f} KB"
            + ("" if r["held"] == n else f" ({r['held']} of {n} answered)")
        ),
    )
    for level, _ in LEVELS:
        row(
            f"Added TTFT, {level} stream{'s' if level > 1 else ''}: median / p99",
            ok(
                lambda r, level=level: f"{r['ttft'][level]['added_p50_ms']:.1f} / "
                f"{r['ttft'][level]['added_p99_ms']:.1f} ms"
            ),
        )
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=200, help="open streams for RSS per stream")
    ap.add_argument(
        "--products", default="confab,litellm,openwebui", help="comma-separated subset"
    )
    ap.add_argument("--skip-build", action="store_true", help="use the last release build")
    ap.add_argument("--confab", type=Path, help="this confab binary (implies no build)")
    ap.add_argument("--upstream", type=Path, help="this peers_upstream bench binary")
    args = ap.parse_args()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(cleanup)
    WORK.mkdir(parents=True, exist_ok=True)
    wanted = args.products.split(",")

    products = []
    if "confab" in wanted:
        products.append({"key": "confab", "label": "confab"})
    if "litellm" in wanted:
        products.append({"key": "litellm", "label": f"LiteLLM proxy {LITELLM_VERSION}"})
    if "openwebui" in wanted:
        products.append({"key": "openwebui", "label": f"Open WebUI {OPENWEBUI_VERSION}"})

    venvs = {}
    for p in products:
        try:
            if p["key"] == "litellm":
                venvs["litellm"] = install(
                    "litellm", f"litellm[proxy]=={LITELLM_VERSION}", "litellm", LITELLM_VERSION
                )
            elif p["key"] == "openwebui":
                venvs["openwebui"] = install(
                    "openwebui", f"open-webui=={OPENWEBUI_VERSION}", "open-webui", OPENWEBUI_VERSION
                )
        except (subprocess.SubprocessError, RuntimeError, OSError) as e:
            p["error"] = f"install failed: {e}"
            log(f"{p['label']}: {p['error']}")

    if args.confab and args.upstream:
        binary, exe = args.confab.resolve(), args.upstream.resolve()
    elif args.skip_build:
        target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        binary = target_dir / "release" / "confab"
        exe = sorted((target_dir / "release" / "deps").glob("peers_upstream-*"), key=os.path.getmtime)
        exe = [e for e in exe if os.access(e, os.X_OK) and e.suffix == ""][-1]
    else:
        binary, exe = build()

    # What an install holds: the binary, stripped (a no-op for the release
    # profile, which strips already).
    shipped = WORK / "confab"
    shutil.copy2(binary, shipped)
    if shutil.which("strip"):
        subprocess.run(["strip", str(shipped)], check=True)
    binary = shipped

    upstream_proc, upstream = start_upstream(exe)
    log(f"fake upstream: {upstream} ({TOKEN_DELAY_MS} ms per token)")
    direct = Target(f"{upstream}/chat/completions", UPSTREAM_KEY)

    for prod in products:
        if prod.get("error"):
            continue
        key = prod["key"]
        log(f"== {prod['label']}")
        tmp = Path(tempfile.mkdtemp(prefix=f"run-{key}-", dir=WORK))
        proc = None
        try:
            if key == "confab":
                prod["install_bytes"] = binary.stat().st_size
            else:
                prod["install_bytes"] = du_bytes(venvs[key])

            keys = {}

            def start(first):
                if key == "confab":
                    proc, base, cold, token = setup_confab(binary, upstream, tmp, first)
                    if first:
                        keys["confab"] = ready_confab(base, token).token
                    return proc, cold, Target(f"{base}/v1/chat/completions", keys["confab"])
                if key == "litellm":
                    proc, base, cold, _ = setup_litellm(venvs[key], upstream, tmp)
                    return proc, cold, ready_litellm(base, None)
                proc, base, cold, _ = setup_openwebui(venvs[key], upstream, tmp)
                return proc, cold, ready_openwebui(base, None)

            # 1. Cold start on a fresh data dir, idle RSS, RSS per open stream.
            proc, cold, target = start(True)
            prod["cold_start_s"] = cold
            log(f"    healthy after {cold:.2f} s")
            time.sleep(2.0)  # start-up work that runs after the first 200
            prod["idle_rss_mb"], prod["idle_procs"] = rss_tree_mb(proc.pid)
            log(f"    idle RSS {prod['idle_rss_mb']:.1f} MB ({prod['idle_procs']} processes)")
            # A few answers first: lazy set-up on the first request is not per stream.
            for _ in range(WARMUP_STREAMS):
                asyncio.run(one(target))
            before, during, procs, held = asyncio.run(hold(target, args.streams, proc.pid))
            prod["hold_before_mb"], prod["hold_during_mb"] = before, during
            prod["held"] = held
            prod["per_stream_kb"] = (during - before) * 1e6 / held / 1e3
            log(
                f"    {held} open streams: RSS {before:.1f} -> {during:.1f} MB "
                f"({prod['per_stream_kb']:.1f} KB per stream, {procs} processes)"
            )
            # 2. Restarted (same data dir), so no held stream lingers: latency.
            stop(proc)
            proc, _, target = start(False)
            prod["ttft"] = asyncio.run(ttft_levels(direct, target))
        except Exception as e:  # noqa: BLE001 - reported per product, the run goes on
            prod["error"] = f"{type(e).__name__}: {e}"
            log(f"    FAILED: {prod['error']} (log: {tmp.relative_to(ROOT)}/stderr.log)")
            errlog = tmp / "stderr.log"
            if errlog.exists():
                lines = errlog.read_text(errors="replace").splitlines()[-15:]
                log("    last lines of its log:\n      " + "\n      ".join(lines))
        finally:
            if proc is not None:
                stop(proc)
        if not prod.get("error"):
            shutil.rmtree(tmp, ignore_errors=True)

    stop(upstream_proc)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = {
        "date": when,
        "machine": machine(),
        "streams": args.streams,
        "token_delay_ms": TOKEN_DELAY_MS,
        "versions": {"litellm": LITELLM_VERSION, "open-webui": OPENWEBUI_VERSION, "python": platform.python_version()},
        "products": products,
    }
    (WORK / "result.json").write_text(json.dumps(out, indent=2, default=str))
    print()
    print(f"{when} — {out['machine']}; fake upstream {TOKEN_DELAY_MS} ms per token, "
          f"Python {platform.python_version()}")
    print()
    print(table(products, args.streams))
    print()
    for prod in products:
        if prod.get("ttft"):
            d1, d50 = prod["ttft"][1], prod["ttft"][50]
            print(
                f"- {prod['label']}: direct TTFT median/p99 {d1['direct_p50_ms']:.1f}/{d1['direct_p99_ms']:.1f} ms at 1 stream, "
                f"{d50['direct_p50_ms']:.1f}/{d50['direct_p99_ms']:.1f} ms at 50; "
                f"RSS before/with {args.streams} open streams {prod['hold_before_mb']:.0f}/{prod['hold_during_mb']:.0f} MB"
            )
        if prod.get("error"):
            print(f"- {prod['label']} did not run: {prod['error']}")
    return 1 if any(p.get("error") for p in products) else 0


if __name__ == "__main__":
    sys.exit(main())
