#!/usr/bin/env bash
# The test command: everything CI runs, from a fresh clone on a machine with
# only the Rust toolchain, gcc and Python. Installs what it needs, skips nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "tools: clang-19 (msl-emu), Python reference packages (and the openai client), the aarch64-apple-darwin target, cargo-fuzz, curl"
scripts/install_tools.sh clang python macos-target cargo-fuzz curl

step "data: the real SmolLM2-135M-Instruct Q4_1 and Gemma 3 270M Q4_K_M GGUFs"
scripts/fetch_smollm2.sh
scripts/fetch_gemma3.sh

step "fixtures: files match tests/fixtures/manifest.json"
python3 scripts/make_fixtures.py --check
python3 scripts/make_quant_references.py --check
python3 scripts/make_k_quant_ggufs.py --check

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "forge-runtime type-checks for Metal (aarch64-apple-darwin)"
cargo check --quiet --target aarch64-apple-darwin -p forge-runtime
cargo clippy --quiet --target aarch64-apple-darwin -p forge-runtime -- -D warnings

step "tests (the end-to-end ones build every generated project into target/generated-projects)"
cargo test --workspace

step "examples"
examples/tiny-random/run.sh
examples/smollm2/run.sh

step "fuzz: every parser for a bounded time"
scripts/fuzz.sh
