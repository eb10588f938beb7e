#!/usr/bin/env bash
# The main job on the bundled example: compile the real SmolLM2-135M-Instruct
# (Q4_1 GGUF, fetched on first use) with forge, build the generated project and
# generate text (examples/smollm2; installs clang-19 if it is missing).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../examples/smollm2/run.sh" "$@"
