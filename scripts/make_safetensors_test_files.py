#!/usr/bin/env python3
"""Writes the small safetensors checkpoints forge's reader tests use, with the
reference `safetensors` package (through torch, which has bfloat16), plus
expected.json describing every tensor written, which the Rust tests compare
against. The outputs are committed so the tests need neither torch nor
safetensors.

Directories (in tests/data/safetensors/):
  single/   model.safetensors: F32 F16 BF16 F64 I8 I16 I32 I64, a scalar and
            an empty tensor, __metadata__ {"format": "pt"}
  sharded/  two shards and model.safetensors.index.json
  loose/    a.safetensors and b.safetensors, no index

Usage: python3 scripts/make_safetensors_test_files.py [out_dir]
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float64: "F64", torch.int8: "I8", torch.int16: "I16",
    torch.int32: "I32", torch.int64: "I64",
}


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "safetensors"
    shutil.rmtree(out, ignore_errors=True)
    g = torch.Generator().manual_seed(1234)

    def t(shape, dtype):
        if dtype.is_floating_point:
            return torch.randn(shape, generator=g).to(dtype)
        return torch.randint(-100, 100, shape, generator=g).to(dtype)

    desc = {}

    def save(dirname, filename, tensors):
        d = out / dirname
        d.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(d / filename), metadata={"format": "pt"})
        for name, x in tensors.items():
            raw = x.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            desc.setdefault(dirname, []).append({
                "name": name, "dtype": NAMES[x.dtype], "shape": list(x.shape),
                "file": filename, "hex": raw.hex(),
            })

    save("single", "model.safetensors", {
        "embed.weight": t((5, 4), torch.float32), "norm.weight": t((4,), torch.float16),
        "proj.weight": t((3, 2, 2), torch.bfloat16), "ids": t((6,), torch.int64),
        "f64": t((2,), torch.float64), "i8": t((3,), torch.int8), "i16": t((2,), torch.int16),
        "i32": t((2, 1), torch.int32), "scalar": t((), torch.float32),
        "empty": t((0, 3), torch.float32),
    })
    shard1 = {"model.layers.0.w": t((4, 4), torch.bfloat16), "model.embed": t((8, 4), torch.bfloat16)}
    shard2 = {"model.layers.1.w": t((4, 4), torch.bfloat16), "lm_head.weight": t((8, 4), torch.float16)}
    save("sharded", "model-00001-of-00002.safetensors", shard1)
    save("sharded", "model-00002-of-00002.safetensors", shard2)
    weight_map = {k: "model-00001-of-00002.safetensors" for k in shard1}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in shard2})
    index = {"metadata": {"total_size": sum(x.nbytes for x in [*shard1.values(), *shard2.values()])},
             "weight_map": weight_map}
    (out / "sharded" / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    save("loose", "b.safetensors", {"b": t((2,), torch.float32)})
    save("loose", "a.safetensors", {"a": t((3,), torch.float16)})
    (out / "expected.json").write_text(json.dumps(desc, indent=1) + "\n")
    for p in sorted(out.rglob("*")):
        if p.is_file():
            print(f"{p}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
