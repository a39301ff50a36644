#!/usr/bin/env bash
# Vendored third-party files of the browser app (assets/vendor/).
#
#   scripts/vendor.sh           fetch the pinned versions below from the npm registry
#                               (`npm pack`), copy the files the app needs into
#                               assets/vendor/<name>@<version>/ with their licenses, and
#                               write assets/vendor/manifest.json (package, version,
#                               tarball integrity, every file with its sha256)
#   scripts/vendor.sh --check   verify, without changing anything, that every vendored
#                               file matches the manifest's sha256, that the manifest
#                               lists every file under assets/vendor/, and that every file
#                               is byte for byte what the pinned version's npm tarball
#                               holds (the tarballs are downloaded into a temp dir)
#
# Only npm (and the node that comes with it) is needed, and only to run this script:
# building and running confab needs no Node toolchain.
#
# To upgrade a library, change its version in PACKAGES, run the script, look at the
# diff (the app may need changes), and commit assets/vendor/ together.
#
# One file is not copied verbatim: preact's hooks module imports the bare specifier
# "preact", which a browser can only resolve through an import map, and an inline
# import map is inline script (forbidden by the CSP). The script rewrites that one
# import to "./preact.mjs"; the manifest records the rewrite and the upstream hash,
# and --check applies the same rewrite to the tarball's file before comparing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/assets/vendor"

# One entry per line: npm package, version, directory name under assets/vendor/
# (<dir>@<version>), then the files as tarball-path=>vendored-path (a trailing /*.ext
# glob copies every matching file of a tarball directory). A third part after
# another => is a rewrite "from|to" applied to that file.
PACKAGES='
preact                  10.29.8  preact        package/dist/preact.mjs=>preact.mjs package/hooks/dist/hooks.mjs=>hooks.mjs=>from"preact"|from"./preact.mjs" package/LICENSE=>LICENSE
htm                     3.1.1    htm           package/dist/htm.mjs=>htm.mjs package/LICENSE=>LICENSE
marked                  18.2.1   marked        package/lib/marked.esm.js=>marked.esm.js package/LICENSE=>LICENSE
dompurify               3.4.18   dompurify     package/dist/purify.es.mjs=>purify.es.mjs package/LICENSE=>LICENSE package/LICENSE-MPL=>LICENSE-MPL
@highlightjs/cdn-assets 11.12.0  highlight.js  package/es/highlight.min.js=>highlight.min.js package/LICENSE=>LICENSE
katex                   0.19.1   katex         package/dist/katex.min.js=>katex.min.js package/dist/katex.min.css=>katex.min.css package/dist/fonts/*.woff2=>fonts/ package/LICENSE=>LICENSE
'

MODE=write
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

command -v npm >/dev/null || { echo "vendor.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
command -v node >/dev/null || { echo "vendor.sh: node is needed" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Download and unpack every pinned tarball. `npm pack` checks the tarball against the
# registry's integrity hash; its --json answer gives that hash for the manifest.
echo "$PACKAGES" | while read -r name version dir _; do
  [[ -n "$name" ]] || continue
  safe="${name//\//_}"
  mkdir -p "$TMP/$safe"
  (cd "$TMP/$safe" && npm pack "$name@$version" --json --silent --loglevel=error >pack.json 2>pack.err) || {
    cat "$TMP/$safe/pack.err" >&2
    echo "vendor.sh: npm pack $name@$version failed" >&2
    exit 1
  }
  tgz="$(ls "$TMP/$safe"/*.tgz)"
  mkdir -p "$TMP/$safe/x"
  tar -xzf "$tgz" -C "$TMP/$safe/x"
done

PACKAGES="$PACKAGES" TMP="$TMP" VENDOR="$VENDOR" MODE="$MODE" node --input-type=module - <<'EOF'
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const { PACKAGES, TMP, VENDOR, MODE } = process.env;
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
const rel = (p) => path.relative(VENDOR, p).split(path.sep).join('/');

function applyRewrite(buf, rewrite, file) {
  if (!rewrite) return buf;
  const text = buf.toString('utf8');
  const count = text.split(rewrite.from).length - 1;
  if (count !== 1) throw new Error(`${file}: expected exactly one "${rewrite.from}" to rewrite, found ${count}`);
  return Buffer.from(text.replace(rewrite.from, rewrite.to), 'utf8');
}

// What the pinned tarballs say the vendored tree must be.
const expected = [];
for (const line of PACKAGES.split('\n')) {
  const [name, version, dir, ...specs] = line.trim().split(/\s+/);
  if (!name) continue;
  const base = path.join(TMP, name.replace('/', '_'));
  const pack = JSON.parse(fs.readFileSync(path.join(base, 'pack.json'), 'utf8'))[0];
  const pkgDir = `${dir}@${version}`;
  const files = [];
  for (const spec of specs) {
    const [from, to, rw] = spec.split('=>');
    const rewrite = rw ? { from: rw.split('|')[0], to: rw.split('|')[1] } : undefined;
    let sources;
    if (from.includes('*')) {
      const srcDir = path.dirname(from);
      const ext = path.basename(from).replace('*', '');
      sources = fs.readdirSync(path.join(base, 'x', srcDir)).filter((f) => f.endsWith(ext)).sort()
        .map((f) => [`${srcDir}/${f}`, `${to}${f}`]);
    } else {
      sources = [[from, to]];
    }
    for (const [src, dest] of sources) {
      const upstream = fs.readFileSync(path.join(base, 'x', src));
      const content = applyRewrite(upstream, rewrite, `${name}@${version}/${src}`);
      const entry = { path: `${pkgDir}/${dest}`, from: src.replace(/^package\//, ''), sha256: sha256(content), size: content.length };
      if (rewrite) Object.assign(entry, { upstream_sha256: sha256(upstream), rewrite });
      files.push({ entry, content });
    }
  }
  expected.push({ name, version, dir: pkgDir, integrity: pack.integrity, files });
}

const manifest = {
  comment: 'Written by scripts/vendor.sh; checked by scripts/vendor.sh --check. Do not edit by hand.',
  packages: expected.map(({ name, version, dir, integrity, files }) => ({
    name, version, dir, integrity,
    size: files.reduce((n, f) => n + f.content.length, 0),
    files: files.map((f) => f.entry),
  })),
};
manifest.total_size = manifest.packages.reduce((n, p) => n + p.size, 0);
const manifestText = JSON.stringify(manifest, null, 2) + '\n';

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(path.join(dir, d.name)) : [path.join(dir, d.name)]);
}

if (MODE === 'write') {
  for (const p of fs.existsSync(VENDOR) ? fs.readdirSync(VENDOR) : []) {
    if (p.includes('@')) fs.rmSync(path.join(VENDOR, p), { recursive: true, force: true });
  }
  for (const p of expected) {
    for (const f of p.files) {
      const out = path.join(VENDOR, f.entry.path);
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, f.content);
    }
  }
  fs.writeFileSync(path.join(VENDOR, 'manifest.json'), manifestText);
  for (const p of manifest.packages) console.log(`  ${p.dir.padEnd(26)} ${String(p.files.length).padStart(3)} files ${(p.size / 1024).toFixed(1).padStart(8)} KiB`);
  console.log(`vendor.sh: wrote assets/vendor (${(manifest.total_size / 1024).toFixed(1)} KiB) and manifest.json`);
} else {
  const problems = [];
  const manifestPath = path.join(VENDOR, 'manifest.json');
  let committed;
  try {
    committed = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  } catch (e) {
    problems.push(`assets/vendor/manifest.json is missing or not JSON: ${e.message}`);
  }
  const listed = new Map();
  for (const p of committed?.packages ?? []) for (const f of p.files) listed.set(f.path, f);
  // 1. Every file on disk is listed and has the manifest's hash.
  const onDisk = walk(VENDOR).map(rel).filter((p) => p !== 'manifest.json');
  for (const p of onDisk) {
    const f = listed.get(p);
    if (!f) { problems.push(`${p}: not in manifest.json`); continue; }
    const got = sha256(fs.readFileSync(path.join(VENDOR, p)));
    if (got !== f.sha256) problems.push(`${p}: sha256 ${got} does not match manifest.json (${f.sha256})`);
  }
  for (const p of listed.keys()) if (!onDisk.includes(p)) problems.push(`${p}: listed in manifest.json but missing`);
  // 2. The manifest is exactly what the pinned tarballs give.
  for (const p of expected) {
    const m = committed?.packages?.find((x) => x.name === p.name);
    if (!m) { problems.push(`${p.name}: pinned ${p.version} but not in manifest.json`); continue; }
    if (m.version !== p.version) problems.push(`${p.name}: manifest.json has ${m.version}, vendor.sh pins ${p.version}`);
    if (m.integrity !== p.integrity) problems.push(`${p.name}@${p.version}: tarball integrity ${p.integrity} differs from manifest.json (${m.integrity})`);
    for (const f of p.files) {
      const l = listed.get(f.entry.path);
      if (!l) problems.push(`${f.entry.path}: in the ${p.name}@${p.version} tarball selection but not in manifest.json`);
      else if (l.sha256 !== f.entry.sha256) problems.push(`${f.entry.path}: manifest sha256 ${l.sha256} is not the tarball's (${f.entry.sha256})`);
      const disk = path.join(VENDOR, f.entry.path);
      if (fs.existsSync(disk) && sha256(fs.readFileSync(disk)) !== f.entry.sha256) problems.push(`${f.entry.path}: differs from ${p.name}@${p.version}'s ${f.entry.from}`);
    }
  }
  if (committed && JSON.stringify(committed) !== JSON.stringify(manifest)) {
    if (!problems.length) problems.push('manifest.json differs from what scripts/vendor.sh would write (run it and commit the result)');
  }
  if (problems.length) {
    for (const p of problems) console.error(`vendor.sh --check: ${p}`);
    console.error(`vendor.sh --check: FAILED (${problems.length} problem${problems.length > 1 ? 's' : ''}); run scripts/vendor.sh to refresh`);
    process.exit(1);
  }
  const n = manifest.packages.reduce((k, p) => k + p.files.length, 0);
  console.log(`vendor.sh --check: ok, ${manifest.packages.length} packages, ${n} files (${(manifest.total_size / 1024).toFixed(1)} KiB) match manifest.json and the pinned npm tarballs`);
}
EOF
