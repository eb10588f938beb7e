//! Compile -> build -> run for generated projects, shared by the end-to-end
//! tests. Every project builds into one target directory
//! (`target/generated-projects`) so their dependencies compile once.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{forge, repo_root};

pub fn shared_target_dir() -> PathBuf {
    repo_root().join("target/generated-projects")
}

/// A scratch directory for one case, emptied first.
pub fn case_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("target/e2e-cases").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("case directory");
    dir
}

/// `forge compile` with extra flags, naming the package after the case (so
/// binaries in the shared target directory do not overwrite each other);
/// panics with forge's stderr on failure.
pub fn compile(model: &Path, out: &Path, name: &str, flags: &[&str]) {
    let mut args = vec![
        "compile",
        model.to_str().unwrap(),
        out.to_str().unwrap(),
        "--name",
        name,
    ];
    args.extend_from_slice(flags);
    let (code, stdout, stderr) = forge(&args);
    assert_eq!(code, 0, "forge {args:?} failed:\n{stdout}\n{stderr}");
}

fn cargo(project: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO"))
        .args(args)
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .env("RUSTFLAGS", "-D warnings")
        .output()
        .expect("cargo runs")
}

/// Builds the project (warnings are errors) and returns its binary. The dev
/// profile: it compiles several times faster than release, and the project's
/// Cargo.toml optimises msl-emu, the hot code, in dev builds too.
pub fn build(project: &Path) -> PathBuf {
    let out = cargo(project, &["build", "--quiet"]);
    assert!(
        out.status.success(),
        "building {} failed:\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    let name = manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("package name in the generated Cargo.toml");
    shared_target_dir().join("debug").join(name)
}

/// `cargo check --target aarch64-apple-darwin`: the Metal host code type-checks.
pub fn check_macos(project: &Path) {
    let out = cargo(
        project,
        &["check", "--quiet", "--target", "aarch64-apple-darwin"],
    );
    assert!(
        out.status.success(),
        "cargo check --target aarch64-apple-darwin of {} failed:\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The generated Rust is rustfmt-clean: `rustfmt --check` on `src/main.rs`
/// (which reaches `src/model.rs` through `mod model;`).
pub fn check_rustfmt(project: &Path) {
    let out = Command::new("rustfmt")
        .args(["--check", "--edition", "2021"])
        .arg(project.join("src/main.rs"))
        .output()
        .expect("rustfmt runs");
    assert!(
        out.status.success(),
        "{}: the generated Rust is not rustfmt-clean:\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `forge check-msl` on the generated kernels.
pub fn check_msl(project: &Path) {
    let kernels = project.join("shaders/kernels.metal");
    let (code, stdout, stderr) = forge(&["check-msl", kernels.to_str().unwrap()]);
    assert_eq!(
        code,
        0,
        "check-msl {}:\n{stdout}\n{stderr}",
        kernels.display()
    );
}

/// Runs the generated binary; panics with its stderr on failure.
pub fn run(binary: &Path, args: &[&str]) -> String {
    let out = Command::new(binary)
        .args(args)
        .output()
        .expect("the generated binary runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the generated binary with `input` on stdin; panics with its stderr
/// on failure. Returns (stdout, stderr).
pub fn run_with_stdin(binary: &Path, args: &[&str], input: &str) -> (String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the generated binary runs");
    // Dropped after writing: the binary sees the end of its input.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("the binary reads its input");
    let out = child.wait_with_output().expect("the generated binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{stderr}",
        binary.display()
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// A 2-D little-endian f32 .npy file.
pub struct Npy {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

pub fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'"),
        "{}: not f32: {header}",
        path.display()
    );
    assert!(
        header.contains("'fortran_order': False"),
        "{}: {header}",
        path.display()
    );
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(dims.len(), 2, "{}: shape {dims:?}", path.display());
    assert_eq!(
        data.len(),
        dims[0] * dims[1],
        "{}: truncated",
        path.display()
    );
    Npy {
        rows: dims[0],
        cols: dims[1],
        data,
    }
}

/// The largest |a - b| over all elements, and the largest |b|.
pub fn max_abs_diff(a: &Npy, b: &Npy) -> (f32, f32) {
    assert_eq!((a.rows, a.cols), (b.rows, b.cols), "logit shapes differ");
    let diff = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let scale = b.data.iter().map(|y| y.abs()).fold(0.0, f32::max);
    (diff, scale)
}

pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// Mean over rows of KL(softmax(reference) || softmax(ours)).
pub fn mean_kl(ours: &Npy, reference: &Npy) -> f64 {
    let softmax = |row: &[f32]| -> Vec<f64> {
        let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let e: Vec<f64> = row.iter().map(|v| (*v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    };
    let mut total = 0.0;
    for r in 0..reference.rows {
        let span = r * reference.cols..(r + 1) * reference.cols;
        let p = softmax(&reference.data[span.clone()]);
        let q = softmax(&ours.data[span]);
        total += p
            .iter()
            .zip(&q)
            .map(|(p, q)| if *p > 0.0 { p * (p / q).ln() } else { 0.0 })
            .sum::<f64>();
    }
    total / reference.rows as f64
}
