#!/usr/bin/env bash
# The serve targets: compiles SmolLM2-135M-Instruct (the real Q4_1 GGUF) and the
# Granite-4.0-H hybrid fixture, builds them in release, and runs
# scripts/bench_serve.py on each (time to first token with and without a
# prompt-cache hit for a ~200-token shared prefix; requests per minute with
# 8 clients). Extra arguments go to bench_serve.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install_tools.sh clang
scripts/fetch_smollm2.sh >/dev/null
cargo build --release --quiet -p forge
out=target/bench-serve
target="$PWD/target/generated-projects"
for case in smollm2:.cache/SmolLM2-135M-Instruct.Q4_1.gguf granite4h:tests/fixtures/granite4h/hf; do
    name="bench_serve_${case%%:*}"
    rm -rf "$out/$name"
    target/release/forge compile "${case#*:}" "$out/$name" --name "$name" >/dev/null
    CARGO_TARGET_DIR="$target" cargo build --release --quiet --manifest-path "$out/$name/Cargo.toml"
    python3 scripts/bench_serve.py "$target/release/${name//_/-}" "$@"
done
