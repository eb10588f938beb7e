//! Embeds `templates/` and the forge-runtime and msl-emu sources into the crate, so the forge
//! binary renders projects from anywhere without the source tree.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
}

fn embed(name: &str, root: &Path, dirs: &[&str], code: &mut String) {
    let mut files = Vec::new();
    for dir in dirs {
        let path = root.join(dir);
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(root, &path, &mut files);
        } else {
            files.push(PathBuf::from(dir));
        }
    }
    writeln!(code, "pub static {name}: &[(&str, &str)] = &[").unwrap();
    for file in files {
        let rel = file.to_string_lossy().replace('\\', "/");
        let abs = root.join(&file);
        writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    writeln!(code, "];").unwrap();
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let repo = manifest
        .join("../..")
        .canonicalize()
        .expect("repository root");
    let mut code = String::new();
    embed(
        "TEMPLATES",
        &repo.join("templates"),
        &["metal", "host", "project", "chat"],
        &mut code,
    );
    embed(
        "FORGE_RUNTIME_SOURCES",
        &repo.join("crates/forge-runtime"),
        &["Cargo.toml", "README.md", "src"],
        &mut code,
    );
    embed(
        "MSL_EMU_SOURCES",
        &repo.join("crates/msl-emu"),
        &["src", "shim", "README.md"],
        &mut code,
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("embedded.rs");
    std::fs::write(out, code).expect("writing embedded.rs");
}
