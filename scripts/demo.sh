#!/usr/bin/env bash
# The main job on the bundled example: fetch SmolLM2-135M-Instruct (Q4_1 GGUF)
# and describe it with `forge inspect`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model="$(scripts/fetch_smollm2.sh | tail -n 1)"
cargo run --quiet --release -p forge -- inspect "$model"
