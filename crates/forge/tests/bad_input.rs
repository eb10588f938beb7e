//! Every input a user can get wrong ends in one line naming the file and the
//! problem, a non-zero exit, and no panic.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// Runs `forge inspect path` and checks the failure contract; returns the message.
fn expect_error(path: &Path, names: &str, problem: &str) -> String {
    let (code, stdout, stderr) = forge(&["inspect", path.to_str().unwrap()]);
    assert_ne!(
        code,
        0,
        "forge inspect {} succeeded: {stdout}",
        path.display()
    );
    assert!(
        !stderr.contains("panicked"),
        "panic on {}: {stderr}",
        path.display()
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "error is not one line: {stderr:?}"
    );
    assert!(
        stderr.contains(names),
        "error does not name {names}: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains(&problem.to_lowercase()),
        "error does not say {problem:?}: {stderr}"
    );
    stderr
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn valid_inputs_are_accepted() {
    let d = tmp();
    let hf = write_tiny_llama(&d.path().join("hf"));
    let (code, out, err) = forge(&["inspect", hf.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("llama"));
    let gguf = write(d.path(), "m.gguf", &tiny_llama_gguf().bytes());
    let (code, out, err) = forge(&["inspect", gguf.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("llama"));
}

#[test]
fn missing_path() {
    let d = tmp();
    expect_error(&d.path().join("nope"), "nope", "no such file");
}

#[test]
fn directory_without_config() {
    let d = tmp();
    expect_error(d.path(), &d.path().display().to_string(), "config.json");
}

#[test]
fn truncated_safetensors() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();
    expect_error(&dir, "model.safetensors", "");
}

#[test]
fn safetensors_header_length_past_end() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let file = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    expect_error(&dir, "model.safetensors", "header");
}

#[test]
fn safetensors_data_out_of_range() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let (header, data) = safetensors_bytes(&[("model.norm.weight", &[32])], "F32");
    let header = header.replace("[0,128]", "[0,4096]");
    std::fs::write(
        dir.join("model.safetensors"),
        assemble_safetensors(&header, &data),
    )
    .unwrap();
    expect_error(&dir, "model.safetensors", "");
}

#[test]
fn safetensors_shape_does_not_match_bytes() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let (header, data) = safetensors_bytes(&[("model.norm.weight", &[32])], "F32");
    let header = header.replace("\"shape\":[32]", "\"shape\":[33]");
    std::fs::write(
        dir.join("model.safetensors"),
        assemble_safetensors(&header, &data),
    )
    .unwrap();
    expect_error(&dir, "model.safetensors", "model.norm.weight");
}

#[test]
fn safetensors_unknown_dtype() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let (header, data) = safetensors_bytes(&[("model.norm.weight", &[32])], "F32");
    let header = header.replace("\"F32\"", "\"F7_E9\"");
    std::fs::write(
        dir.join("model.safetensors"),
        assemble_safetensors(&header, &data),
    )
    .unwrap();
    expect_error(&dir, "model.safetensors", "F7_E9");
}

#[test]
fn missing_tensor() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let tensors: Vec<(&str, Vec<u64>)> = tiny_llama_tensors()
        .into_iter()
        .filter(|(n, _)| !n.contains("k_proj"))
        .collect();
    let refs: Vec<(&str, &[u64])> = tensors.iter().map(|(n, s)| (*n, s.as_slice())).collect();
    let (header, data) = safetensors_bytes(&refs, "F32");
    std::fs::write(
        dir.join("model.safetensors"),
        assemble_safetensors(&header, &data),
    )
    .unwrap();
    expect_error(&dir, "m", "missing tensor blk.0.attn_k.weight");
}

#[test]
fn tensor_with_wrong_shape_for_config() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let mut cfg = tiny_llama_config();
    cfg["num_key_value_heads"] = 2.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    expect_error(&dir, "m", "attn_k");
}

#[test]
fn invalid_json_config() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"llama\",").unwrap();
    expect_error(&dir, "config.json", "invalid JSON");
}

#[test]
fn missing_config_field() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let mut cfg = tiny_llama_config();
    cfg.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    expect_error(&dir, "config.json", "hidden_size");
}

#[test]
fn unknown_architecture() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let mut cfg = tiny_llama_config();
    cfg["model_type"] = "transmogrifier".into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    expect_error(
        &dir,
        "config.json",
        "unsupported architecture \"transmogrifier\"",
    );
}

#[test]
fn absurd_layer_count() {
    let d = tmp();
    let dir = write_tiny_llama(&d.path().join("m"));
    let mut cfg = tiny_llama_config();
    cfg["num_hidden_layers"] = serde_json::json!(1u64 << 50);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    expect_error(&dir, "config.json", "num_hidden_layers");
}

#[test]
fn gguf_wrong_magic() {
    let d = tmp();
    let mut bytes = tiny_llama_gguf().bytes();
    bytes[..4].copy_from_slice(b"GGML");
    expect_error(
        &write(d.path(), "m.gguf", &bytes),
        "m.gguf",
        "not a GGUF file",
    );
}

#[test]
fn gguf_truncated() {
    let d = tmp();
    let bytes = tiny_llama_gguf().bytes();
    for cut in [10, 200, bytes.len() - 64] {
        expect_error(&write(d.path(), "m.gguf", &bytes[..cut]), "m.gguf", "");
    }
}

#[test]
fn gguf_tensor_data_out_of_range() {
    let d = tmp();
    let mut g = tiny_llama_gguf();
    g.tensor_info("extra.weight", &[1 << 20], 0, 0);
    expect_error(
        &write(d.path(), "m.gguf", &g.bytes()),
        "m.gguf",
        "extra.weight",
    );
}

#[test]
fn gguf_duplicate_tensor_names() {
    let d = tmp();
    let mut g = tiny_llama_gguf();
    g.tensor_f32("output_norm.weight", &[32], 1.0);
    expect_error(
        &write(d.path(), "m.gguf", &g.bytes()),
        "m.gguf",
        "output_norm.weight",
    );
}

#[test]
fn gguf_unknown_dtype() {
    let d = tmp();
    let mut g = tiny_llama_gguf();
    g.tensor_info("odd.weight", &[32], 4242, 0);
    expect_error(&write(d.path(), "m.gguf", &g.bytes()), "m.gguf", "4242");
}

#[test]
fn gguf_terabyte_dimensions() {
    let d = tmp();
    let mut g = tiny_llama_gguf();
    g.tensor_info("huge.weight", &[1 << 40, 1 << 40], 0, 0);
    expect_error(
        &write(d.path(), "m.gguf", &g.bytes()),
        "m.gguf",
        "huge.weight",
    );
}

#[test]
fn gguf_array_count_overflow() {
    let d = tmp();
    let mut g = tiny_llama_gguf();
    GgufBytes::raw_string(&mut g.kv, b"tokenizer.ggml.tokens");
    g.kv.extend(9u32.to_le_bytes());
    g.kv.extend(8u32.to_le_bytes());
    g.kv.extend((u64::MAX / 2).to_le_bytes());
    g.kv_count += 1;
    expect_error(
        &write(d.path(), "m.gguf", &g.bytes()),
        "m.gguf",
        "tokenizer.ggml.tokens",
    );
}

#[test]
fn gguf_non_utf8_string() {
    let d = tmp();
    let mut g = tiny_llama_gguf();
    GgufBytes::raw_string(&mut g.kv, b"general.name");
    g.kv.extend(8u32.to_le_bytes());
    GgufBytes::raw_string(&mut g.kv, &[0x66, 0xff, 0xfe, 0x6f]);
    g.kv_count += 1;
    expect_error(&write(d.path(), "m.gguf", &g.bytes()), "m.gguf", "UTF-8");
}

#[test]
fn gguf_unknown_architecture() {
    let d = tmp();
    let mut g = GgufBytes::new();
    g.kv_str("general.architecture", "transmogrifier");
    expect_error(
        &write(d.path(), "m.gguf", &g.bytes()),
        "m.gguf",
        "unsupported architecture",
    );
}

#[test]
fn gguf_missing_metadata() {
    let d = tmp();
    let mut g = GgufBytes::new();
    g.kv_str("general.architecture", "llama");
    expect_error(&write(d.path(), "m.gguf", &g.bytes()), "m.gguf", "llama.");
}

#[test]
fn not_a_model_file() {
    let d = tmp();
    let p = write(d.path(), "notes.txt", b"just some text, not a model\n");
    expect_error(&p, "notes.txt", "not a GGUF file");
}
