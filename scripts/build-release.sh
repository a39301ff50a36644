#!/usr/bin/env bash
# Builds the release artifact: one fully static x86_64 Linux executable
# (glibc linked statically with +crt-static; DNS through hickory-dns, so no
# NSS at run time) at dist/confab-<version>-x86_64-linux, plus its sha256.
#
#   scripts/build-release.sh                   full LTO, [profile.release]
#   scripts/build-release.sh --profile static-test   quicker, for tests
#
# The build uses its own target directory (target/static by default,
# CARGO_TARGET_DIR overrides) so it never waits on or disturbs debug builds.
# Prints the path of the binary on the last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROFILE=release
while (($#)); do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

TARGET=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/static}"
# With an explicit --target, RUSTFLAGS apply to the target only, not to
# build scripts and proc-macros (which cannot be static).
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"

started=$SECONDS
cargo build --locked --profile "$PROFILE" --target "$TARGET" --bin confab >&2
took=$((SECONDS - started))

BIN="$CARGO_TARGET_DIR/$TARGET/$PROFILE/confab"
[[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 1; }
if ! file "$BIN" | grep -q "statically linked"; then
  echo "$BIN is not statically linked:" >&2
  file "$BIN" >&2
  exit 1
fi
version="$("$BIN" version --json | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')"
size=$(stat -c %s "$BIN")
echo "built $BIN in ${took}s: $(numfmt --to=iec --suffix=B "$size") ($size bytes), profile $PROFILE" >&2
if [[ "$PROFILE" == release ]]; then
  mkdir -p dist
  out="dist/confab-$version-x86_64-linux"
  cp "$BIN" "$out"
  (cd dist && sha256sum "$(basename "$out")" > "$(basename "$out").sha256")
  echo "artifact: $out" >&2
  BIN="$ROOT/$out"
fi
echo "$BIN"
