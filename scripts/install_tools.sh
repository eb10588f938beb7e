#!/usr/bin/env bash
# Installs what forge's commands need on a fresh machine (one that has only
# the Rust toolchain, gcc and Python), skipping whatever is already there.
# The demo, the examples and the test command all call this one script.
#
# Usage: scripts/install_tools.sh TOOL...
#   clang        clang-19 from apt: msl-emu compiles Metal kernels with it
#                (not needed on macOS, where Metal compiles them; skipped
#                when MSL_EMU_CLANG names another clang)
#   python       the Python packages of scripts/requirements-test.txt
#   macos-target the aarch64-apple-darwin Rust target (type-checks for Metal)
#   cargo-fuzz   cargo-fuzz, for scripts/fuzz.sh
#   curl         curl from apt: the serve tests run the generated README's curl example
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'install_tools: %s\n' "$*"; }
die() { printf 'install_tools: error: %s\n' "$*" >&2; exit 1; }

apt_get() {
    if [ "$(id -u)" = 0 ]; then
        apt-get "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get "$@"
    else
        die "apt-get needs root and sudo is not installed"
    fi
}

install_clang() {
    if [ "$(uname -s)" = Darwin ]; then
        say "macOS: Metal compiles the kernels, clang-19 is not needed"
    elif [ -n "${MSL_EMU_CLANG:-}" ]; then
        say "clang: MSL_EMU_CLANG=$MSL_EMU_CLANG"
    elif command -v clang-19 >/dev/null 2>&1; then
        say "clang: $(command -v clang-19)"
    else
        command -v apt-get >/dev/null 2>&1 ||
            die "clang-19 is not installed and there is no apt-get to install it (install clang 17 or newer and set MSL_EMU_CLANG)"
        say "clang: installing clang-19 with apt-get"
        apt_get update -qq
        DEBIAN_FRONTEND=noninteractive apt_get install -y -qq clang-19 >/dev/null
        command -v clang-19 >/dev/null 2>&1 || die "apt-get installed clang-19 but it is not on PATH"
        say "clang: $(command -v clang-19)"
    fi
}

install_python() {
    say "python: scripts/requirements-test.txt"
    python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
}

install_macos_target() {
    say "rust: aarch64-apple-darwin target"
    rustup target add aarch64-apple-darwin
}

install_curl() {
    if command -v curl >/dev/null 2>&1; then
        say "curl: $(command -v curl)"
    else
        command -v apt-get >/dev/null 2>&1 || die "curl is not installed and there is no apt-get to install it"
        say "curl: installing with apt-get"
        apt_get update -qq
        DEBIAN_FRONTEND=noninteractive apt_get install -y -qq curl >/dev/null
    fi
}

install_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        say "cargo-fuzz: $(cargo fuzz --version)"
    else
        say "cargo-fuzz: cargo install --locked cargo-fuzz"
        cargo install --locked --quiet cargo-fuzz
    fi
}

[ "$#" -gt 0 ] || die "name at least one tool: clang python macos-target cargo-fuzz curl"
for tool in "$@"; do
    case "$tool" in
    clang) install_clang ;;
    python) install_python ;;
    macos-target) install_macos_target ;;
    cargo-fuzz) install_cargo_fuzz ;;
    curl) install_curl ;;
    *) die "unknown tool '$tool' (clang python macos-target cargo-fuzz curl)" ;;
    esac
done
