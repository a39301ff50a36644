#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this and nothing else).
#
#   1. install what the tests need if it is missing: pebble + chromium (apt-get),
#      playwright-core (npm ci in tests/e2e)
#   2. cargo fmt --check
#   3. cargo clippy --all-targets -D warnings
#   4. Rust tests (cargo nextest if installed, else cargo test), benches excluded
#   5. browser tests: build target/debug/confab once, then node --test tests/e2e/*.test.mjs
#
# Fails fast on the first failing stage. Works from any directory.
# Environment knobs:
#   CONFAB_TEST_RUNNER=cargo   use `cargo test` even when cargo-nextest is installed
#   CONFAB_E2E_DEBUG=1         echo the servers' logs during browser tests
#   CONFAB_E2E_TIMEOUT=900     seconds before the browser stage is killed
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
    TIMINGS+=("$(printf '  %-28s %s' "$STAGE" "$(fmt_secs "$took")")")
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

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

# ---------------------------------------------------------------------------
stage "install test dependencies"
E2E="$ROOT/tests/e2e"
stage "browser tests (chromium)"
# assets/ is embedded by include_dir, which cargo does not watch: make sure a
# changed asset is in the binary under test.
touch src/assets.rs
cargo build --bin confab --example fake_upstream
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
export CONFAB_BIN="$TARGET_DIR/debug/confab"
[[ -x "$CONFAB_BIN" ]] || { echo "no binary at $CONFAB_BIN after cargo build" >&2; exit 1; }
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
