#!/usr/bin/env python3
"""Quantise fixture GGUFs to K-quants (and the legacy Q4_1/Q5_x mixes) with llama.cpp's own quantiser.

gguf-py can decode K-quants but not encode them, so the K-quant fixtures are
made the way users make theirs: llama.cpp's llama_model_quantize (what the
llama-quantize tool calls), through llama-cpp-python. For each (fixture,
format) in CASES it quantises tests/fixtures/<fixture>/gguf/<fixture>.f16.gguf
into tests/fixtures/<fixture>/gguf/<fixture>.<format>.gguf:

  q4_k    LLAMA_FTYPE_MOSTLY_Q4_K_S, pure: every matrix Q4_K
  q5_k    LLAMA_FTYPE_MOSTLY_Q5_K_S, pure: every matrix Q5_K
  q6_k    LLAMA_FTYPE_MOSTLY_Q6_K, pure: every matrix Q6_K
  q4_k_m  LLAMA_FTYPE_MOSTLY_Q4_K_M as llama.cpp mixes it (Q4_K, with Q6_K
          for the head and some attn_v / ffn_down), as shipped Q4_K_M files are
  q4_1, q5_0, q5_1
          LLAMA_FTYPE_MOSTLY_Q4_1 / Q5_0 / Q5_1 as llama.cpp mixes them (the
          legacy format, with a Q6_K head), as shipped files of those are

(norms and other 1-D tensors stay f32), one thread, and writes
tests/fixtures/k_quant_ggufs.json: the llama-cpp-python version, the source
file's sha256, each output's sha256 and every tensor's type.
scripts/make_quant_references.py then computes the transformers reference
of each from the same file (dequantised by gguf-py).

Usage (needs llama-cpp-python 0.3.36 and gguf; a few seconds):
  python3 scripts/make_k_quant_ggufs.py [--only FIXTURE:FORMAT ...]
  python3 scripts/make_k_quant_ggufs.py --check   (gguf + hashlib only; CI)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
INDEX = FIXTURES / "k_quant_ggufs.json"
LLAMA_CPP_PYTHON = "0.3.36"

# format -> (llama_ftype name, pure): pure quantises every matrix to the ftype's base type.
FORMATS = {
    "q4_k": ("LLAMA_FTYPE_MOSTLY_Q4_K_S", True),
    "q5_k": ("LLAMA_FTYPE_MOSTLY_Q5_K_S", True),
    "q6_k": ("LLAMA_FTYPE_MOSTLY_Q6_K", True),
    "q4_k_m": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", False),
    "q4_1": ("LLAMA_FTYPE_MOSTLY_Q4_1", False),
    "q5_0": ("LLAMA_FTYPE_MOSTLY_Q5_0", False),
    "q5_1": ("LLAMA_FTYPE_MOSTLY_Q5_1", False),
}
CASES = [("llama_k", f) for f in FORMATS]


class KQuantError(Exception):
    pass


def source_path(fixture: str) -> Path:
    return FIXTURES / fixture / "gguf" / f"{fixture}.f16.gguf"


def output_path(fixture: str, fmt: str) -> Path:
    return FIXTURES / fixture / "gguf" / f"{fixture}.{fmt}.gguf"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tensor_types(path: Path) -> dict:
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def quantise(fixture: str, fmt: str) -> dict:
    import llama_cpp

    src, out = source_path(fixture), output_path(fixture, fmt)
    if not src.is_file():
        raise KQuantError(f"{src}: missing (run scripts/make_fixtures.py --only {fixture})")
    ftype, pure = FORMATS[fmt]
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = 1
    params.ftype = getattr(llama_cpp, ftype)
    params.pure = pure
    tmp = out.with_suffix(".tmp")
    if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params) != 0:
        tmp.unlink(missing_ok=True)
        raise KQuantError(f"{src}: llama_model_quantize to {ftype} failed")
    tmp.replace(out)
    return {
        "fixture": fixture,
        "format": fmt,
        "file": str(out.relative_to(FIXTURES)),
        "sha256": sha256(out),
        "bytes": out.stat().st_size,
        "source": str(src.relative_to(FIXTURES)),
        "source_sha256": sha256(src),
        "ftype": ftype,
        "pure": pure,
        "tensor_types": tensor_types(out),
    }


def generate(cases: list[tuple[str, str]]) -> int:
    from importlib.metadata import version

    got = version("llama-cpp-python")
    if got != LLAMA_CPP_PYTHON:
        raise KQuantError(f"llama-cpp-python {got} installed; these files are made with {LLAMA_CPP_PYTHON}")
    old = json.loads(INDEX.read_text())["files"] if INDEX.is_file() else []
    entries = {(e["fixture"], e["format"]): e for e in old if (e["fixture"], e["format"]) in CASES}
    for fixture, fmt in cases:
        print(f"make_k_quant_ggufs: {fixture} {fmt}", flush=True)
        entries[(fixture, fmt)] = quantise(fixture, fmt)
        kinds = sorted(set(entries[(fixture, fmt)]["tensor_types"].values()))
        print(f"make_k_quant_ggufs:   tensor types {', '.join(kinds)}", flush=True)
    index = {
        "generated_by": "scripts/make_k_quant_ggufs.py",
        "quantiser": f"llama-cpp-python {LLAMA_CPP_PYTHON} llama_model_quantize, nthread 1",
        "files": [entries[c] for c in CASES if c in entries],
    }
    INDEX.write_text(json.dumps(index, indent=2) + "\n")
    print(f"make_k_quant_ggufs: wrote {INDEX}")
    return 0


def check() -> int:
    if not INDEX.is_file():
        raise KQuantError(f"{INDEX}: missing")
    entries = json.loads(INDEX.read_text())["files"]
    listed = {(e["fixture"], e["format"]) for e in entries}
    if listed != set(CASES):
        raise KQuantError(f"{INDEX}: lists {sorted(listed)}, CASES are {sorted(CASES)}")
    for e in entries:
        path, src = FIXTURES / e["file"], source_path(e["fixture"])
        if not path.is_file():
            raise KQuantError(f"{path}: missing")
        if sha256(src) != e["source_sha256"]:
            raise KQuantError(f"{path}: made from another {src.name} (re-run this script)")
        if sha256(path) != e["sha256"]:
            raise KQuantError(f"{path}: sha256 differs from {INDEX.name}")
        if tensor_types(path) != e["tensor_types"]:
            raise KQuantError(f"{path}: tensor types differ from {INDEX.name}")
    print(f"make_k_quant_ggufs: {len(entries)} files match {INDEX.name}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="FIXTURE:FORMAT cases to (re)make; the index keeps the others")
    ap.add_argument("--check", action="store_true", help="verify the committed files against the index")
    args = ap.parse_args()
    try:
        if args.check:
            return check()
        cases = CASES
        if args.only:
            cases = [tuple(c.split(":", 1)) for c in args.only]
            unknown = [c for c in cases if c not in CASES]
            if unknown:
                raise KQuantError(f"unknown cases {unknown} (known: {', '.join(f'{a}:{b}' for a, b in CASES)})")
        return generate(cases)
    except KQuantError as e:
        print(f"make_k_quant_ggufs: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
