#!/usr/bin/env python3
"""Make the tiny fixture checkpoints, their GGUF conversions and reference outputs.

For each fixture in scripts/fixtures/specs.py this writes tests/fixtures/<name>/:
  hf/         a Hugging Face model dir: config.json, *.safetensors, tokenizer files,
              generation_config.json (made with transformers from a seeded random init,
              every parameter perturbed so nothing is an identity)
  gguf/       llama.cpp's convert_hf_to_gguf.py output (f32, plus q8_0/f16 for some)
  reference/  transformers outputs (f32 compute, eager attention): prompt_logits.npy
              [T, vocab] and reference.json (prompt ids/text, 16-token greedy continuation,
              chat template rendering)
  config_forms/  (hybrid fixtures) config.json in the released repos' layout, checked to
              load to bit-identical logits
and tests/fixtures/manifest.json describing all of them.

Re-running produces byte-identical files. Usage:
  python3 scripts/make_fixtures.py [--only NAME ...] [--llama-cpp DIR] [--out DIR] [--no-gguf]
  python3 scripts/make_fixtures.py --check     (verify the committed outputs; json+numpy only)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Offline and single-threaded before torch/transformers load: no hub look-ups,
# and no thread-count-dependent float reductions in the references.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from fixtures.specs import FIXTURES


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--only", nargs="*", help="fixture names to (re)make; the manifest keeps the others")
    ap.add_argument("--llama-cpp", type=Path, help="llama.cpp source dir (default: fetch llama-cpp-python sdist)")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("FORGE_CACHE", REPO / ".cache")))
    ap.add_argument("--no-gguf", action="store_true", help="skip the GGUF conversions")
    ap.add_argument("--check", action="store_true", help="only verify the outputs in --out against the manifest")
    args = ap.parse_args()

    if args.check:
        from fixtures.verify import check_all

        if not (args.out / "manifest.json").is_file():
            print(f"make_fixtures: error: {args.out / 'manifest.json'}: missing", file=sys.stderr)
            return 2
        return check_all(args.out)

    # Heavy imports only when generating, so --check runs without torch.
    import numpy as np
    import torch
    import transformers
    from fixtures import llama_cpp_source
    from fixtures.generate import SEED, make_fixture

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    known = {fx.name for fx in FIXTURES}
    for name in args.only or []:
        if name not in known:
            print(
                f"make_fixtures: error: unknown fixture {name!r} (known: {', '.join(sorted(known))})", file=sys.stderr
            )
            return 2

    llama_cpp = None
    converter = None
    if not args.no_gguf:
        llama_cpp = args.llama_cpp or llama_cpp_source.fetch(args.cache.resolve())
        if not (llama_cpp / "convert_hf_to_gguf.py").is_file():
            print(f"make_fixtures: error: {llama_cpp}: no convert_hf_to_gguf.py there", file=sys.stderr)
            return 2
        converter = llama_cpp_source.describe(llama_cpp)

    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    old = json.loads(manifest_path.read_text())["fixtures"] if manifest_path.is_file() else []
    entries = {e["name"]: e for e in old if e["name"] in known}
    for fx in FIXTURES:
        if args.only and fx.name not in args.only:
            continue
        print(f"make_fixtures: {fx.name} ({fx.arch})", flush=True)
        entries[fx.name] = make_fixture(fx, args.out, llama_cpp)
        if "moe" in entries[fx.name]:
            moe = entries[fx.name]["moe"]
            print(
                f"make_fixtures:   moe layers {moe['moe_layers']}, dense {moe['dense_layers']}; "
                f"experts unused by the prompt: {moe['experts_unused_by_prompt']}",
                flush=True,
            )
        if entries[fx.name]["gguf_error"]:
            print(f"make_fixtures:   gguf: {entries[fx.name]['gguf_error']}", flush=True)

    manifest = {
        "generated_by": "scripts/make_fixtures.py",
        "seed": SEED,
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": ".".join(map(str, sys.version_info[:3])),
        },
        "gguf_converter": converter,
        "reference": {
            "compute": "float32 weights and activations on CPU, eager attention, use_cache=False, 1 thread",
            "greedy": "argmax of the last position's logits, recomputing the full sequence each step; eos does not stop",
        },
        "fixtures": [entries[fx.name] for fx in FIXTURES if fx.name in entries],
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"make_fixtures: wrote {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
