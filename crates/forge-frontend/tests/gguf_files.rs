//! Reads GGUF files written by gguf-py (scripts/make_gguf_test_files.py) and
//! the real SmolLM2 checkpoint, and checks every value against what the
//! writer recorded in tests/data/gguf/expected.json.

use std::path::{Path, PathBuf};

use forge_frontend::gguf::{GgufArray, GgufFile, GgufValue, GgufValueType};
use forge_ir::DType;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data_dir() -> PathBuf {
    repo_root().join("tests/data/gguf")
}

fn value_type(name: &str) -> GgufValueType {
    (0..13)
        .filter_map(GgufValueType::from_u32)
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("expected.json names unknown type {name}"))
}

/// Builds the value expected.json describes, so the comparison is a plain `==`.
fn expected_value(desc: &Value) -> GgufValue {
    let ty = desc["type"].as_str().unwrap();
    let v = &desc["value"];
    match ty {
        "u8" => GgufValue::U8(v.as_u64().unwrap().try_into().unwrap()),
        "i8" => GgufValue::I8(v.as_i64().unwrap().try_into().unwrap()),
        "u16" => GgufValue::U16(v.as_u64().unwrap().try_into().unwrap()),
        "i16" => GgufValue::I16(v.as_i64().unwrap().try_into().unwrap()),
        "u32" => GgufValue::U32(v.as_u64().unwrap().try_into().unwrap()),
        "i32" => GgufValue::I32(v.as_i64().unwrap().try_into().unwrap()),
        "u64" => GgufValue::U64(v.as_u64().unwrap()),
        "i64" => GgufValue::I64(v.as_i64().unwrap()),
        // The script records the f32-rounded value as a double, so the cast is exact.
        "f32" => GgufValue::F32(v.as_f64().unwrap() as f32),
        "f64" => GgufValue::F64(v.as_f64().unwrap()),
        "bool" => GgufValue::Bool(v.as_bool().unwrap()),
        "string" => GgufValue::String(v.as_str().unwrap().to_string()),
        "array" => GgufValue::Array(GgufArray {
            item_type: value_type(desc["item_type"].as_str().unwrap()),
            items: desc["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(expected_value)
                .collect(),
        }),
        other => panic!("expected.json names unknown type {other}"),
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn check_file(name: &str, expected: &Value) {
    let path = data_dir().join(name);
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u64::from(f.version), expected["version"].as_u64().unwrap());
    assert_eq!(f.alignment, expected["alignment"].as_u64().unwrap());
    assert_eq!(f.data_offset % f.alignment, 0);

    let meta = expected["metadata"].as_array().unwrap();
    assert_eq!(f.metadata.len(), meta.len(), "{name}: metadata count");
    for ((key, value), desc) in f.metadata.iter().zip(meta) {
        assert_eq!(key, desc["key"].as_str().unwrap(), "{name}: key order");
        assert_eq!(value, &expected_value(desc), "{name}: value of {key}");
        assert_eq!(f.get(key), Some(value));
    }

    let tensors = expected["tensors"].as_array().unwrap();
    assert_eq!(f.tensors.len(), tensors.len(), "{name}: tensor count");
    for (t, desc) in f.tensors.iter().zip(tensors) {
        assert_eq!(t.name, desc["name"].as_str().unwrap());
        assert_eq!(Some(t.dtype), DType::parse(desc["dtype"].as_str().unwrap()));
        let dims: Vec<u64> = desc["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, dims, "{name}: dims of {}", t.name);
        assert_eq!(t.n_bytes, desc["n_bytes"].as_u64().unwrap());
        assert_eq!(t.offset % f.alignment, 0, "{name}: {} misaligned", t.name);
        assert_eq!(
            f.tensor_data(t),
            &hex_bytes(desc["data_hex"].as_str().unwrap())[..],
            "{name}: data of {}",
            t.name
        );
        assert_eq!(f.tensor(&t.name), Some(t));
    }
}

fn expected() -> Value {
    let text = std::fs::read_to_string(data_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn v3_file_from_gguf_py_matches_description() {
    check_file("all_types_v3.gguf", &expected()["all_types_v3.gguf"]);
}

#[test]
fn v2_file_matches_description() {
    check_file("all_types_v2.gguf", &expected()["all_types_v2.gguf"]);
}

#[test]
fn non_default_alignment_matches_description() {
    check_file("aligned_128.gguf", &expected()["aligned_128.gguf"]);
}

#[test]
fn every_committed_file_is_described() {
    let described = expected();
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".gguf") {
            assert!(
                described.get(&name).is_some(),
                "{name} is not in expected.json"
            );
        }
    }
}

#[test]
fn accessors_on_committed_file() {
    let f = GgufFile::open(&data_dir().join("all_types_v3.gguf")).unwrap();
    let tokens = f.string_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 6);
    let err = f.string_array("test.arr.u8").unwrap_err().to_string();
    assert!(
        err.contains("all_types_v3.gguf") && err.contains("array of strings"),
        "{err}"
    );
    let err = f.require("no.such.key").unwrap_err().to_string();
    assert!(err.contains("missing metadata key 'no.such.key'"), "{err}");
    assert_eq!(
        f.get("test.u32").and_then(GgufValue::as_u64),
        Some(u32::MAX as u64)
    );
    assert_eq!(f.tensor("t.q8_0").map(|t| t.n_elements()), Some(128));
    assert_eq!(
        f.mmap().len() as u64,
        std::fs::metadata(&f.path).unwrap().len()
    );
}

/// The cached SmolLM2 checkpoint (scripts/fetch_smollm2.sh puts it there).
fn smollm2_path() -> PathBuf {
    let cache = std::env::var_os("FORGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cache"));
    let cache = if cache.is_absolute() {
        cache
    } else {
        repo_root().join(cache)
    };
    cache.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn real_smollm2_checkpoint() {
    let path = smollm2_path();
    // Never skipped: the test command fetches the file first.
    assert!(
        path.exists(),
        "{} missing; run scripts/fetch_smollm2.sh (the test command does)",
        path.display()
    );
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.version, 3);
    assert_eq!(f.tensors.len(), 272);
    let count = |d: DType| f.tensors.iter().filter(|t| t.dtype == d).count();
    assert_eq!(count(DType::Q4_1), 210);
    assert_eq!(count(DType::F32), 61);
    assert_eq!(count(DType::Q8_0), 1);
    assert_eq!(
        f.string_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    for key in ["tokenizer.ggml.token_type", "tokenizer.ggml.scores"] {
        if let Some(v) = f.get(key) {
            assert_eq!(v.as_array().unwrap().items.len(), 49152, "{key}");
        }
    }
    assert_eq!(
        f.get("general.architecture").and_then(GgufValue::as_str),
        Some("llama")
    );
    // Every tensor is aligned and ends inside the file.
    let end = f
        .tensors
        .iter()
        .map(|t| t.offset + t.n_bytes)
        .max()
        .unwrap();
    assert!(end <= f.mmap().len() as u64);
    assert!(f.tensors.iter().all(|t| t.offset % f.alignment == 0));
    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, vec![576, 49152]);
}
