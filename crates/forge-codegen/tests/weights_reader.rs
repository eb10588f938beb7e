//! forge-runtime's `WeightsFile` reads the files `export_weights` writes:
//! every planned tensor at the offset, length, type and shape forge's own
//! GGUF reader finds, and one-line messages for weights of another plan,
//! foreign, truncated and missing files.

use std::path::{Path, PathBuf};

use forge_codegen::export::export_weights;
use forge_codegen::{PlannedTensor, WeightPlan};
use forge_frontend::gguf::GgufFile;
use forge_ir::{DType, Model};
use forge_runtime::weights::{WeightsFile, WeightsSpec};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The error for `path`, checked to be one line.
fn error(path: &Path, spec: &WeightsSpec) -> String {
    let e = match WeightsFile::open(path, spec) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(e.lines().count(), 1, "not one line: {e:?}");
    e
}

fn plan(model: &Model, matrices: DType) -> WeightPlan {
    let one = |name: &str, dtype| {
        let spec = model.tensors.get(name).unwrap();
        PlannedTensor {
            name: name.into(),
            dtype,
            shape: spec.shape.clone(),
            parts: vec![name.into()],
            keep_interleaved_rope: false,
        }
    };
    let mut qkv = one("blk.0.attn_q.weight", matrices);
    qkv.name = "blk.0.attn_qkv.weight".into();
    qkv.parts = ["attn_q", "attn_k", "attn_v"]
        .iter()
        .map(|p| format!("blk.0.{p}.weight"))
        .collect();
    qkv.shape[0] = qkv
        .parts
        .iter()
        .map(|p| model.tensors.get(p).unwrap().shape[0])
        .sum();
    WeightPlan {
        tensors: vec![
            one("token_embd.weight", matrices),
            one("blk.0.attn_norm.weight", DType::F32),
            qkv,
            one("blk.1.ffn_down.weight", matrices),
            one("output_norm.weight", DType::F32),
        ],
    }
}

#[test]
fn runtime_reader_finds_exported_tensors_and_explains_bad_files() {
    let model = forge_frontend::load_model(&repo_root().join("tests/fixtures/qwen2/hf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ours = plan(&model, DType::Q8_0);
    let theirs = plan(&model, DType::F16);
    let good = dir.path().join("weights.gguf");
    let other = dir.path().join("other plan.gguf");
    export_weights(&model, &ours, &good, &mut |_| {}).unwrap();
    export_weights(&model, &theirs, &other, &mut |_| {}).unwrap();
    let hint = r#"models/qwen2 "hf" \copy"#;
    let spec = WeightsSpec {
        fingerprint: ours.fingerprint().leak(),
        model_hint: hint,
        export_flags: " --dtype q8_0",
    };

    let file = WeightsFile::open(&good, &spec).unwrap();
    let gguf = GgufFile::open(&good).unwrap();
    // Q8_0 matrices are written as a quant plane and a `.scales` plane.
    let q8_matrices = ours
        .tensors
        .iter()
        .filter(|t| t.dtype == DType::Q8_0)
        .count();
    assert_eq!(gguf.tensors.len(), ours.tensors.len() + q8_matrices);
    for info in &gguf.tensors {
        let t = file.tensor(&info.name).unwrap();
        let shape: Vec<u64> = info.dims.iter().rev().copied().collect();
        assert_eq!(
            (t.offset as u64, t.len as u64, t.dtype, &t.shape),
            (info.offset, info.n_bytes, info.dtype.name(), &shape),
            "{}",
            info.name
        );
        assert_eq!(
            &file.map[t.offset..t.offset + t.len],
            gguf.tensor_data(info)
        );
    }
    let e = format!("{:#}", file.tensor("blk.9.nothing").unwrap_err());
    assert_eq!(
        e,
        format!(
            "{}: the weights have no tensor blk.9.nothing",
            good.display()
        )
    );

    assert_eq!(
        error(&other, &spec),
        format!(
            "{path}: weights were made for another plan (fingerprint {}, this binary needs {}); \
             re-create them with `forge export-weights {hint} {path} --dtype q8_0`",
            theirs.fingerprint(),
            ours.fingerprint(),
            path = other.display()
        )
    );

    // A GGUF file without the fingerprint is not ours.
    let mut writer = forge_weights::gguf::GgufWriter::new(Vec::new());
    writer.add_tensor("x", &[4], DType::F32).unwrap();
    writer.write_tensor_data("x", &[0; 16]).unwrap();
    let foreign = dir.path().join("foreign.gguf");
    std::fs::write(&foreign, writer.finish().unwrap()).unwrap();
    let e = error(&foreign, &spec);
    assert!(
        e.starts_with(&format!("{}: not a forge weights file", foreign.display()))
            && e.contains("forge export-weights"),
        "{e}"
    );

    // Cut the file inside the header, in the padding after it, inside the data and before the final padding.
    let bytes = std::fs::read(&good).unwrap();
    let header_end = gguf.data_offset as usize;
    let last = gguf.tensors.last().unwrap();
    let (last_start, last_end) = (last.offset as usize, (last.offset + last.n_bytes) as usize);
    // The last cut keeps every tensor but not the padding to a whole page.
    for cut in [
        2,
        20,
        200,
        header_end - 100,
        header_end + 10,
        last_start,
        last_end,
    ] {
        let truncated = dir.path().join(format!("cut-{cut}.gguf"));
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        let e = error(&truncated, &spec);
        assert!(e.starts_with(&format!("{}: ", truncated.display())), "{e}");
        assert!(
            e.contains("truncated") || (cut < 4 && e.contains("not a GGUF file")),
            "cut at {cut}: {e}"
        );
    }
}
