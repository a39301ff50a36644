"""The API conformance stage: the live server against its own OpenAPI document.

Run by tests/schemathesis.sh inside its venv (schemathesis and
openapi-spec-validator at the versions in requirements.txt):

  1. start `confab serve` (CONFAB_BIN) on a free port with a temp data dir,
     rate limits off (the stage measures conformance, not the limiter;
     429 is still documented on every /api operation);
  2. complete setup with the one-time token from the log, and create an API
     key with every scope for that admin;
  3. validate /api/openapi.json with openapi-spec-validator;
  4. run `schemathesis run` against it, authenticated with the key, with the
     checks not_a_server_error, status_code_conformance,
     content_type_conformance and response_schema_conformance (not
     ignored_auth: the key is sent on every request, so that check would
     see its "invalid" credentials accepted; tests/it/http_surface.rs checks
     which operations need a credential),
     a bounded number of examples per operation and a time budget;
  5. stop the server, and fail if schemathesis failed or the server logged
     a panic.

Operations left out of the run, on purpose (they would end the run's own
credential or account mid-run once stateful testing finds the real ids):
  PATCH  /api/admin/users/{id}   could disable or demote the admin, or reset
                                 its password (which revokes its keys)
  DELETE /api/keys/{id}          could revoke the run's own API key
Both keep their Rust tests (tests/it/identity.rs).

Environment knobs:
  CONFAB_BIN                   the binary (default target/debug/confab)
  CONFAB_SCHEMATHESIS_EXAMPLES examples per operation in each round (default 20)
  CONFAB_SCHEMATHESIS_MAX_TIME seconds for the whole schemathesis run (default
                               180); fuzzing and stateful testing repeat until
                               it is spent, so the run takes about this long
  CONFAB_SCHEMATHESIS_SEED     a fixed seed (default: random, printed)
  CONFAB_SCHEMATHESIS_ARGS     extra arguments for `schemathesis run`
"""

import json
import os
import queue
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from openapi_spec_validator import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# (operationId, what it is): see the module doc.
EXCLUDED = [
    ("update_user", "PATCH /api/admin/users/{id}"),
    ("delete_key", "DELETE /api/keys/{id}"),
]
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
CONFIG = """
detect_local_providers = false
registration = "open"
allow_user_keys = true
[limits]
enabled = false
[auth]
login_per_ip_per_minute = 1000000
login_burst = 1000000
login_failures_per_account_per_hour = 1000000
login_failures_per_source_per_hour = 1000000
login_failures_per_device_per_hour = 1000000
# The doubling delay after failed sign-ins reaches 30 s, schemathesis's
# read timeout: the stage checks the API's shapes, not the throttle.
login_failure_delay_ms = 0
"""


def log(msg):
    print(f"schemathesis stage: {msg}", flush=True)


class Server:
    """`confab serve` on 127.0.0.1:0, its JSON log read line by line."""

    def __init__(self, binary, data_dir, config):
        self.lines = []
        self.events = queue.Queue()
        self.proc = subprocess.Popen(
            [binary, "--data-dir", data_dir, "--config", config, "--log-format", "json",
             "serve", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1"}, text=True, errors="replace",
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                self.events.put(entry)
        self.events.put(None)

    def wait_for(self, message, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no {message!r} log line within {timeout} s")
            try:
                entry = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if entry is None:
                raise RuntimeError(f"confab exited ({self.proc.poll()}) before {message!r}")
            if entry.get("fields", {}).get("message") == message:
                return entry["fields"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def call(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {url}: {e.code} {e.read()[:500]!r}") from None


def main():
    binary = os.environ.get("CONFAB_BIN") or os.path.join(ROOT, "target", "debug", "confab")
    if not os.access(binary, os.X_OK):
        sys.exit(f"no confab binary at {binary}; run `cargo build --bin confab`")
    examples = int(os.environ.get("CONFAB_SCHEMATHESIS_EXAMPLES", "20"))
    max_time = int(os.environ.get("CONFAB_SCHEMATHESIS_MAX_TIME", "180"))
    seed = int(os.environ.get("CONFAB_SCHEMATHESIS_SEED") or random.randrange(1 << 31))
    work = tempfile.mkdtemp(prefix="confab-schemathesis-")
    config = os.path.join(work, "confab.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    server = Server(binary, os.path.join(work, "data"), config)
    rc = 1
    try:
        base = server.wait_for("listening")["url"].rstrip("/")
        setup_url = server.wait_for("first-run setup")["url"]
        token = setup_url.split("token=", 1)[1]
        log(f"server at {base}")

        # The first admin, then an API key with every scope.
        _, headers, body = call("POST", f"{base}/api/setup",
                                {"token": token, "username": "admin",
                                 "password": "schemathesis-admin-pw-1"})
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        session = {"Cookie": cookie, "X-CSRF-Token": body["csrf_token"]}
        _, _, key = call("POST", f"{base}/api/keys",
                         {"name": "schemathesis", "scopes": ["read", "write", "admin"]},
                         session)
        bearer = key["key"]

        # Something to find: a conversation with a title.
        call("POST", f"{base}/api/conversations", {"title": "schemathesis"},
             {"Authorization": f"Bearer {bearer}"})

        _, _, doc = call("GET", f"{base}/api/openapi.json")
        validate(doc)
        ops = sum(1 for item in doc["paths"].values() for m in item
                  if m in ("get", "post", "put", "patch", "delete"))
        log(f"/api/openapi.json is a valid OpenAPI {doc['openapi']} document ({ops} operations)")

        out_dir = os.path.join(os.environ.get("CONFAB_SCHEMATHESIS_REPORT_DIR", work), "report")
        cmd = [
            os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run",
            f"{base}/api/openapi.json",
            "--url", base,
            "--checks", ",".join(CHECKS),
            "--header", f"Authorization: Bearer {bearer}",
            "--max-examples", str(examples),
            "--max-time", str(max_time),
            "--seed", str(seed),
            "--workers", "2",
            "--request-timeout", "30",
            "--report", "junit",
            "--report-dir", out_dir,
            "--suppress-health-check", "all",
        ]
        for operation_id, _ in EXCLUDED:
            cmd += ["--exclude-operation-id", operation_id]
        cmd += shlex.split(os.environ.get("CONFAB_SCHEMATHESIS_ARGS", ""))
        shown = [("Authorization: Bearer cfk_…" if c.startswith("Authorization:") else c) for c in cmd]
        log("running " + " ".join(shlex.quote(c) for c in shown))
        started = time.monotonic()
        # In the temp dir: schemathesis keeps a .schemathesis/ cache in its
        # working directory, which must not land in the repository.
        rc = subprocess.call(cmd, cwd=work,
                             env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false",
                                  "NO_COLOR": "1"})
        log(f"schemathesis finished in {time.monotonic() - started:.0f} s with exit code {rc} (seed {seed})")
    finally:
        server.stop()
        panics = [l for l in server.lines if "panicked" in l]
        if panics:
            log("the server logged a panic:\n" + "\n".join(panics[:5]))
            rc = rc or 1
        if rc != 0:
            log("last server log lines:\n" + "\n".join(server.lines[-20:]))
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
