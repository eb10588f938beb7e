#!/usr/bin/env python3
"""Writes the small GGUF files forge's reader tests use, with gguf-py's
GGUFWriter (an implementation nobody on forge wrote), plus expected.json, a
description of every value and tensor written, which the Rust tests compare
against.

Files (in tests/data/gguf/):
  all_types_v3.gguf  every metadata value type, arrays of every type, nested
                     arrays, a string array, tensors F32 F16 BF16 Q8_0 Q4_K
                     I8 I16 I32 I64 F64, default alignment (32)
  all_types_v2.gguf  the same bytes with the version field patched to 2
                     (v2 and v3 share the layout; v3 only added big-endian files)
  aligned_128.gguf   general.alignment = 128, a few tensors

Usage: python3 scripts/make_gguf_test_files.py [out_dir]
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGUFValueType as VT, GGMLQuantizationType as QT

ROOT = Path(__file__).resolve().parent.parent
TYPE_NAMES = {
    VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16",
    VT.UINT32: "u32", VT.INT32: "i32", VT.FLOAT32: "f32", VT.BOOL: "bool",
    VT.STRING: "string", VT.ARRAY: "array", VT.UINT64: "u64", VT.INT64: "i64",
    VT.FLOAT64: "f64",
}


def f32(x):
    """The double a float32 field will actually hold."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def describe(value, vtype, sub_type=None):
    """JSON form of one value: {"type", "value"} or {"type": "array", "item_type", "items"}.
    Mirrors how GGUFWriter picks types: nested list items use GGUFValueType.get_type."""
    if vtype == VT.ARRAY:
        item_type = sub_type if sub_type is not None else VT.get_type(value[0])
        return {
            "type": "array",
            "item_type": TYPE_NAMES[item_type],
            "items": [describe(v, item_type) for v in value],
        }
    if vtype == VT.FLOAT32:
        value = f32(value)
    return {"type": TYPE_NAMES[vtype], "value": value}


def metadata_entries():
    """(key, value, type, array item type) for every metadata entry we add."""
    return [
        ("test.u8", 255, VT.UINT8, None),
        ("test.i8", -128, VT.INT8, None),
        ("test.u16", 65535, VT.UINT16, None),
        ("test.i16", -32768, VT.INT16, None),
        ("test.u32", 4294967295, VT.UINT32, None),
        ("test.i32", -2147483648, VT.INT32, None),
        ("test.f32", 3.14159, VT.FLOAT32, None),
        ("test.bool_true", True, VT.BOOL, None),
        ("test.bool_false", False, VT.BOOL, None),
        ("test.string", "h\u00e9llo \u2713 \u65e5\u672c", VT.STRING, None),
        ("test.u64", 18446744073709551615, VT.UINT64, None),
        ("test.i64", -9223372036854775808, VT.INT64, None),
        ("test.f64", 2.718281828459045, VT.FLOAT64, None),
        ("test.arr.u8", [0, 1, 255], VT.ARRAY, VT.UINT8),
        ("test.arr.i8", [-1, 0, 127], VT.ARRAY, VT.INT8),
        ("test.arr.u16", [1, 65535], VT.ARRAY, VT.UINT16),
        ("test.arr.i16", [-2, 300], VT.ARRAY, VT.INT16),
        ("test.arr.u32", [7, 4000000000], VT.ARRAY, VT.UINT32),
        ("test.arr.i32", [-5, 5, 2000000000], VT.ARRAY, VT.INT32),
        ("test.arr.f32", [0.1, -2.5, 1e-8], VT.ARRAY, VT.FLOAT32),
        ("test.arr.bool", [True, False, True], VT.ARRAY, VT.BOOL),
        ("test.arr.u64", [1, 2**63 + 5], VT.ARRAY, VT.UINT64),
        ("test.arr.i64", [-(2**40), 2**40], VT.ARRAY, VT.INT64),
        ("test.arr.f64", [1e300, -0.125], VT.ARRAY, VT.FLOAT64),
        ("tokenizer.ggml.tokens", ["<s>", "</s>", "hello", "\u2581world", "\u00e9", ""], VT.ARRAY, VT.STRING),
        ("test.nested.i32", [[1, 2, 3], [4], [5, 6]], VT.ARRAY, None),
        ("test.nested.string", [["a", "b"], ["c"]], VT.ARRAY, None),
        ("test.nested.deep", [[[1.5, 2.5]], [[3.5]]], VT.ARRAY, None),
    ]


def tensors(rng):
    """(name, array passed to GGUFWriter, raw_dtype, ggml dtype name, GGML-order dims)."""
    out = []

    def plain(name, arr, dtype_name):
        out.append((name, arr, None, dtype_name, list(reversed(arr.shape))))

    plain("t.f32", rng.standard_normal((3, 5)).astype(np.float32), "F32")
    plain("t.f16", rng.standard_normal((2, 4)).astype(np.float16), "F16")
    plain("t.f64", rng.standard_normal(3), "F64")
    plain("t.i8", rng.integers(-128, 127, size=7, dtype=np.int8), "I8")
    plain("t.i16", rng.integers(-30000, 30000, size=(2, 3), dtype=np.int16), "I16")
    plain("t.i32", rng.integers(-2**31, 2**31 - 1, size=5, dtype=np.int32), "I32")
    plain("t.i64", rng.integers(-2**62, 2**62, size=2, dtype=np.int64), "I64")
    # BF16: the top halves of float32 values, stored as uint16 with raw_dtype.
    bf16 = (rng.standard_normal((2, 6)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    out.append(("t.bf16", bf16, QT.BF16, "BF16", [6, 2]))
    # Q8_0 through gguf-py's own quantizer: 2 rows of 64 values.
    q8 = gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), QT.Q8_0)
    out.append(("t.q8_0", q8, QT.Q8_0, "Q8_0", [64, 2]))
    # gguf-py has no Q4_K quantizer; the container only needs the block bytes.
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)
    out.append(("t.q4_k", q4k, QT.Q4_K, "Q4_K", [256, 1]))
    # A 3-D tensor to pin the dimension order.
    plain("t.f32_3d", rng.standard_normal((2, 3, 4)).astype(np.float32), "F32")
    return out


def write(path, entries, tensor_list, alignment=None):
    w = gguf.GGUFWriter(str(path), arch="forge-test")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub_type in entries:
        w.add_key_value(key, value, vtype, sub_type=sub_type)
    for name, arr, raw_dtype, _, _ in tensor_list:
        w.add_tensor(name, arr, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta = [("general.architecture", "forge-test", VT.STRING, None)]
    if alignment is not None:
        meta.append(("general.alignment", alignment, VT.UINT32, None))
    meta += entries
    return {
        "alignment": alignment or 32,
        "metadata": [{"key": k, **describe(v, t, s)} for k, v, t, s in meta],
        "tensors": [
            {
                "name": name,
                "dtype": dtype_name,
                "dims": dims,
                "n_bytes": int(arr.nbytes),
                "data_hex": arr.tobytes().hex(),
            }
            for name, arr, _, dtype_name, dims in tensor_list
        ],
    }


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20250101)
    expected = {}

    v3 = out_dir / "all_types_v3.gguf"
    desc = write(v3, metadata_entries(), tensors(rng))
    expected[v3.name] = {"version": 3, **desc}

    data = bytearray(v3.read_bytes())
    assert data[:4] == b"GGUF" and struct.unpack_from("<I", data, 4)[0] == 3
    struct.pack_into("<I", data, 4, 2)
    v2 = out_dir / "all_types_v2.gguf"
    v2.write_bytes(bytes(data))
    expected[v2.name] = {"version": 2, **desc}

    aligned = out_dir / "aligned_128.gguf"
    small = [
        ("test.note", "alignment 128", VT.STRING, None),
        ("test.count", 3, VT.UINT32, None),
    ]
    arng = np.random.default_rng(7)
    atensors = [
        ("a.f32", arng.standard_normal(5).astype(np.float32), None, "F32", [5]),
        ("a.f16", arng.standard_normal((3, 3)).astype(np.float16), None, "F16", [3, 3]),
        ("a.i8", arng.integers(-100, 100, size=130, dtype=np.int8), None, "I8", [130]),
    ]
    expected[aligned.name] = {"version": 3, **write(aligned, small, atensors, alignment=128)}

    (out_dir / "expected.json").write_text(json.dumps(expected, separators=(",", ":"), ensure_ascii=False) + "\n")
    for name in expected:
        print(f"{out_dir / name}: {(out_dir / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
