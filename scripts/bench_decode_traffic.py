#!/usr/bin/env python3
"""Decode traffic of compiled models on msl-emu, against what a token must read.

For each MODEL (a Hugging Face directory or a GGUF file) this compiles a
project with forge, builds it (debug; msl-emu's counters do not depend on the
profile) in the shared target dir the end-to-end tests use, runs

    <binary> bench --prompt-tokens P --gen-tokens G --kernels

and prints one row per model:

- dispatches per decode token, and per layer kind (the kinds' dispatch counts
  are solved from the per-token total and each kind's layer count when the
  model has one or two kinds, else left out);
- device bytes per decode token (distinct 64-byte lines per dispatch, from
  bench) ÷ the bytes a decode token must read: every weight tensor in
  weights.gguf (the embedding once as one row unless it is also the LM head;
  of a mixture's stacked experts, `ffn_*_exps`, only the k chosen of E:
  k/E of their bytes), each attention layer's keys and values up to the
  token's position, and the recurrent state;
- for mixtures of experts, the active ÷ total parameter ratio (weights a
  decode token reads ÷ all weights, in bytes of weights.gguf);
- KV-cache bytes per token of context (`forge inspect --json`) and what a
  dense transformer of the same layers and attention shape would keep.

Needs the gguf package (scripts/requirements-test.txt). Usage:

    python3 scripts/bench_decode_traffic.py tests/fixtures/lfm2/hf tests/fixtures/bamba/hf ...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target" / "generated-projects"


def run(cmd: list[str], **kw) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


def forge(*args: str) -> str:
    return run([str(ROOT / "target" / "debug" / "forge"), *args])


def weight_bytes(weights: Path, vocab: int, moe: dict | None) -> tuple[int, int]:
    """(bytes a decode token reads, all weight bytes) of weights.gguf."""
    sizes = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(weights).tensors}
    total = sum(sizes.values())
    needed = total
    if "output.weight" in sizes:
        # Only the token's row of an untied embedding is read.
        embedding = sizes["token_embd.weight"]
        needed -= embedding - embedding // vocab
    if moe:
        # Stacked experts (and their scale planes): only the chosen k of E are read.
        stacked = sum(n for name, n in sizes.items() if "_exps." in name)
        needed -= stacked - stacked * moe["experts_per_token"] // moe["num_experts"]
    return needed, total


def measure(model: str, prompt: int, gen: int, dtype: str | None, work: Path) -> dict:
    summary = json.loads(forge("inspect", "--json", model))
    out = work / (re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_"))
    forge("compile", model, str(out), "--name", "traffic-" + out.name, *(["--dtype", dtype] if dtype else []))
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET))
    run(["cargo", "build", "--quiet", "--manifest-path", str(out / "Cargo.toml")], env=env)
    binary = TARGET / "debug" / ("traffic-" + out.name).replace("_", "-")
    bench = run(
        [str(binary), "bench", "--prompt-tokens", str(prompt), "--gen-tokens", str(gen), "--kernels"],
        cwd=out,
    )
    dispatches = float(re.search(r"decode per token: ([\d.]+) dispatches", bench).group(1))
    device = float(re.search(r"decode per token: (\d+) bytes of device memory", bench).group(1))

    memory = summary["memory"]
    # Decode token t (0-based) sits at position prompt + t and reads that many keys plus its own.
    mean_keys = prompt + (gen + 1) / 2
    cache_read = memory["cache_bytes_per_token"] * mean_keys
    moe = summary["config"].get("moe")
    active, total = weight_bytes(out / "weights.gguf", summary["vocab_size"], moe)
    needed = active + cache_read + memory["state_bytes"]

    kinds = {k["kind"]: k["count"] for k in summary["layer_kinds"]}
    attention_width = 2 * (summary["kv_heads"] or 0) * (summary["head_dim"] or 0)
    element = {"F32": 4, "F16": 2}.get(memory["cache_dtype"] or "", 4)
    return {
        "model": model + (f" --dtype {dtype}" if dtype else ""),
        "layer_kinds": ", ".join(f"{k} ×{n}" for k, n in kinds.items()),
        "dispatches_per_token": dispatches,
        "per_kind": dispatches_per_kind(out / "src" / "model.rs"),
        "device_bytes_per_token": device,
        "needed_bytes_per_token": needed,
        "ratio": device / needed,
        "active_weight_ratio": active / total if moe else None,
        "kv_bytes_per_context_token": memory["cache_bytes_per_token"],
        "dense_kv_bytes_per_context_token": summary["layers"] * attention_width * element,
        "state_bytes": memory["state_bytes"],
    }


def dispatches_per_kind(model_rs: Path) -> dict[str, int]:
    """Dispatches in each generated `decode_<kind>` function (the conditional
    split-attention reduce, skipped below 256 positions, not counted)."""
    source = model_rs.read_text()
    counts = {}
    for m in re.finditer(r"\n    fn decode_(\w+)\(.*?\n    }\n", source, re.S):
        body = re.sub(r"if \(pass\.pos \+ 1\)\.div_ceil\(\d+\) > 1 \{.*?\n        }\n", "", m.group(0), flags=re.S)
        counts[m.group(1)] = body.count("batch.dispatch(")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--gen-tokens", type=int, default=8)
    parser.add_argument("--dtype", help="forge compile --dtype for every model")
    parser.add_argument("--json", action="store_true", help="one JSON object per model")
    args = parser.parse_args()
    run(["cargo", "build", "--quiet", "-p", "forge"], cwd=ROOT)
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as work:
        for model in args.models:
            row = measure(model, args.prompt_tokens, args.gen_tokens, args.dtype, Path(work))
            if args.json:
                print(json.dumps(row))
                continue
            kinds = ", ".join(f"{k} {n}" for k, n in row["per_kind"].items())
            print(
                f"{row['model']}: {row['layer_kinds']}; "
                f"{row['dispatches_per_token']:.0f} dispatches/token (per layer: {kinds}); "
                f"device {row['device_bytes_per_token']:.0f} B / needed {row['needed_bytes_per_token']:.0f} B "
                f"= {row['ratio']:.3f}; KV {row['kv_bytes_per_context_token']} B/context token "
                f"(dense {row['dense_kv_bytes_per_context_token']} B); state {row['state_bytes']} B"
                + (f"; active/total weights {row['active_weight_ratio']:.3f}" if row["active_weight_ratio"] else "")
            )


if __name__ == "__main__":
    main()
