//! The host side of generated projects (`project::host`): what it renders
//! from the checkpoint, that the rendered Rust is rustfmt-clean, and that the
//! vendored forge-runtime and msl-emu crates are complete copies. The
//! runtime itself is tested in crates/forge-runtime; whole generated
//! projects are built and run by crates/forge/tests/generated_projects.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_codegen::project::host::{
    host_files, package_name, GeneratedFile, HostContext, HostPlan,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn fixture(name: &str) -> forge_ir::Model {
    forge_frontend::load_model(&repo_root().join("tests/fixtures").join(name).join("hf"))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn context(model: &forge_ir::Model, has_tokenizer: bool) -> HostContext {
    let plan = HostPlan {
        dtype: "f32".into(),
        kv_cache: Some(
            "f32, 2 of 2 layers: 256 B per token of context, 6.0 KiB at the full 24".into(),
        ),
        recurrent_state: None,
        experts: None,
        context_length: 24,
        vocab_size: model.config.vocab_size,
        fingerprint: "0123456789abcdef".into(),
        export_dtype: None,
    };
    let tokenizer = has_tokenizer.then_some("tokenizer.json");
    HostContext::new(model, &plan, "A tiny test model.", tokenizer)
}

fn file<'a>(files: &'a [GeneratedFile], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("{path} not generated"))
        .contents
}

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
        assert!(ctx.kv_cache.starts_with("f32, "), "{}", ctx.kv_cache);
        assert_eq!(ctx.layers, "2: attention ×2");
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
fn rendered_files_are_complete_and_escaped() {
    let mut model = fixture("llama2");
    model.name = "Tricky \"quoted\" \\ name\nwith a newline".into();
    let mut ctx = context(&model, true);
    ctx.model_hint = r#"models/llama "2" \copy"#.into();
    ctx.export_flags = " --dtype q8_0".into();
    let files = host_files(&ctx).unwrap();
    let cargo_toml = file(&files, "Cargo.toml");
    assert!(
        cargo_toml.contains("name = \"tricky-quoted-name-with-a-newline\""),
        "{cargo_toml}"
    );
    assert!(cargo_toml.contains("\n[workspace]\n"));
    assert!(cargo_toml.contains("forge-runtime = { path = \"forge-runtime\" }"));
    let main = file(&files, "src/main.rs");
    for line in [
        "        eos_ids: &[2],",
        "        bos_id: Some(1),",
        "        add_bos: true,",
        "        has_tokenizer: true,",
        "        fingerprint: \"0123456789abcdef\",",
        r#"        model_hint: "models/llama \"2\" \\copy","#,
        "        export_flags: \" --dtype q8_0\",",
        "        temperature: 0.8,",
    ] {
        assert!(main.contains(line), "{line} in:\n{main}");
    }
    assert!(
        main.starts_with("//! Tricky \"quoted\" \\ name with a newline, compiled by forge."),
        "{main}"
    );
    // The vendored crates are complete: every source file of their crates.
    for (krate, dirs) in [
        ("forge-runtime", &["src", "src/cli", "src/gpu"][..]),
        ("msl-emu", &["src", "shim"]),
    ] {
        for dir in dirs {
            for entry in
                std::fs::read_dir(repo_root().join("crates").join(krate).join(dir)).unwrap()
            {
                let entry = entry.unwrap();
                if entry.path().is_file() {
                    let rel = format!("{krate}/{dir}/{}", entry.file_name().to_string_lossy());
                    assert_eq!(
                        file(&files, &rel),
                        std::fs::read_to_string(entry.path()).unwrap(),
                        "{rel}"
                    );
                }
            }
        }
    }
    assert!(!file(&files, "msl-emu/Cargo.toml").contains("workspace"));
    assert!(!file(&files, "forge-runtime/Cargo.toml").contains(".workspace"));
    // Without a tokenizer the README says so and shows no generate command.
    let files = host_files(&context(&model, false)).unwrap();
    let readme = file(&files, "README.md");
    assert!(
        readme.contains("the checkpoint has no tokenizer") && !readme.contains("-- generate"),
        "{readme}"
    );
    assert!(file(&files, "src/main.rs").contains("        has_tokenizer: false,"));
}

/// The runtime is vendored verbatim, so its version must be forge's.
#[test]
fn the_runtime_crate_has_forges_version() {
    let manifest =
        std::fs::read_to_string(repo_root().join("crates/forge-runtime/Cargo.toml")).unwrap();
    let version = format!("\nversion = \"{}\"\n", env!("CARGO_PKG_VERSION"));
    assert!(manifest.contains(&version), "{version} in {manifest}");
}

#[test]
fn rendered_main_is_rustfmt_clean() {
    let plain = context(&fixture("llama2"), true);
    // Model-dependent lines at their longest: many EOS ids (rustfmt wraps arrays over 60
    // columns), one that just fits on a line, none, and a very long model name and hint.
    let mut long = context(&fixture("smollm2"), false);
    long.model_name = "A Very Long Model Name ".repeat(8);
    long.model_hint = "/a/very/long/path/".repeat(8);
    long.eos_ids = (128000..128030).collect();
    long.bos_id = None;
    let mut fits = plain.clone();
    fits.eos_ids = (1000..1010).collect();
    let mut wraps = plain.clone();
    wraps.eos_ids = (100000..100008).collect();
    let mut none = plain.clone();
    none.eos_ids.clear();
    let mut cases = vec![
        ("plain".to_string(), plain.clone()),
        ("long".to_string(), long),
        ("fits".to_string(), fits),
        ("wraps".to_string(), wraps),
        ("none".to_string(), none),
    ];
    // Checkpoint paths of every length around the two places rustfmt decides where the
    // hint goes: after `model_hint: ` or on a line of its own (the path depends on where
    // the user keeps checkpoints, so any length happens).
    for len in 70..=95 {
        let mut hinted = plain.clone();
        hinted.model_hint = format!("/{}", "m".repeat(len - 1));
        cases.push((format!("hint{len}"), hinted));
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, ctx) in cases {
        // rustfmt follows `mod model;`: an empty model.rs stands in for the real one.
        let case = dir.path().join(&name);
        std::fs::create_dir_all(&case).unwrap();
        std::fs::write(case.join("model.rs"), "//! A stand-in.\n").unwrap();
        let path = case.join("main.rs");
        std::fs::write(&path, file(&host_files(&ctx).unwrap(), "src/main.rs")).unwrap();
        let out = Command::new("rustfmt")
            .args(["--check", "--edition", "2021"])
            .arg(&path)
            .output()
            .expect("rustfmt runs");
        assert!(
            out.status.success(),
            "{name}: main.rs is not rustfmt-clean:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Every path dependency of the generated manifests names a crate vendored
/// in the project itself, so the project builds from its directory alone.
#[test]
fn path_dependencies_stay_inside_the_project() {
    let files = host_files(&context(&fixture("llama2"), true)).unwrap();
    let mut checked = 0;
    for manifest in files.iter().filter(|f| f.path.ends_with("Cargo.toml")) {
        let dir = manifest.path.parent().unwrap();
        for line in manifest.contents.lines() {
            let Some(rest) = line.split("path = \"").nth(1) else {
                continue;
            };
            let target = rest.split('"').next().unwrap();
            let mut resolved = PathBuf::new();
            for part in dir.join(target).components() {
                match part {
                    std::path::Component::ParentDir => {
                        assert!(
                            resolved.pop(),
                            "{}: {target} leaves the project",
                            manifest.path.display()
                        );
                    }
                    std::path::Component::Normal(p) => resolved.push(p),
                    other => panic!("{}: {target} has {other:?}", manifest.path.display()),
                }
            }
            let vendored = resolved.join("Cargo.toml");
            assert!(
                files.iter().any(|f| f.path == vendored),
                "{}: {target} is not a vendored crate",
                manifest.path.display()
            );
            checked += 1;
        }
    }
    // forge-runtime from the project, msl-emu from forge-runtime.
    assert_eq!(checked, 2);
}
