//! The generated project's `src/weights.rs`, rendered into a small crate with
//! a test `main`, built (warnings are errors) and run on files made by
//! `export_weights`: offsets against forge's own GGUF reader, and the
//! messages for weights of another plan, truncated files and other files.

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_codegen::export::{export_weights, weights_reader_source};
use forge_codegen::{PlannedTensor, WeightPlan};
use forge_frontend::gguf::GgufFile;
use forge_ir::{DType, Model};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory the generated projects share, so dependencies build once.
fn shared_target_dir() -> PathBuf {
    repo_root().join("target/generated-projects")
}

/// Prints each named tensor as `name offset len dtype shape hash`, or the error.
const HARNESS_MAIN: &str = r#"#![deny(warnings)]

mod weights;

use std::path::Path;

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let file = weights::WeightsFile::open(Path::new(&args[1]))?;
    println!("fingerprint {}", weights::PLAN_FINGERPRINT);
    for name in &args[2..] {
        let t = file.tensor(name)?;
        let bytes = &file.map[t.offset..t.offset + t.len];
        println!("{name} {} {} {} {:?} {}", t.offset, t.len, t.dtype, t.shape, fnv(bytes));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = run(&args) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
"#;

/// Uses the reader as the generated model does (offsets and the map only), so
/// fields that model does not read must not warn.
const MINIMAL_MAIN: &str = r#"#![deny(warnings)]

#[path = "../weights.rs"]
mod weights;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = weights::WeightsFile::open(std::path::Path::new(&args[1])).unwrap();
    let offset = file.tensor(&args[2]).unwrap().offset;
    println!("{}", file.map[offset]);
}
"#;

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Writes the crate, checks the rendered reader is rustfmt-clean, builds it and returns the binary.
fn build_reader(dir: &Path, source: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("src/bin")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"weights-reader-check\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         publish = false\n\n[workspace]\n\n[dependencies]\nanyhow = \"1\"\nmemmap2 = \"0.9\"\n\n\
         [profile.release]\ndebug = false\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), HARNESS_MAIN).unwrap();
    std::fs::write(dir.join("src/bin/minimal.rs"), MINIMAL_MAIN).unwrap();
    let reader = dir.join("src/weights.rs");
    std::fs::write(&reader, source).unwrap();
    let fmt = Command::new("rustfmt")
        .args(["--edition", "2021", "--check"])
        .arg(&reader)
        .output()
        .expect("rustfmt runs");
    assert!(
        fmt.status.success(),
        "the rendered weights.rs is not rustfmt-clean:\n{}",
        String::from_utf8_lossy(&fmt.stdout)
    );
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .env("RUSTFLAGS", "-D warnings")
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "building the reader failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    shared_target_dir().join("release/weights-reader-check")
}

/// Runs the harness: Ok(stdout) on success, Err(stderr) on failure.
fn read(binary: &Path, file: &Path, names: &[&str]) -> Result<String, String> {
    let out = Command::new(binary)
        .arg(file)
        .args(names)
        .output()
        .expect("the harness runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
        Err(stderr.trim_end().to_string())
    }
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
fn generated_reader_finds_tensors_and_explains_bad_files() {
    let model = forge_frontend::load_model(&repo_root().join("tests/fixtures/qwen2/hf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ours = plan(&model, DType::Q8_0);
    let theirs = plan(&model, DType::F16);
    let good = dir.path().join("weights.gguf");
    let other = dir.path().join("other plan.gguf");
    export_weights(&model, &ours, &good, &mut |_| {}).unwrap();
    export_weights(&model, &theirs, &other, &mut |_| {}).unwrap();

    // Quotes and backslashes in the hint must survive as a Rust string literal.
    let hint = r#"models/qwen2 "hf" \copy"#;
    let source = weights_reader_source(&ours.fingerprint(), "q8_0", hint).unwrap();
    let binary = build_reader(&repo_root().join("target/weights-reader-check"), &source);

    let names: Vec<&str> = ours.tensors.iter().map(|t| t.name.as_str()).collect();
    let out = read(&binary, &good, &names).unwrap_or_else(|e| panic!("{e}"));
    let gguf = GgufFile::open(&good).unwrap();
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(format!("fingerprint {}", ours.fingerprint()).as_str())
    );
    for (line, info) in lines.zip(&gguf.tensors) {
        let shape: Vec<u64> = info.dims.iter().rev().copied().collect();
        let want = format!(
            "{} {} {} {} {shape:?} {}",
            info.name,
            info.offset,
            info.n_bytes,
            info.dtype.name(),
            fnv(gguf.tensor_data(info))
        );
        assert_eq!(line, want);
    }
    assert_eq!(out.lines().count(), names.len() + 1);
    let minimal = binary.with_file_name("minimal");
    let first = Command::new(minimal)
        .arg(&good)
        .arg(names[0])
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let err = read(&binary, &good, &["blk.9.nothing"]).unwrap_err();
    assert_eq!(
        err,
        format!(
            "{}: the weights have no tensor blk.9.nothing",
            good.display()
        )
    );

    let err = read(&binary, &other, &[]).unwrap_err();
    assert_eq!(
        err,
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
    let err = read(&binary, &foreign, &[]).unwrap_err();
    assert!(
        err.starts_with(&format!("{}: not a forge weights file", foreign.display()))
            && err.contains("forge export-weights"),
        "{err}"
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not weights").unwrap();
    let err = read(&binary, &text, &[]).unwrap_err();
    assert_eq!(
        err,
        format!(
            "{}: not a GGUF file (it does not start with `GGUF`)",
            text.display()
        )
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
        let err = read(&binary, &truncated, &[]).unwrap_err();
        let path = truncated.display().to_string();
        assert!(err.starts_with(&format!("{path}: ")), "{err}");
        assert!(
            err.contains("truncated") || (cut < 4 && err.contains("not a GGUF file")),
            "cut at {cut}: {err}"
        );
    }

    let missing = dir.path().join("absent.gguf");
    let err = read(&binary, &missing, &[]).unwrap_err();
    assert!(
        err.starts_with(&format!("{}: cannot open", missing.display())),
        "{err}"
    );
}
