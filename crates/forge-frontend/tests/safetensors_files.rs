//! Reads safetensors checkpoints written by the reference `safetensors`
//! package (scripts/make_safetensors_test_files.py: single file, sharded with
//! an index, loose files) and compares every tensor with the description the
//! script recorded in tests/data/safetensors/expected.json.

use std::path::{Path, PathBuf};

use forge_frontend::safetensors::SafetensorsSet;
use forge_ir::DType;
use serde_json::Value;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/safetensors")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(data_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A scratch copy of a committed directory, for tests that edit it.
fn copy_of(dir: &str) -> PathBuf {
    let to = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("safetensors_files")
        .join(dir);
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(data_dir().join(dir)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_set(set: &SafetensorsSet, expected: &Value) {
    let expected = expected.as_array().unwrap();
    assert_eq!(set.tensors.len(), expected.len());
    for e in expected {
        let name = e["name"].as_str().unwrap();
        let t = set
            .get(name)
            .unwrap_or_else(|| panic!("'{name}' not found"));
        assert_eq!(Some(t.dtype), DType::parse(e["dtype"].as_str().unwrap()));
        let shape: Vec<u64> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.shape, shape, "shape of {name}");
        assert_eq!(
            set.files[t.file].file_name().unwrap().to_str(),
            e["file"].as_str(),
            "file of {name}"
        );
        assert_eq!(
            hex(set.data(t)),
            e["hex"].as_str().unwrap(),
            "data of {name}"
        );
        assert!(t.offset + t.n_bytes <= set.mmap(t.file).len() as u64);
    }
}

#[test]
fn reference_written_directories() {
    let root = data_dir();
    let desc = expected();

    let single = SafetensorsSet::open_dir(&root.join("single")).unwrap_or_else(|e| panic!("{e}"));
    check_set(&single, &desc["single"]);
    assert_eq!(
        single.metadata[0],
        vec![("format".to_string(), "pt".to_string())]
    );

    let sharded = SafetensorsSet::open_dir(&root.join("sharded")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sharded.files.len(), 2);
    check_set(&sharded, &desc["sharded"]);

    let loose = SafetensorsSet::open_dir(&root.join("loose")).unwrap_or_else(|e| panic!("{e}"));
    check_set(&loose, &desc["loose"]);
    // Loose files are opened in name order.
    assert!(loose.files[0].ends_with("a.safetensors"));
}

#[test]
fn index_problems_are_reported_against_the_index() {
    let dir = copy_of("sharded");
    let index_path = dir.join("model.safetensors.index.json");
    let original = std::fs::read_to_string(&index_path).unwrap();
    let mut index: Value = serde_json::from_str(&original).unwrap();

    let expect_err = |index: &Value, fragment: &str| {
        std::fs::write(&index_path, serde_json::to_string(index).unwrap()).unwrap();
        let err = SafetensorsSet::open_dir(&dir).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(
            err.starts_with(&index_path.display().to_string()) && err.contains(fragment),
            "'{err}' lacks '{fragment}'"
        );
    };

    index["weight_map"]["ghost"] = Value::from("model-00001-of-00002.safetensors");
    expect_err(
        &index,
        "places tensor 'ghost' in 'model-00001-of-00002.safetensors'",
    );
    index["weight_map"]["ghost"] = Value::from("model-00009-of-00009.safetensors");
    expect_err(
        &index,
        "shard 'model-00009-of-00009.safetensors' listed in the index does not exist",
    );
    index["weight_map"]["ghost"] = Value::from("../model.safetensors");
    expect_err(&index, "not a plain file name");
    index["weight_map"].as_object_mut().unwrap().remove("ghost");
    index["weight_map"]["model.embed"] = Value::from("model-00002-of-00002.safetensors");
    expect_err(
        &index,
        "places tensor 'model.embed' in 'model-00002-of-00002.safetensors'",
    );
    expect_err(
        &serde_json::json!({"metadata": {}}),
        "no \"weight_map\" object",
    );
    std::fs::write(&index_path, "{not json").unwrap();
    let err = SafetensorsSet::open_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("invalid JSON"), "{err}");

    std::fs::write(&index_path, original).unwrap();
    assert!(SafetensorsSet::open_dir(&dir).is_ok());
}
