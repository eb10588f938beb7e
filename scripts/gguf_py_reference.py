#!/usr/bin/env python3
"""Reference data for forge-weights' block formats, computed by gguf-py.

gguf-py (`gguf.quants`) is llama.cpp's own Python implementation of the GGML
block formats; forge's Rust code must agree with it. This script writes what
`crates/forge-weights/tests/quant_gguf_py.rs` compares against:

  reference --model SMOLLM2.gguf --out DIR
      DIR/sizes.json      gguf-py's GGML_QUANT_SIZES with type ids
      DIR/smollm2.json    every tensor of the model: type, shape, file offset,
                          byte length, sha256 of gguf-py's dequantised f32
                          (little-endian), and a few sampled values
      DIR/dequant/T.bin   random blocks of format T with sane f16 scales,
      DIR/dequant/T.f32   and gguf-py's dequantisation of them
      DIR/quant/X.f32     quantiser inputs (real tensors and synthetic ones)
      DIR/quant/X.T.bin   gguf-py's quantisation of X to T, where it has one
    Regenerated only when this script, gguf-py's version or the model changes
    (a stamp file records them); writes into a temporary directory and renames
    it into place, so concurrent or interrupted runs never leave half a result.

  dequantize TYPE BYTES F32 [TYPE BYTES F32 ...]
      gguf-py's dequantisation of raw byte files (for blocks forge produced).

Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

try:
    import numpy as np
    import gguf
    import gguf.quants
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
except ImportError as e:  # the Rust test shows this line as its failure
    sys.exit(f"gguf_py_reference: error: {e}; install with `python3 -m pip install -r scripts/requirements-test.txt`")

# Bumped by hand when the contents of the reference change meaning.
FORMAT_VERSION = 1

# Formats whose random blocks we dequantise (F32 is a plain reinterpretation).
DEQUANT_TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# Offsets (within a block) of the f16 scale fields of each format; random
# bytes there would give inf/NaN/1e4-sized scales, so we overwrite them.
F16_FIELDS = {
    "Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
# Formats gguf-py can quantise that forge quantises too.
QUANT_TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
# Blocks per random dequantisation case: enough to hit every bit pattern of
# every code field many times over.
RANDOM_BLOCKS = 512
SAMPLES_PER_TENSOR = 16


def die(msg: str) -> None:
    sys.exit(f"gguf_py_reference: error: {msg}")


def qtype(name: str) -> GGMLQuantizationType:
    try:
        return GGMLQuantizationType[name]
    except KeyError:
        die(f"unknown GGML type {name!r}")
        raise


def sha256_f32(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f4").tobytes()).hexdigest()


def stamp_for(model: Path) -> str:
    st = model.stat()
    me = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return json.dumps({
        "format": FORMAT_VERSION, "script": me, "gguf": _gguf_version(),
        "numpy": np.__version__, "model_size": st.st_size, "model_mtime_ns": st.st_mtime_ns,
    }, sort_keys=True)


def _gguf_version() -> str:
    from importlib.metadata import version
    return version("gguf")


def write_sizes(out: Path) -> None:
    sizes = {t.name: [int(t.value), int(b), int(s)] for t, (b, s) in GGML_QUANT_SIZES.items()}
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1, sort_keys=True))


def write_model_reference(model: Path, out: Path) -> dict[str, np.ndarray]:
    """Hashes gguf-py's dequantisation of every tensor; returns a few of them
    as float32 arrays for use as quantiser inputs."""
    try:
        reader = gguf.GGUFReader(str(model))
    except Exception as e:
        die(f"{model}: gguf-py cannot read it: {e}")
    tensors = []
    keep: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(-1)
        n = int(t.n_elements)
        if ref.size != n:
            die(f"{model}: tensor {t.name}: gguf-py dequantised {ref.size} values, expected {n}")
        idx = np.unique(np.linspace(0, n - 1, SAMPLES_PER_TENSOR).astype(np.int64))
        tensors.append({
            "name": t.name,
            "type": t.tensor_type.name,
            # GGUF order: shape[0] is the row length (ggml's ne0).
            "shape": [int(d) for d in t.shape],
            "offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
            "n_elements": n,
            "sha256": sha256_f32(ref),
            "samples": [[int(i), int(ref[i:i + 1].view(np.uint32)[0])] for i in idx],
        })
        if t.name in ("token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_q.weight"):
            keep[t.name] = ref.reshape(-1, int(t.shape[0]))
    (out / "smollm2.json").write_text(json.dumps({"model": str(model), "tensors": tensors}, indent=1))
    return keep


def random_blocks(name: str, rng: np.random.Generator) -> np.ndarray:
    block, size = GGML_QUANT_SIZES[qtype(name)]
    if name in ("F16", "BF16"):
        # Finite values of many magnitudes (NaN payloads are not worth comparing).
        x = (rng.standard_normal(RANDOM_BLOCKS * 64) * np.exp(rng.uniform(-20, 20, RANDOM_BLOCKS * 64))).astype(np.float32)
        if name == "F16":
            x = np.clip(x, -60000, 60000)
            return x.astype(np.float16).view(np.uint8)
        return gguf.quants.quantize(x, GGMLQuantizationType.BF16).view(np.uint8)
    raw = rng.integers(0, 256, size=(RANDOM_BLOCKS, size), dtype=np.uint8)
    for at in F16_FIELDS[name]:
        # Magnitudes like real weight scales, both signs, some zeros and subnormals.
        d = (rng.standard_normal(RANDOM_BLOCKS) * np.exp(rng.uniform(-12, 0, RANDOM_BLOCKS))).astype(np.float16)
        d[::37] = 0
        d[5::41] = np.float16(3e-7)
        raw[:, at:at + 2] = d.view(np.uint8).reshape(RANDOM_BLOCKS, 2)
    return raw.reshape(-1)


def write_dequant_cases(out: Path, rng: np.random.Generator) -> None:
    d = out / "dequant"
    d.mkdir()
    for name in DEQUANT_TYPES:
        raw = random_blocks(name, rng)
        ref = gguf.quants.dequantize(raw, qtype(name)).astype(np.float32, copy=False)
        raw.tofile(d / f"{name}.bin")
        ref.astype("<f4").tofile(d / f"{name}.f32")


def synthetic_input(rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed rows like trained weights, plus blocks that stress edge cases."""
    x = (rng.standard_t(df=5, size=(256, 1024)) * 0.02).astype(np.float32)
    x[0, :256] = 0.0                      # all-zero blocks
    x[1, :256] = 0.125                    # constant positive
    x[2, :256] = -0.5                     # constant negative
    x[3, :256] = np.abs(x[3, :256])       # all positive: Q4_K/Q4_1 min must be 0
    x[4, :256] = -np.abs(x[4, :256])      # all negative
    x[5, 7] = 3.0                         # one outlier
    x[6, :256] *= 1e-4                    # tiny values (f16 scales go subnormal)
    x[7, :256] *= 300.0                   # large values
    x[8, 0:32] = np.float32(0.7)          # ties in the argmax of |x|
    x[8, 5] = np.float32(-0.7)
    x[9, :] = np.linspace(-1, 1, 1024, dtype=np.float32)  # rounding half-way points
    return x


def write_quant_cases(out: Path, inputs: dict[str, np.ndarray]) -> None:
    d = out / "quant"
    d.mkdir()
    for name, x in inputs.items():
        x = np.ascontiguousarray(x, dtype=np.float32)
        (d / f"{name}.f32").write_bytes(x.astype("<f4").tobytes())
        (d / f"{name}.shape").write_text(f"{x.shape[0]} {x.shape[1]}\n")
        for t in QUANT_TYPES:
            q = gguf.quants.quantize(x, qtype(t))
            (d / f"{name}.{t}.bin").write_bytes(np.ascontiguousarray(q).view(np.uint8).tobytes())


def cmd_reference(args: argparse.Namespace) -> None:
    model = Path(args.model)
    if not model.is_file():
        die(f"{model}: no such file (run scripts/fetch_smollm2.sh)")
    out = Path(args.out)
    stamp = stamp_for(model)
    stamp_file = out / "stamp.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Test binaries (and engineers) may run this at the same time: the lock
    # makes one of them build the reference and the others find it built.
    with open(out.parent / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            print(f"gguf_py_reference: {out} is up to date")
            return
        build_reference(model, out, stamp)


def build_reference(model: Path, out: Path, stamp: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        print(f"gguf_py_reference: writing {out} (gguf-py {_gguf_version()}, model {model})")
        write_sizes(tmp)
        kept = write_model_reference(model, tmp)
        rng = np.random.default_rng(20240611)
        write_dequant_cases(tmp, rng)
        inputs = {
            "synthetic": synthetic_input(rng),
            # Real rows: the Q8_0 token embedding (first 512 rows) and a Q4_1
            # projection, exactly on their source grids (re-quantising them
            # must reproduce gguf-py's bytes all the same), and another Q4_1
            # projection with a little noise to move it off its grid.
            "token_embd": kept["token_embd.weight"][:512],
            "ffn_down": kept["blk.0.ffn_down.weight"],
            "attn_q_noisy": kept["blk.0.attn_q.weight"]
            + rng.standard_normal(kept["blk.0.attn_q.weight"].shape).astype(np.float32) * np.float32(0.003),
        }
        write_quant_cases(tmp, inputs)
        (tmp / "stamp.json").write_text(stamp)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=out.name + ".old.", dir=out.parent))
            os.replace(out, old / "ref")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"gguf_py_reference: wrote {out}")


def cmd_dequantize(args: argparse.Namespace) -> None:
    # Triples, so one interpreter start (most of the cost) serves many files.
    if len(args.jobs) % 3 != 0 or not args.jobs:
        die("dequantize takes TYPE IN OUT triples")
    for i in range(0, len(args.jobs), 3):
        name, src, dst = args.jobs[i:i + 3]
        t = qtype(name)
        try:
            raw = np.fromfile(src, dtype=np.uint8)
        except OSError as e:
            die(f"{src}: {e}")
        block, size = GGML_QUANT_SIZES[t]
        if raw.size == 0 or raw.size % size != 0:
            die(f"{src}: {raw.size} bytes is not a positive whole number of {t.name} blocks of {size} bytes")
        ref = gguf.quants.dequantize(raw, t).astype(np.float32, copy=False)
        ref.astype("<f4").tofile(dst)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference")
    r.add_argument("--model", required=True)
    r.add_argument("--out", required=True)
    d = sub.add_parser("dequantize")
    d.add_argument("jobs", nargs="+", metavar="TYPE IN OUT")
    args = p.parse_args()
    {"reference": cmd_reference, "dequantize": cmd_dequantize}[args.cmd](args)


if __name__ == "__main__":
    main()
