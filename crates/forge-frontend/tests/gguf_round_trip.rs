//! forge's GgufWriter output read back by forge's reader and by gguf-py's
//! GGUFReader (python3 with the `gguf` package, which the test command installs).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use forge_frontend::gguf::{GgufArray, GgufFile, GgufValue, GgufValueType};
use forge_ir::DType;
use forge_weights::gguf::GgufWriter;
use serde_json::Value;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/gguf")
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf_round_trip");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Deterministic bytes so failures reproduce.
fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn array(item_type: GgufValueType, items: Vec<GgufValue>) -> GgufValue {
    GgufValue::Array(GgufArray { item_type, items })
}

fn sample_metadata() -> Vec<(String, GgufValue)> {
    use GgufValue as V;
    use GgufValueType as T;
    let entries = vec![
        ("general.architecture", V::String("llama".into())),
        ("m.u8", V::U8(200)),
        ("m.i8", V::I8(-100)),
        ("m.u16", V::U16(60000)),
        ("m.i16", V::I16(-30000)),
        ("m.u32", V::U32(4_000_000_000)),
        ("m.i32", V::I32(-2_000_000_000)),
        ("m.f32", V::F32(1.25e-3)),
        ("m.bool", V::Bool(true)),
        ("m.string", V::String("ünïcode ✓".into())),
        ("m.u64", V::U64(u64::MAX - 1)),
        ("m.i64", V::I64(i64::MIN + 1)),
        ("m.f64", V::F64(-1.0e-300)),
        (
            "m.tokens",
            array(
                T::String,
                (0..300).map(|i| V::String(format!("tok{i}"))).collect(),
            ),
        ),
        (
            "m.scores",
            array(T::F32, (0..300).map(|i| V::F32(i as f32 * -0.5)).collect()),
        ),
        (
            "m.nested",
            array(
                T::Array,
                vec![
                    array(T::I64, vec![V::I64(1), V::I64(-2)]),
                    array(T::I64, vec![V::I64(3)]),
                ],
            ),
        ),
        (
            "m.nested_strings",
            array(
                T::Array,
                vec![array(
                    T::String,
                    vec![V::String("x".into()), V::String("yz".into())],
                )],
            ),
        ),
        (
            "m.bools",
            array(T::Bool, vec![V::Bool(false), V::Bool(true)]),
        ),
        ("m.u16s", array(T::U16, vec![V::U16(1), V::U16(2)])),
        ("m.f64s", array(T::F64, vec![V::F64(0.5), V::F64(1e10)])),
    ];
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn sample_tensors() -> Vec<(String, Vec<u64>, DType)> {
    [
        ("w.f32", vec![7, 3], DType::F32),
        ("w.f16", vec![8], DType::F16),
        ("w.bf16", vec![4, 2, 2], DType::BF16),
        ("w.q8_0", vec![64, 3], DType::Q8_0),
        ("w.q4_1", vec![32, 2], DType::Q4_1),
        ("w.q4_k", vec![256, 2], DType::Q4_K),
        ("w.i8", vec![5], DType::I8),
        ("w.i16", vec![3], DType::I16),
        ("w.i32", vec![3], DType::I32),
        ("w.i64", vec![2], DType::I64),
        ("w.f64", vec![2, 2], DType::F64),
    ]
    .into_iter()
    .map(|(n, d, t)| (n.to_string(), d, t))
    .collect()
}

/// Writes the sample with our writer and returns the tensor data it wrote.
fn write_sample(path: &Path, alignment: u64) -> Vec<Vec<u8>> {
    let out = BufWriter::new(File::create(path).unwrap());
    let mut w = GgufWriter::with_alignment(out, alignment).unwrap();
    for (k, v) in sample_metadata() {
        w.add_metadata(&k, v).unwrap();
    }
    let mut sizes = Vec::new();
    for (name, dims, dtype) in sample_tensors() {
        sizes.push(w.add_tensor(&name, &dims, dtype).unwrap());
    }
    let mut datas = Vec::new();
    for (i, ((name, _, _), size)) in sample_tensors().iter().zip(sizes).enumerate() {
        let data = pseudo_random_bytes(i as u64, size as usize);
        w.write_tensor_data(name, &data).unwrap();
        datas.push(data);
    }
    w.finish().unwrap();
    datas
}

fn check_with_our_reader(path: &Path, alignment: u64, datas: &[Vec<u8>]) {
    let f = GgufFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, alignment);
    let mut expected_meta = sample_metadata();
    if alignment != 32 {
        expected_meta.insert(
            0,
            ("general.alignment".into(), GgufValue::U32(alignment as u32)),
        );
    }
    assert_eq!(f.metadata, expected_meta);
    for (((name, dims, dtype), data), t) in sample_tensors().iter().zip(datas).zip(&f.tensors) {
        assert_eq!(&t.name, name);
        assert_eq!(&t.dims, dims);
        assert_eq!(t.dtype, *dtype);
        assert_eq!(t.offset % alignment, 0);
        assert_eq!(f.tensor_data(t), &data[..]);
    }
    let len = std::fs::metadata(path).unwrap().len();
    assert_eq!(len % alignment, 0, "file is padded to the alignment");
}

/// gguf-py's view of a file as JSON: alignment, fields (types, flattened
/// contents) and tensors (type id, dims, size, absolute offset, data hex).
const GGUF_PY_DUMP: &str = r#"
import json, sys
import numpy as np
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
fields = {}
for name, f in r.fields.items():
    if name.startswith("GGUF."):
        continue
    fields[name] = {"types": [int(t) for t in f.types], "contents": f.contents()}
tensors = [
    {"name": t.name, "type": int(t.tensor_type), "dims": [int(d) for d in t.shape],
     "n_bytes": int(t.n_bytes), "offset": int(t.data_offset),
     "hex": np.ascontiguousarray(t.data).tobytes().hex()}
    for t in r.tensors
]
print(json.dumps({"alignment": int(r.alignment), "fields": fields, "tensors": tensors}))
"#;

fn gguf_py_dump(path: &Path) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(GGUF_PY_DUMP)
        .arg(path)
        .output()
        .expect("python3 runs (the test command installs the gguf package)");
    assert!(
        out.status.success(),
        "gguf-py could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value types gguf-py lists for a field: the outer type, then each
/// nested array's item type.
fn type_chain(v: &GgufValue) -> Vec<u64> {
    let mut chain = vec![v.value_type() as u64];
    if let GgufValue::Array(a) = v {
        match a.items.first() {
            Some(first @ GgufValue::Array(_)) => chain.extend(type_chain(first)),
            _ => chain.push(a.item_type as u64),
        }
    }
    chain
}

/// gguf-py's `contents()` flattens nested arrays into one list of leaves.
fn flat_json(v: &GgufValue, out: &mut Vec<Value>) {
    let j = match v {
        GgufValue::Array(a) => {
            a.items.iter().for_each(|item| flat_json(item, out));
            return;
        }
        GgufValue::String(s) => Value::from(s.as_str()),
        GgufValue::Bool(b) => Value::from(*b),
        GgufValue::F32(x) => Value::from(f64::from(*x)),
        GgufValue::F64(x) => Value::from(*x),
        GgufValue::U64(x) => Value::from(*x),
        other => Value::from(other.as_i64().unwrap()),
    };
    out.push(j);
}

fn check_with_gguf_py(path: &Path, alignment: u64, datas: &[Vec<u8>]) {
    let dump = gguf_py_dump(path);
    assert_eq!(dump["alignment"].as_u64(), Some(alignment));
    for (key, value) in sample_metadata() {
        let field = &dump["fields"][&key];
        let types: Vec<u64> = field["types"]
            .as_array()
            .unwrap_or_else(|| panic!("gguf-py does not see '{key}'"))
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert_eq!(types, type_chain(&value), "types of {key}");
        let mut flat = Vec::new();
        flat_json(&value, &mut flat);
        let expected = match value {
            GgufValue::Array(_) => Value::Array(flat),
            _ => flat.pop().unwrap(),
        };
        assert_eq!(field["contents"], expected, "contents of {key}");
    }
    let tensors = dump["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), sample_tensors().len());
    for (((name, dims, dtype), data), t) in sample_tensors().iter().zip(datas).zip(tensors) {
        assert_eq!(t["name"].as_str(), Some(name.as_str()));
        assert_eq!(t["type"].as_u64(), Some(u64::from(dtype.ggml_type_id())));
        let py_dims: Vec<u64> = t["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(&py_dims, dims, "gguf-py reports GGML-order dims for {name}");
        assert_eq!(t["n_bytes"].as_u64(), Some(data.len() as u64));
        assert_eq!(t["offset"].as_u64().unwrap() % alignment, 0);
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(t["hex"].as_str(), Some(hex.as_str()), "data of {name}");
    }
}

#[test]
fn default_alignment_round_trip() {
    let path = scratch("align32.gguf");
    let datas = write_sample(&path, 32);
    check_with_our_reader(&path, 32, &datas);
    check_with_gguf_py(&path, 32, &datas);
}

#[test]
fn metal_page_alignment_round_trip() {
    let path = scratch("align16384.gguf");
    let datas = write_sample(&path, 16384);
    check_with_our_reader(&path, 16384, &datas);
    check_with_gguf_py(&path, 16384, &datas);
}

/// Reading gguf-py's file and writing it again with our writer gives the
/// same bytes: both sides agree on every byte of the layout.
#[test]
fn rewriting_a_gguf_py_file_reproduces_its_bytes() {
    let original = data_dir().join("all_types_v3.gguf");
    let f = GgufFile::open(&original).unwrap();
    let mut w = GgufWriter::new(Vec::new());
    for (k, v) in &f.metadata {
        w.add_metadata(k, v.clone()).unwrap();
    }
    for t in &f.tensors {
        assert_eq!(w.add_tensor(&t.name, &t.dims, t.dtype).unwrap(), t.n_bytes);
    }
    for t in &f.tensors {
        w.write_tensor_data(&t.name, f.tensor_data(t)).unwrap();
    }
    let bytes = w.finish().unwrap();
    assert_eq!(bytes, std::fs::read(&original).unwrap());
}

/// Empty arrays are legal GGUF (gguf-py refuses to write them, so this one
/// is only checked against our own reader).
#[test]
fn empty_arrays_round_trip() {
    let mut w = GgufWriter::new(Vec::new());
    let empty = array(GgufValueType::String, vec![]);
    let nested_empty = array(GgufValueType::Array, vec![array(GgufValueType::U8, vec![])]);
    w.add_metadata("e", empty.clone()).unwrap();
    w.add_metadata("n", nested_empty.clone()).unwrap();
    let bytes = w.finish().unwrap();
    let header = forge_frontend::gguf::parse_bytes(Path::new("mem.gguf"), &bytes).unwrap();
    assert_eq!(
        header.metadata,
        vec![("e".to_string(), empty), ("n".to_string(), nested_empty)]
    );
    assert!(header.tensors.is_empty());
}
