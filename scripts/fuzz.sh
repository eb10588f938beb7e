#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for a bounded time,
# seeded from fuzz/seeds/<target>/ and the matching files under tests/data.
# Exits non-zero if any target crashes (the crashing input is left in
# fuzz/artifacts/<target>/).
#
# Usage: scripts/fuzz.sh [target...]      (default: every target)
# Env:   FUZZ_SECONDS  run time per target (default 20)
#        CARGO_TARGET_DIR  where to build (default fuzz/target)
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets it pass its -Z sanitizer flags.
set -euo pipefail

die() {
    echo "fuzz: error: $*" >&2
    exit 1
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-20}"
[[ "$seconds" =~ ^[0-9]+$ ]] || die "FUZZ_SECONDS must be a whole number of seconds, got '$seconds'"
cargo fuzz --version >/dev/null 2>&1 || die "cargo-fuzz is not installed (cargo install cargo-fuzz)"
export RUSTC_BOOTSTRAP=1
cd "$repo_root/fuzz"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
[ "${#targets[@]}" -gt 0 ] || die "no fuzz targets found in fuzz/"

# Seed files from the test data each parser reads; a target not listed here
# uses only fuzz/seeds/<target>/.
seed_files() {
    case "$1" in
    gguf_header) find "$repo_root/tests/data" -name '*.gguf' ;;
    safetensors_header) find "$repo_root/tests/data" -name '*.safetensors' ;;
    hf_config) find "$repo_root/tests/data" "$repo_root/tests/fixtures" -name 'config.json' ;;
    esac
    if [ -d "$repo_root/fuzz/seeds/$1" ]; then
        find "$repo_root/fuzz/seeds/$1" -type f
    fi
}

start=$(date +%s)
cargo fuzz build || die "building the fuzz targets failed"
echo "fuzz: built in $(($(date +%s) - start)) s"

for target in "${targets[@]}"; do
    corpus="$repo_root/fuzz/corpus/$target"
    mkdir -p "$corpus"
    while IFS= read -r seed; do
        [ -n "$seed" ] && cp "$seed" "$corpus/seed-$(basename "$seed")"
    done < <(seed_files "$target")
    echo "fuzz: $target for ${seconds} s ($(find "$corpus" -type f | wc -l) corpus files)"
    # -malloc_limit_mb makes any single allocation over 1 GiB a crash: the
    # parsers must never size an allocation from an unchecked count.
    if ! cargo fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
        >"$corpus.log" 2>&1; then
        tail -n 30 "$corpus.log" >&2
        die "$target crashed; input saved under fuzz/artifacts/$target/ (log: $corpus.log)"
    fi
    grep -E '^stat::number_of_executed_units|^Done' "$corpus.log" || true
done
echo "fuzz: all ${#targets[@]} targets ran without a crash in $(($(date +%s) - start)) s"
