#!/usr/bin/env bash
# The main job on the bundled example: fetch SmolLM2-135M-Instruct (Q4_1 GGUF),
# compile it with `forge compile` into target/demo/smollm2 (Q4_1 tensors
# become Q8_0 on the GPU), build the generated project and generate text.
# On Linux the Metal kernels run through msl-emu on the CPU, so expect about
# a token per second; on an Apple-silicon Mac the same project runs on Metal.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="$(scripts/fetch_smollm2.sh | tail -n 1)"
prompt="${1:-The capital of France is}"
out=target/demo/smollm2
rm -rf "$out"
mkdir -p target/demo
cargo run --quiet --release -p forge -- compile "$model" "$out"
CARGO_TARGET_DIR=target/generated-projects \
    cargo run --quiet --release --manifest-path "$out/Cargo.toml" -- \
    generate --prompt "$prompt" --max-tokens 32 --temperature 0
