#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and .rpm (cargo-generate-rpm) from one confab
# binary, into dist/ (or --out DIR). Package metadata lives in Cargo.toml
# ([package.metadata.deb], [package.metadata.generate-rpm]); the inputs are
# committed under packaging/ and systemd/, except two staged here:
#   target/pkg-stage/confab        the binary to ship
#   target/pkg-stage/confab.toml   `confab default-config`, with
#                                  data_dir = "/var/lib/confab"
#
#   scripts/build-packages.sh                      static release binary (builds it)
#   scripts/build-packages.sh --binary PATH        package this binary as is
#   scripts/build-packages.sh --install-tools      only install the tools if missing
#   --out DIR   write the packages there instead of dist/
#   --fast      quicker, larger packages (for tests): cargo deb --fast, and a
#               gzip rpm payload (the default zstd takes ~40 s for a 50 MB binary)
#
# Prints the .deb's path, then the .rpm's, as the last two lines.
#
# The tools are installed with `cargo install --locked` when missing (cached
# in ~/.cargo/bin; several minutes the first time).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BINARY=""
OUT="$ROOT/dist"
TOOLS_ONLY=0
FAST=0
while (($#)); do
  case "$1" in
    --binary) BINARY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --install-tools) TOOLS_ONLY=1; shift ;;
    --fast) FAST=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

# Pinned so packages do not change under us; bump deliberately.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
install_tool() { # subcommand crate version
  if cargo "$1" --version 2>/dev/null | grep -q "$3"; then
    return
  fi
  echo "installing $2 $3 (cargo install --locked)" >&2
  # These tools copy and compress one file; their own speed hardly matters,
  # so build them without LTO and with light optimisation: a fresh CI
  # machine spends minutes less compiling them.
  CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo install --locked --quiet "$2" --version "$3" >&2
}
install_tool deb cargo-deb "$CARGO_DEB_VERSION"
install_tool generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"
((TOOLS_ONLY)) && exit 0

if [[ -z "$BINARY" ]]; then
  BINARY="$(scripts/build-release.sh | tail -n 1)"
fi
[[ -x "$BINARY" ]] || { echo "not an executable: $BINARY" >&2; exit 1; }

STAGE="$ROOT/target/pkg-stage"
rm -rf "$STAGE"
mkdir -p "$STAGE" "$OUT"
cp "$BINARY" "$STAGE/confab"
chmod 0755 "$STAGE/confab"
"$STAGE/confab" default-config \
  | sed 's|^#data_dir = "\./confab-data"$|data_dir = "/var/lib/confab"|' > "$STAGE/confab.toml"
grep -q '^data_dir = "/var/lib/confab"$' "$STAGE/confab.toml" \
  || { echo "could not set data_dir in the packaged confab.toml" >&2; exit 1; }
"$STAGE/confab" --config "$STAGE/confab.toml" check-config >&2

version="$("$STAGE/confab" version --json | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

deb="$OUT/confab_${version}_amd64.deb"
deb_flags=(--no-build --no-strip)
((FAST)) && deb_flags+=(--fast)
cargo deb "${deb_flags[@]}" --output "$deb" >&2
rpm="$OUT/confab-${version}-1.x86_64.rpm"
rpm_flags=()
((FAST)) && rpm_flags+=(--payload-compress gzip)
cargo generate-rpm "${rpm_flags[@]}" --output "$rpm" >&2
[[ -f "$deb" && -f "$rpm" ]] || { echo "missing package: $deb or $rpm" >&2; exit 1; }
echo "packages from $(file -b "$BINARY" | cut -d, -f1-2 | tr -d '\n') ($BINARY):" >&2
ls -l "$deb" "$rpm" >&2
echo "$deb"
echo "$rpm"
