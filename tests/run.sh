#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this and nothing else).
#
#   1. install what the tests need if it is missing: pebble + chromium + postgresql + slapd (apt-get),
#      playwright-core and oidc-provider (npm ci in tests/e2e), the openai and anthropic Python SDKs
#      (pip, into <target>/sdk/venv; tests/it/v1_sdk.rs), pyotp and aiosmtpd (pip, into
#      <target>/security/venv; tests/it/security.rs); for the distribution tests
#      (tests/it/ops_static.rs, ops_systemd.rs, ops_packages.rs) file, rpm and
#      systemd-analyze (apt-get), cargo-deb and cargo-generate-rpm (cargo install)
#   2. scripts/vendor.sh --check (vendored browser libraries)
#   3. cargo fmt --check
#   4. cargo clippy --all-targets -D warnings
#   5. the static test binary (scripts/build-release.sh --profile static-test, in
#      target/static so the debug build cache is untouched)
#   6. Rust tests (cargo nextest if installed, else cargo test), benches excluded
#   7. build target/debug/confab (and the fake upstream) once, for the two stages below
#   8. API conformance: tests/schemathesis.sh (schemathesis against the live debug
#      binary and its OpenAPI document; pinned venv under target/schemathesis/)
#   9. browser tests: node --test tests/e2e/*.test.mjs
#      (their "N passed, N failed" line is printed as the last line of the output)
#
# Fails fast on the first failing stage. Works from any directory.
# Environment knobs:
#   CONFAB_TEST_RUNNER=cargo   use `cargo test` even when cargo-nextest is installed
#   CONFAB_E2E_DEBUG=1         echo the servers' logs during browser tests
#   CONFAB_E2E_TIMEOUT=900     seconds before the browser stage is killed
#   CONFAB_SCHEMATHESIS_*      the API conformance budget (tests/schemathesis/drive.py)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SUITE_START=$SECONDS
STAGE=""
STAGE_START=$SECONDS
TIMINGS=()
E2E_SUMMARY=""

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export DEBIAN_FRONTEND=noninteractive

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

end_stage() {
  if [[ -n "$STAGE" ]]; then
    local took=$((SECONDS - STAGE_START))
    TIMINGS+=("$(printf '  %-56s %s' "$STAGE" "$(fmt_secs "$took")")")
    echo "--- $STAGE: ok in $(fmt_secs "$took")"
    STAGE=""
  fi
}

stage() {
  end_stage
  STAGE="$1"
  STAGE_START=$SECONDS
  echo
  echo "================================================================"
  echo "=== $STAGE"
  echo "================================================================"
}

on_exit() {
  local rc=$?
  local total=$((SECONDS - SUITE_START))
  if [[ $rc -eq 0 ]]; then
    end_stage
  fi
  echo
  echo "================================================================"
  if ((${#TIMINGS[@]})); then
    echo "stage times:"
    printf '%s\n' "${TIMINGS[@]}"
  fi
  if [[ $rc -eq 0 ]]; then
    echo "tests/run.sh: all stages passed, total elapsed $(fmt_secs "$total")"
  else
    echo "tests/run.sh: FAILED in stage '${STAGE:-?}' (exit $rc) after $(fmt_secs $((SECONDS - STAGE_START))), total elapsed $(fmt_secs "$total")"
  fi
  echo "================================================================"
  # The browser tests' closing line, last, alone on its line.
  if [[ -n "$E2E_SUMMARY" && -s "$E2E_SUMMARY" ]]; then
    echo "browser tests:"
    grep -E '^[0-9]+ passed, [0-9]+ failed' "$E2E_SUMMARY" || true
  fi
  exit "$rc"
}
trap on_exit EXIT
# Stopped by a signal (a CI timeout, ^C), the suite has not passed: without
# these, bash ran the EXIT trap with the status of the last command that
# ended, and a nextest run cancelled half-way printed "all stages passed".
trap 'exit 143' TERM
trap 'exit 130' INT

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

# ---------------------------------------------------------------------------
stage "install test dependencies"

apt_needed=()
command -v pebble >/dev/null 2>&1 || [[ -x /usr/bin/pebble ]] || apt_needed+=(pebble)
[[ -x /usr/bin/chromium ]] || apt_needed+=(chromium)
command -v node >/dev/null 2>&1 || apt_needed+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_needed+=(npm)
command -v file >/dev/null 2>&1 || apt_needed+=(file)
command -v rpm >/dev/null 2>&1 || apt_needed+=(rpm)
command -v systemd-analyze >/dev/null 2>&1 || apt_needed+=(systemd)
# The schemathesis stage makes a venv (python3 -m venv needs ensurepip).
command -v python3 >/dev/null 2>&1 || apt_needed+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_needed+=(python3-venv)
# The PostgreSQL store's tests start their own throwaway cluster
# (tests/it/common/pg.rs) with the server binaries of Debian's package.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_needed+=(postgresql)
# The LDAP sign-in tests start their own slapd (tests/it/sso_ldap.rs).
[[ -x /usr/sbin/slapd && -x /usr/sbin/slapadd ]] || apt_needed+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || apt_needed+=(ldap-utils)
if ((${#apt_needed[@]})); then
  echo "apt-get: installing ${apt_needed[*]}"
  # DPkg::Lock::Timeout waits for another apt/dpkg run instead of failing on its lock.
  as_root apt-get -o DPkg::Lock::Timeout=900 update -q
  # noninteractive: slapd's package asks for an admin password otherwise.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q "${apt_needed[@]}"
else
  echo "apt-get: pebble, chromium, file, rpm, systemd-analyze, python3-venv, postgresql and slapd already installed"
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
echo "node: $(node --version), npm: $(npm --version 2>/dev/null)"

E2E="$ROOT/tests/e2e"
# Reinstall when node_modules is missing or does not match the lockfile: npm records
# what it installed in node_modules/.package-lock.json; compare every locked package.
e2e_deps_current() {
  node - "$E2E" <<'JS'
const fs = require('fs'), path = require('path');
const dir = process.argv[2];
const read = (f) => { try { return JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')); } catch { return null; } };
const want = read('package-lock.json'), have = read('node_modules/.package-lock.json');
if (!want || !have) process.exit(1);
const strip = (l) => Object.entries(l.packages || {}).filter(([k]) => k !== '')
  .map(([k, v]) => `${k}@${v.version} ${v.integrity || ''}`).sort().join('\n');
const ok = strip(want) === strip(have) &&
  Object.keys(want.packages || {}).every((k) => k === '' || fs.existsSync(path.join(dir, k, 'package.json')));
process.exit(ok ? 0 : 1);
JS
}
if [[ ! -f "$E2E/package-lock.json" ]]; then
  echo "npm: no package-lock.json, running npm install in tests/e2e"
  (cd "$E2E" && npm install --no-audit --no-fund --loglevel=error)
elif ! e2e_deps_current; then
  echo "npm: installing tests/e2e dependencies from package-lock.json (npm ci)"
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "npm: tests/e2e/node_modules matches package-lock.json"
fi
node -e 'for (const p of Object.keys(require(process.argv[1]).packages)) if (p) console.log("  " + p.replace("node_modules/", "") + "@" + require(process.argv[1]).packages[p].version)' "$E2E/package-lock.json"

# The official openai and anthropic Python SDKs for tests/it/v1_sdk.rs, pinned in
# tests/sdk/requirements.txt, in a venv under the target dir (never committed),
# remade only when the requirements change. The tests find it through
# CONFAB_SDK_PYTHON and fail, saying to run this script, when it is missing.
SDK_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$SDK_TARGET_DIR" in /*) ;; *) SDK_TARGET_DIR="$ROOT/$SDK_TARGET_DIR" ;; esac
SDK_REQS="$ROOT/tests/sdk/requirements.txt"
SDK_VENV="$SDK_TARGET_DIR/sdk/venv"
sdk_want="$(sha256sum "$SDK_REQS" | cut -d' ' -f1)"
if [[ ! -x "$SDK_VENV/bin/python" || "$(cat "$SDK_VENV/.requirements.sha256" 2>/dev/null)" != "$sdk_want" ]]; then
  echo "pip: creating $SDK_VENV from tests/sdk/requirements.txt"
  rm -rf "$SDK_VENV"
  python3 -m venv "$SDK_VENV"
  "$SDK_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$SDK_REQS"
  echo "$sdk_want" >"$SDK_VENV/.requirements.sha256"
fi
export CONFAB_SDK_PYTHON="$SDK_VENV/bin/python"
echo "python SDKs: $("$CONFAB_SDK_PYTHON" -c 'import openai, anthropic; print("openai", openai.__version__ + ", anthropic", anthropic.__version__)')"

# pyotp (TOTP codes computed independently of confab) and aiosmtpd (a real SMTP
# server the reset-mail tests read) for tests/it/security.rs, pinned in
# tests/security/requirements.txt, in a venv under the target dir, remade only
# when the requirements change; found through CONFAB_SECURITY_PYTHON.
SEC_REQS="$ROOT/tests/security/requirements.txt"
SEC_VENV="$SDK_TARGET_DIR/security/venv"
sec_want="$(sha256sum "$SEC_REQS" | cut -d' ' -f1)"
if [[ ! -x "$SEC_VENV/bin/python" || "$(cat "$SEC_VENV/.requirements.sha256" 2>/dev/null)" != "$sec_want" ]]; then
  echo "pip: creating $SEC_VENV from tests/security/requirements.txt"
  rm -rf "$SEC_VENV"
  python3 -m venv "$SEC_VENV"
  "$SEC_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$SEC_REQS"
  echo "$sec_want" >"$SEC_VENV/.requirements.sha256"
fi
export CONFAB_SECURITY_PYTHON="$SEC_VENV/bin/python"
echo "python test tools: $("$CONFAB_SECURITY_PYTHON" -c 'from importlib.metadata import version as v; print("pyotp", v("pyotp") + ", aiosmtpd", v("aiosmtpd"))')"

# cargo-deb and cargo-generate-rpm at the versions scripts/build-packages.sh pins
# (cargo install --locked, only when missing: a few minutes on a fresh machine).
scripts/build-packages.sh --install-tools
echo "$(cargo deb --version), $(cargo generate-rpm --version)"

# ---------------------------------------------------------------------------
stage "vendored browser libraries (scripts/vendor.sh --check)"
# sha256 of every file under assets/vendor/ against manifest.json and against
# the pinned versions' npm tarballs.
scripts/vendor.sh --check

# ---------------------------------------------------------------------------
stage "cargo fmt --check"
cargo fmt --all -- --check

# ---------------------------------------------------------------------------
stage "cargo clippy"
cargo clippy --all-targets -- -D warnings

# ---------------------------------------------------------------------------
stage "static test binary (scripts/build-release.sh --profile static-test)"
# tests/it/ops_static.rs and ops_packages.rs use it (they build it themselves when
# run alone; built here, before the tests run in parallel, it is only checked
# there). Its own target directory: the +crt-static RUSTFLAGS would otherwise
# invalidate the debug build.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
CARGO_TARGET_DIR="$TARGET_DIR/static" scripts/build-release.sh --profile static-test

# ---------------------------------------------------------------------------
# Every test target except the benches: benches/ are `harness = false` programs
# that would run in full (minutes) under `--all-targets`, and cargo-nextest cannot
# list them (it fails with "creating test list failed"). clippy above still
# compiles them. There are no doctests (nextest would not run them anyway).
# --no-fail-fast: report every failing test, the stage still fails.
RUST_TEST_TARGETS=(--lib --bins --tests)
if [[ "${CONFAB_TEST_RUNNER:-}" != "cargo" ]] && cargo nextest --version >/dev/null 2>&1; then
  stage "rust tests (cargo nextest)"
  cargo nextest run --no-fail-fast "${RUST_TEST_TARGETS[@]}"
else
  stage "rust tests (cargo test)"
  cargo test --no-fail-fast "${RUST_TEST_TARGETS[@]}"
fi

# ---------------------------------------------------------------------------
stage "debug binary for the live-server stages (cargo build)"
# assets/ is embedded by include_dir, which cargo does not watch: make sure a
# changed asset is in the binary under test.
touch src/assets.rs
cargo build --bin confab --example fake_upstream
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
export CONFAB_BIN="$TARGET_DIR/debug/confab"
[[ -x "$CONFAB_BIN" ]] || { echo "no binary at $CONFAB_BIN after cargo build" >&2; exit 1; }

# ---------------------------------------------------------------------------
stage "API conformance (tests/schemathesis.sh)"
# Fails on any 5xx, undocumented status, wrong content type or response that
# does not match its schema; bounded by CONFAB_SCHEMATHESIS_MAX_TIME.
tests/schemathesis.sh

# ---------------------------------------------------------------------------
stage "browser tests (chromium)"
mkdir -p "$TARGET_DIR/e2e"

shopt -s nullglob
e2e_files=("$E2E"/*.test.mjs)
shopt -u nullglob
((${#e2e_files[@]})) || { echo "no browser tests found in tests/e2e/*.test.mjs" >&2; exit 1; }

# One file at a time (each starts its own server and browser; 2 cores).
# spec output for people; the summary reporter's "N passed, N failed" line goes to a
# file and is printed as the very last line of this script (see on_exit).
E2E_SUMMARY="$TARGET_DIR/e2e/summary.txt"
rm -f "$E2E_SUMMARY"
(cd "$E2E" && timeout --kill-after=30 "${CONFAB_E2E_TIMEOUT:-900}" \
  node --test --test-concurrency=1 --test-timeout=180000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=./lib/summary-reporter.mjs --test-reporter-destination="$E2E_SUMMARY" \
    "${e2e_files[@]}")
