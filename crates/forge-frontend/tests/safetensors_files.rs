//! Reads safetensors files written by the reference `safetensors` Python
//! package (single file, sharded with an index, loose files) and compares
//! every tensor with the description the writing script prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_frontend::safetensors::SafetensorsSet;
use forge_ir::DType;
use serde_json::Value;

/// Writes three model directories under argv[1] with safetensors.torch and
/// prints {dir: [{name, dtype, shape, file, hex}]}.
const WRITE_FILES: &str = r#"
import json, os, sys
import torch
from safetensors.torch import save_file
root = sys.argv[1]
g = torch.Generator().manual_seed(1234)
def t(shape, dtype):
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    return torch.randint(-100, 100, shape, generator=g).to(dtype)
names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
         torch.int8: "I8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64"}
desc = {}
def save(dirname, filename, tensors):
    d = os.path.join(root, dirname)
    os.makedirs(d, exist_ok=True)
    save_file(tensors, os.path.join(d, filename), metadata={"format": "pt"})
    for name, x in tensors.items():
        raw = x.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        desc.setdefault(dirname, []).append({"name": name, "dtype": names[x.dtype],
            "shape": list(x.shape), "file": filename, "hex": raw.hex()})
save("single", "model.safetensors", {
    "embed.weight": t((5, 4), torch.float32), "norm.weight": t((4,), torch.float16),
    "proj.weight": t((3, 2, 2), torch.bfloat16), "ids": t((6,), torch.int64),
    "f64": t((2,), torch.float64), "i8": t((3,), torch.int8), "i16": t((2,), torch.int16),
    "i32": t((2, 1), torch.int32), "scalar": t((), torch.float32), "empty": t((0, 3), torch.float32)})
shard1 = {"model.layers.0.w": t((4, 4), torch.bfloat16), "model.embed": t((8, 4), torch.bfloat16)}
shard2 = {"model.layers.1.w": t((4, 4), torch.bfloat16), "lm_head.weight": t((8, 4), torch.float16)}
save("sharded", "model-00001-of-00002.safetensors", shard1)
save("sharded", "model-00002-of-00002.safetensors", shard2)
weight_map = {k: "model-00001-of-00002.safetensors" for k in shard1}
weight_map.update({k: "model-00002-of-00002.safetensors" for k in shard2})
with open(os.path.join(root, "sharded", "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
save("loose", "b.safetensors", {"b": t((2,), torch.float32)})
save("loose", "a.safetensors", {"a": t((3,), torch.float16)})
print(json.dumps(desc))
"#;

fn write_reference_files(tag: &str) -> (PathBuf, Value) {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("safetensors_files")
        .join(tag);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(WRITE_FILES)
        .arg(&root)
        .output()
        .expect("python3 runs (the test command installs torch and safetensors)");
    assert!(
        out.status.success(),
        "writing reference files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (root, serde_json::from_slice(&out.stdout).unwrap())
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
    let (root, desc) = write_reference_files("dirs");

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
    let (root, _) = write_reference_files("index");
    let dir = root.join("sharded");
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
