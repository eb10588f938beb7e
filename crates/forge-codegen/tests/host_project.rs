//! The host side of generated projects (`project::host`): what it renders,
//! that the rendered Rust is rustfmt-clean, and that the device layer
//! (`src/gpu/`) runs kernels on msl-emu and type-checks for
//! aarch64-apple-darwin (through the TEST PROBE crate, see `host_support`).

mod host_support;

use std::path::Path;
use std::process::Command;

use forge_codegen::project::host::{host_files, package_name, GeneratedFile, HostContext};
use host_support::*;

#[test]
fn context_comes_from_the_checkpoint() {
    // Ids from tests/fixtures/manifest.json (written by transformers' tokenizer).
    let llama = context(&fixture("llama2"), true);
    assert_eq!(
        (llama.bos_id, llama.add_bos, llama.eos_ids.clone()),
        (Some(1), true, vec![2])
    );
    let smol = context(&fixture("smollm2"), true);
    assert!(!smol.add_bos, "SmolLM2's tokenizer adds no BOS");
    assert!(!smol.eos_ids.is_empty());
    for ctx in [&llama, &smol] {
        assert_eq!(ctx.min_p, 0.05);
        assert_eq!(ctx.repeat_penalty, 1.0);
        assert_eq!(ctx.kv_dtype, "f32");
        assert!(
            !ctx.source.contains('/'),
            "no machine paths: {}",
            ctx.source
        );
    }
}

#[test]
fn package_names_are_valid_cargo_names() {
    assert_eq!(
        package_name("SmolLM2-135M-Instruct"),
        "smollm2-135m-instruct"
    );
    assert_eq!(package_name("  Llama 3.2 (1B) "), "llama-3-2-1b");
    assert_eq!(package_name("135M"), "model-135m");
    assert_eq!(package_name("Ünïcode!"), "n-code");
    assert_eq!(package_name(""), "model");
    assert_eq!(package_name("test"), "test-model");
    assert_eq!(package_name("build"), "build-model");
}

#[test]
fn rendered_files_are_complete_escaped_and_static_templates_are_verbatim() {
    let mut model = fixture("llama2");
    model.name = "Tricky \"quoted\" \\ name\nwith a newline".into();
    let ctx = context(&model, true);
    let files = host_files(&ctx).unwrap();
    let cargo_toml = file(&files, "Cargo.toml");
    assert!(
        cargo_toml.contains("name = \"tricky-quoted-name-with-a-newline\""),
        "{cargo_toml}"
    );
    assert!(cargo_toml.contains("\n[workspace]\n"));
    let main = file(&files, "src/main.rs");
    assert!(main.contains("const EOS_IDS: &[u32] = &[2];"));
    assert!(main.contains("const BOS_ID: Option<u32> = Some(1);"));
    assert!(main.contains("const ADD_BOS: bool = true;"));
    assert!(
        main.contains("/// Tricky \"quoted\" \\ name with a newline, compiled by forge: generate"),
        "{main}"
    );
    // Templates without Jinja must come out exactly as written (no `{{`/`{%` taken as markup).
    let templates = repo_root().join("templates/host");
    for (template, path) in [
        ("gpu/mod.rs.j2", "src/gpu/mod.rs"),
        ("gpu/metal.rs.j2", "src/gpu/metal.rs"),
        ("gpu/emu.rs.j2", "src/gpu/emu.rs"),
        ("sampler.rs.j2", "src/sampler.rs"),
        ("npy.rs.j2", "src/npy.rs"),
    ] {
        let source = std::fs::read_to_string(templates.join(template)).unwrap();
        assert_eq!(file(&files, path), source, "{template}");
    }
    // The vendored emulator is complete: every source file of crates/msl-emu/src and shim.
    for dir in ["src", "shim"] {
        for entry in std::fs::read_dir(repo_root().join("crates/msl-emu").join(dir)).unwrap() {
            let entry = entry.unwrap();
            if entry.path().is_file() {
                let rel = format!("msl-emu/{dir}/{}", entry.file_name().to_string_lossy());
                assert_eq!(
                    file(&files, &rel),
                    std::fs::read_to_string(entry.path()).unwrap(),
                    "{rel}"
                );
            }
        }
    }
    assert!(!file(&files, "msl-emu/Cargo.toml").contains("workspace"));
    // Without a tokenizer the README says so and shows no generate command.
    let files = host_files(&context(&model, false)).unwrap();
    let readme = file(&files, "README.md");
    assert!(
        readme.contains("the checkpoint has no tokenizer") && !readme.contains("-- generate"),
        "{readme}"
    );
    assert!(file(&files, "src/main.rs").contains("const HAS_TOKENIZER: bool = false;"));
}

#[test]
fn rendered_rust_is_rustfmt_clean() {
    let plain = context(&fixture("llama2"), true);
    // Model-dependent lines at their longest: many EOS ids (rustfmt wraps arrays over 60
    // columns), one that just fits on a line, none, and a very long model name.
    let mut long = context(&fixture("smollm2"), false);
    long.model_name = "A Very Long Model Name ".repeat(8);
    long.eos_ids = (128000..128030).collect();
    long.bos_id = None;
    let mut fits = plain.clone();
    fits.eos_ids = (1000..1010).collect();
    let mut wraps = plain.clone();
    wraps.eos_ids = (100000..100008).collect();
    let mut none = plain.clone();
    none.eos_ids.clear();
    for (name, ctx) in [
        ("plain", plain),
        ("long", long),
        ("fits", fits),
        ("wraps", wraps),
        ("none", none),
    ] {
        check_rustfmt(name, &ctx);
    }
}

fn check_rustfmt(name: &str, ctx: &HostContext) {
    let mut files = host_files(ctx).unwrap();
    files.push(extra("src/model.rs", HARNESS_MODEL));
    files.push(extra("src/weights.rs", WEIGHTS_STUB));
    let dir = write_crate(&format!("rustfmt-{name}"), &files);
    for f in files.iter().filter(|f| f.path.starts_with("src")) {
        let out = Command::new("rustfmt")
            .args(["--check", "--edition", "2021"])
            .arg(dir.join(&f.path))
            .output()
            .expect("rustfmt runs");
        assert!(
            out.status.success(),
            "{name}: {} is not rustfmt-clean:\n{}",
            f.path.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The generated Cargo.toml and device layer with the probe as main.rs.
fn probe_files() -> Vec<GeneratedFile> {
    let mut ctx = context(&fixture("llama2"), true);
    ctx.package_name = "host-gpu-probe".into();
    let mut files: Vec<GeneratedFile> = host_files(&ctx)
        .unwrap()
        .into_iter()
        .filter(|f| {
            f.path.starts_with("src/gpu")
                || f.path.starts_with("msl-emu")
                || f.path == Path::new("Cargo.toml")
        })
        .collect();
    files.push(extra("src/main.rs", GPU_PROBE_MAIN));
    files
}

#[test]
fn gpu_layer_runs_kernels_on_msl_emu_and_type_checks_for_macos() {
    let dir = write_crate("gpu-probe", &probe_files());
    cargo(&dir, &["build", "--release", "--quiet"]);
    let (code, stdout, stderr) = run(&binary("host-gpu-probe"), &[]);
    assert_eq!(code, 0, "probe failed:\n{stdout}\n{stderr}");
    for check in [
        "backend",
        "threadgroup_barrier",
        "batch_order_and_2d_grid",
        "stats",
        "stats_reset",
        "write_f32_offset",
        "write_u32",
        "buffer_len",
        "wrap_mmap_len",
        "wrap_mmap_kernel",
        "wrap_mmap_in_place",
        "missing_binding_error",
        "no_dispatch_after_error",
        "bytes_limit_error",
        "unknown_kernel_error",
    ] {
        assert!(
            stdout.contains(&format!("PASS {check}\n")),
            "{check} did not pass:\n{stdout}"
        );
    }
    cargo(
        &dir,
        &["check", "--quiet", "--target", "aarch64-apple-darwin"],
    );
}
