#!/usr/bin/env bash
# The test command: everything CI runs, from a fresh clone on a machine with
# only the Rust toolchain, gcc and Python. Installs what it needs, skips nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "tools: clang-19 (msl-emu compiles Metal kernels with it)"
if ! command -v clang-19 >/dev/null 2>&1 && [ -z "${MSL_EMU_CLANG:-}" ]; then
    apt_get() { if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi; }
    apt_get update -qq
    DEBIAN_FRONTEND=noninteractive apt_get install -y -qq clang-19 >/dev/null
fi
command -v clang-19 || echo "MSL_EMU_CLANG=$MSL_EMU_CLANG"

step "tools: Python packages for reference checks (gguf-py, numpy)"
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

step "tools: the aarch64-apple-darwin target (generated projects must type-check for Metal)"
rustup target add aarch64-apple-darwin

step "data: the real SmolLM2-135M-Instruct Q4_1 GGUF"
scripts/fetch_smollm2.sh

step "fixtures: files match tests/fixtures/manifest.json"
python3 scripts/make_fixtures.py --check
python3 scripts/make_quant_references.py --check

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests (the end-to-end ones build every generated project into target/generated-projects)"
cargo test --workspace

step "fuzz: every parser for a bounded time"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked --quiet cargo-fuzz
fi
scripts/fuzz.sh
