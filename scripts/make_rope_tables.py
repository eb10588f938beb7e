#!/usr/bin/env python3
"""Dump the rope inverse-frequency tables transformers computes for the fixtures with rope scaling.

For each fixture below, loads tests/fixtures/<name>/hf with transformers, takes the rotary
embedding module of the model (its `inv_freq` buffers and `attention_scaling`, one per layer
type for Gemma 3) and, for LongRoPE, also the long-factor table transformers switches to past
original_max_position_embeddings. Writes tests/fixtures/rope_tables.json, which
crates/forge-codegen/tests/kernel_rope_tables.rs compares `rope_tables::rope_table` against.

Usage: python3 scripts/make_rope_tables.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = ["llama3", "llama_linear_v4cfg", "qwen3_yarn", "phi3_longrope", "gemma3_text"]


def floats(t: torch.Tensor) -> list[float]:
    # float32 values printed through Python floats round-trip exactly.
    return [float(v) for v in t.to(torch.float32).tolist()]


def tables(name: str) -> dict:
    path = REPO / "tests" / "fixtures" / name / "hf"
    config = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rotary = model.model.rotary_emb
    out = {}
    layer_types = getattr(rotary, "layer_types", None)
    if layer_types:
        # Gemma 3: one table per layer type, `<type>_inv_freq` and `<type>_attention_scaling`.
        for layer_type in sorted(set(layer_types)):
            out[layer_type] = {
                "inv_freq": floats(getattr(rotary, f"{layer_type}_inv_freq")),
                "attention_factor": float(getattr(rotary, f"{layer_type}_attention_scaling")),
            }
        return out
    entry = {
        "inv_freq": floats(rotary.inv_freq),
        "attention_factor": float(rotary.attention_scaling),
    }
    params = config.rope_parameters
    if params.get("rope_type") == "longrope":
        original = params["original_max_position_embeddings"]
        # What transformers' longrope_frequency_update uses once max(position)+1 > original.
        long_inv_freq, long_factor = ROPE_INIT_FUNCTIONS["longrope"](config, None, seq_len=original + 1)
        entry["long_inv_freq"] = floats(long_inv_freq)
        entry["long_attention_factor"] = float(long_factor)
        entry["original_context_length"] = original
    out["full_attention"] = entry
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "rope_tables.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    doc = {
        "generated_by": "scripts/make_rope_tables.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "fixtures": {name: tables(name) for name in FIXTURES},
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
