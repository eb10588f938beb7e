//! `forge inspect --json` on every fixture checkpoint (tests/fixtures/*/hf) and
//! on its llama.cpp GGUF conversions agrees with the fixture's config.json.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

fn fixtures() -> Vec<PathBuf> {
    let root = repo_root().join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("hf/config.json").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures under {}", root.display());
    dirs
}

fn inspect_json(path: &Path) -> Value {
    let (code, out, err) = forge(&["inspect", "--json", path.to_str().unwrap()]);
    assert_eq!(code, 0, "forge inspect {}: {err}", path.display());
    serde_json::from_str(&out).unwrap()
}

/// The architecture forge should report for a config's model_type, read from
/// a Hugging Face directory or from llama.cpp's conversion of it.
fn expected_arch(model_type: &str, gguf: bool) -> &str {
    match model_type {
        "gemma3_text" => "gemma3",
        // llama.cpp converts Mistral checkpoints to its llama architecture,
        // Bamba's to its Granite hybrid one.
        "mistral" if gguf => "llama",
        "bamba" if gguf => "granitehybrid",
        "granitemoehybrid" => "granitehybrid",
        other => other,
    }
}

fn check(summary: &Value, cfg: &Value, gguf: bool, what: &str) {
    let model_type = cfg["model_type"].as_str().unwrap();
    let eq = |field: &str, want: &Value| {
        assert_eq!(&summary[field], want, "{what}: {field}");
    };
    eq(
        "architecture",
        &Value::from(expected_arch(model_type, gguf)),
    );
    let want_types = layer_kinds(cfg, gguf);
    eq("layers", &Value::from(want_types.len()));
    eq("hidden_size", &cfg["hidden_size"]);
    eq("vocab_size", &cfg["vocab_size"]);
    let ssm = model_type.starts_with("mamba");
    // Attention without rope has no positional limit; llama.cpp records 2^20.
    let unbounded = gguf && matches!(model_type, "granitemoehybrid" | "nemotron_h");
    if !ssm {
        eq("heads", &cfg["num_attention_heads"]);
        let kv = cfg
            .get("num_key_value_heads")
            .filter(|v| !v.is_null())
            .unwrap_or(&cfg["num_attention_heads"]);
        eq("kv_heads", kv);
        eq("feed_forward_length", &feed_forward_length(cfg));
        if !unbounded {
            eq("context_length", &cfg["max_position_embeddings"]);
        }
        if let Some(hd) = cfg.get("head_dim").filter(|v| !v.is_null()) {
            eq("head_dim", hd);
        }
    }
    if let Some(tie) = cfg.get("tie_word_embeddings").and_then(Value::as_bool) {
        eq("tie_word_embeddings", &Value::from(tie));
    }
    let got: Vec<Value> = summary["layer_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().trim_end_matches("+moe").into())
        .collect();
    assert_eq!(got, want_types, "{what}: layer_types");
    let counted: u64 = summary["layer_kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        counted,
        want_types.len() as u64,
        "{what}: layer kind counts"
    );
    // Jamba's key is `num_experts` (and one expert is a dense MLP).
    let experts_key = match model_type {
        "jamba" => "num_experts",
        _ => "num_local_experts",
    };
    if let Some(e) = cfg
        .get(experts_key)
        .filter(|v| v.as_u64().is_some_and(|n| n > 1))
    {
        assert_eq!(
            &summary["config"]["moe"]["num_experts"], e,
            "{what}: experts"
        );
        assert_eq!(
            &summary["config"]["moe"]["experts_per_token"], &cfg["num_experts_per_tok"],
            "{what}: experts per token"
        );
    }
    check_memory(summary, &want_types, what);
}

/// The summary's cache and state layers are the attending and the recurrent
/// ones, with bytes that fit their shapes.
fn check_memory(summary: &Value, want_types: &[Value], what: &str) {
    let layers_that = |kinds: &[&str]| {
        want_types
            .iter()
            .filter(|t| kinds.contains(&t.as_str().unwrap()))
            .count() as u64
    };
    let memory = &summary["memory"];
    if memory.is_null() {
        // Mixture-of-experts models do not compile yet (issue 12).
        assert!(
            summary["config"]["moe"].is_object(),
            "{what}: no memory: {}",
            summary["memory_unknown"]
        );
        return;
    }
    let cache_layers = layers_that(&["attention", "sliding_attention", "attention_mamba2"]);
    let state_layers = layers_that(&["mamba", "mamba2", "short_conv", "attention_mamba2"]);
    assert_eq!(memory["cache_layers"], cache_layers, "{what}: cache layers");
    assert_eq!(memory["state_layers"], state_layers, "{what}: state layers");
    // Keys and values of f32 or f16, per attention layer.
    let per_token = memory["cache_bytes_per_token"].as_u64().unwrap();
    if cache_layers > 0 {
        let kv_width =
            summary["kv_heads"].as_u64().unwrap() * summary["head_dim"].as_u64().unwrap();
        let element = per_token / (cache_layers * 2 * kv_width);
        assert!(
            per_token == cache_layers * 2 * kv_width * element && matches!(element, 2 | 4),
            "{what}: {per_token} cache bytes per token"
        );
    } else {
        assert_eq!(per_token, 0, "{what}: cache without attention");
    }
    assert_eq!(
        memory["state_bytes"].as_u64().unwrap() > 0,
        state_layers > 0,
        "{what}: state bytes"
    );
}

/// What each layer should be, from whichever of its config's keys say so.
fn layer_kinds(cfg: &Value, gguf: bool) -> Vec<Value> {
    let model_type = cfg["model_type"].as_str().unwrap();
    let count = |key: &str| cfg[key].as_u64().map(|n| n as usize);
    let list = |key: &str| -> Option<Vec<String>> {
        cfg.get(key)?
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
    };
    let window = cfg.get("sliding_window").is_some_and(|w| !w.is_null());
    let layers = count("num_hidden_layers");
    let kinds: Vec<String> = match model_type {
        "falcon_h1" => vec!["attention_mamba2".into(); layers.unwrap()],
        "bamba" => {
            let attn: Vec<u64> = cfg["attn_layer_indices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            (0..layers.unwrap() as u64)
                .map(|i| {
                    if attn.contains(&i) {
                        "attention"
                    } else {
                        "mamba2"
                    }
                    .into()
                })
                .collect()
        }
        "nemotron_h" => list("layers_block_type").unwrap(),
        // transformers' JambaConfig.layers_block_type.
        "jamba" => {
            let (period, offset) = (count("attn_layer_period"), count("attn_layer_offset"));
            (0..layers.unwrap())
                .map(|i| {
                    if i % period.unwrap() == offset.unwrap() {
                        "attention"
                    } else {
                        "mamba"
                    }
                    .into()
                })
                .collect()
        }
        _ => match list("layer_types") {
            Some(types) => types,
            None => vec![String::new(); layers.unwrap()],
        },
    };
    kinds
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let kind = match t.as_str() {
                // Jamba's are Mamba-1.
                _ if model_type == "jamba" => t.as_str(),
                "conv" => "short_conv",
                "linear_attention" | "mamba" | "mamba2" => "mamba2",
                "mlp" | "attention_mamba2" => t.as_str(),
                _ if model_type.starts_with("mamba") => model_type,
                // GGUF does not record Gemma 3's layer pattern; llama.cpp (and so
                // forge, reading GGUF) makes every sixth layer global.
                _ if gguf && model_type == "gemma3_text" && window => {
                    if (i + 1) % 6 == 0 {
                        "attention"
                    } else {
                        "sliding_attention"
                    }
                }
                "sliding_attention" if window => "sliding_attention",
                // Mistral's window applies to every layer; llama.cpp's
                // conversion to its llama architecture does not record it.
                "" if model_type == "mistral" && window && !gguf => "sliding_attention",
                _ => "attention",
            };
            Value::from(kind)
        })
        .collect()
}

/// The feed-forward width a config means: Granite's shared MLP's, and LFM2's
/// after its automatic adjustment (transformers' `Lfm2MLP`).
fn feed_forward_length(cfg: &Value) -> Value {
    match cfg["model_type"].as_str().unwrap() {
        "granitemoehybrid" => cfg["shared_intermediate_size"].clone(),
        "lfm2" if cfg["block_auto_adjust_ff_dim"] == Value::Bool(true) => {
            let mut ff = 2 * cfg["intermediate_size"].as_u64().unwrap() / 3;
            let multiplier = cfg["block_ffn_dim_multiplier"].as_f64().unwrap();
            let multiple = cfg["block_multiple_of"].as_u64().unwrap();
            ff = ((multiplier * ff as f64) as u64).div_ceil(multiple) * multiple;
            Value::from(ff)
        }
        _ => cfg["intermediate_size"].clone(),
    }
}

#[test]
fn hf_and_gguf_summaries_agree_with_config() {
    for dir in fixtures() {
        let hf = dir.join("hf");
        let cfg: Value =
            serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
        let summary = inspect_json(&hf);
        check(&summary, &cfg, false, &hf.display().to_string());
        let tok_cfg: Value = std::fs::read(hf.join("tokenizer_config.json"))
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(Value::Null);
        let has_template = tok_cfg.get("chat_template").is_some_and(|t| !t.is_null())
            || hf.join("chat_template.jinja").exists();
        assert_eq!(
            summary["chat_template"],
            has_template,
            "{}: chat template",
            hf.display()
        );
        let Ok(ggufs) = std::fs::read_dir(dir.join("gguf")) else {
            continue;
        };
        for entry in ggufs {
            let path = entry.unwrap().path();
            let g = inspect_json(&path);
            check(&g, &cfg, true, &path.display().to_string());
            assert_eq!(
                g["parameters"],
                summary["parameters"],
                "{}: parameter count",
                path.display()
            );
            // llama.cpp's converter pads the token list with `[PAD<i>]` up to
            // the embedding's rows when tokenizer.json has fewer (llama_odd: 384 of 389).
            let hf_tokens = summary["tokenizer"]["vocab_size"].as_u64().unwrap();
            let rows = cfg["vocab_size"].as_u64().unwrap();
            assert_eq!(
                g["tokenizer"]["vocab_size"].as_u64(),
                Some(hf_tokens.max(rows)),
                "{}: tokens",
                path.display()
            );
        }
    }
}

/// A copy of `hf` whose config.json is `config` reads the same in `forge
/// inspect --json` and compiles to the same plan as `hf` itself.
fn assert_config_form_matches(hf: &Path, config: &str, tag: &str) {
    let work = repo_root().join("target/config-forms").join(tag);
    let variant = work.join("hf");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&variant).unwrap();
    for entry in std::fs::read_dir(hf).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, variant.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(variant.join("config.json"), config).unwrap();

    let (a, b) = (inspect_json(hf), inspect_json(&variant));
    assert_eq!(a["config"], b["config"], "{tag}: config");
    assert_eq!(a["layer_types"], b["layer_types"], "{tag}: layer kinds");
    let fingerprint = |model: &Path, name: &str| {
        let out = work.join(name);
        let (code, stdout, stderr) = forge(&[
            "compile",
            model.to_str().unwrap(),
            out.to_str().unwrap(),
            "--no-weights",
        ]);
        assert_eq!(code, 0, "{tag}: {stderr}");
        let plan = stdout.split("(plan ").nth(1).unwrap();
        plan[..16].to_string()
    };
    assert_eq!(
        fingerprint(hf, "fixture"),
        fingerprint(&variant, "variant"),
        "{tag}: plan fingerprint"
    );
}

/// The hybrid fixtures' configs are written as transformers 5 saves them;
/// `config_forms/original.json` is the layout of the released repositories
/// (older key names, per-layer lists in other forms). Both must mean one model.
#[test]
fn released_config_forms_read_as_fixture_configs() {
    let mut seen = 0;
    for dir in fixtures() {
        let original = dir.join("config_forms/original.json");
        let Ok(config) = std::fs::read_to_string(&original) else {
            continue;
        };
        let tag = dir.file_name().unwrap().to_str().unwrap();
        assert_config_form_matches(&dir.join("hf"), &config, tag);
        seen += 1;
    }
    assert!(
        seen >= 6,
        "only {seen} fixtures have config_forms/original.json"
    );
}

/// transformers 4 wrote Mamba-2's `time_step_limit` with Python's bare
/// `Infinity` (and `torch_dtype` for `dtype`); that config must read as the
/// transformers-5 one does and compile to the same plan.
#[test]
fn mamba2_transformers4_config_reads_as_transformers5() {
    let v5 = repo_root().join("tests/fixtures/mamba2/hf");
    let config = std::fs::read_to_string(v5.join("config.json")).unwrap();
    assert!(
        config.contains("\"__float__\""),
        "the fixture's config has no __float__"
    );
    let mut old = String::new();
    // `{ "__float__": "Infinity" }`, however it is spread over lines, becomes `Infinity`.
    let mut rest = config.as_str();
    while let Some(start) = rest.find("\"__float__\"") {
        let open = rest[..start].rfind('{').unwrap();
        let close = start + rest[start..].find('}').unwrap();
        old.push_str(&rest[..open]);
        old.push_str("Infinity");
        rest = &rest[close + 1..];
    }
    old.push_str(rest);
    let old = old.replace("\"dtype\"", "\"torch_dtype\"");
    assert!(
        !old.contains("__float__") && old.contains("Infinity"),
        "{old}"
    );
    assert_config_form_matches(&v5, &old, "mamba2_transformers4");
}
