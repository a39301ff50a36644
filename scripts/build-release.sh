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
# getrandom 0.3/0.4 find glibc's getrandom() with dlsym, which finds nothing
# in a static executable, and then fall back to reading /dev/urandom: the
# binary would need /dev. The cfg makes them call getrandom() directly
# (the syscall, Linux >= 3.17), so it runs in an empty chroot.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""

started=$SECONDS
cargo build --locked --profile "$PROFILE" --target "$TARGET" --bin confab >&2
took=$((SECONDS - started))

BIN="$CARGO_TARGET_DIR/$TARGET/$PROFILE/confab"
[[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 1; }
# `file` says "statically linked", or "static-pie linked" for the static
# position-independent executable rustc makes for this target.
if ! file "$BIN" | grep -qE "statically linked|static-pie linked"; then
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
