#!/usr/bin/env bash
# Makes a tiny random Llama checkpoint on the spot (no network, no torch),
# inspects and compiles it with forge, builds the generated project and
# generates text with it. The text is noise (the weights are random); what
# the example shows is the whole path, end to end, in a minute or two.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
scripts/install_tools.sh clang
out=target/examples/tiny-random
rm -rf "$out"
mkdir -p "$out"
python3 examples/tiny-random/make_checkpoint.py "$out/tiny-random-llama" --seed 7
cargo run --quiet --release -p forge -- inspect "$out/tiny-random-llama"
cargo run --quiet --release -p forge -- compile "$out/tiny-random-llama" "$out/project" --name tiny-random
CARGO_TARGET_DIR=target/generated-projects \
    cargo run --quiet --release --manifest-path "$out/project/Cargo.toml" -- \
    generate --prompt "${1:-the kernels are}" --max-tokens 24 --seed 7
