#!/usr/bin/env bash
# The API conformance stage: schemathesis against the live server, driven by
# tests/schemathesis/drive.py (see its docstring for what it does and which
# operations it leaves out). Needs the debug binary (tests/run.sh builds it;
# run alone, this script builds it when missing) and python3 with venv.
#
# The venv lives in <target>/schemathesis/venv and is rebuilt only when
# tests/schemathesis/requirements.txt changes. Knobs: see drive.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

REQS="$ROOT/tests/schemathesis/requirements.txt"
VENV="$TARGET_DIR/schemathesis/venv"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  echo "schemathesis stage: creating $VENV from tests/schemathesis/requirements.txt"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  echo "$want" >"$STAMP"
fi
echo "schemathesis stage: $("$VENV/bin/schemathesis" --version 2>&1 | head -1), openapi-spec-validator $("$VENV/bin/pip" show openapi-spec-validator 2>/dev/null | sed -n 's/^Version: //p')"

export CONFAB_BIN="${CONFAB_BIN:-$TARGET_DIR/debug/confab}"
# The JUnit report of the last run stays in <target>/schemathesis/report/.
export CONFAB_SCHEMATHESIS_REPORT_DIR="${CONFAB_SCHEMATHESIS_REPORT_DIR:-$TARGET_DIR/schemathesis}"
if [[ ! -x "$CONFAB_BIN" ]]; then
  cargo build --bin confab
fi
exec "$VENV/bin/python" "$ROOT/tests/schemathesis/drive.py"
