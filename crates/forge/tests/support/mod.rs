//! Builders for small checkpoints written byte by byte, so tests can break
//! them in exactly one place.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the `forge` binary and returns (exit code, stdout, stderr).
pub fn forge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .output()
        .expect("the forge binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A real model the test command fetches into `${FORGE_CACHE:-.cache}`
/// (scripts/fetch_smollm2.sh, scripts/fetch_gemma3.sh); panics naming the
/// fetch script when it is missing.
pub fn cached_model(file: &str) -> PathBuf {
    let cache = std::env::var("FORGE_CACHE").unwrap_or_else(|_| ".cache".into());
    let path = repo_root().join(cache).join(file);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch_smollm2.sh and scripts/fetch_gemma3.sh (the test command does)",
        path.display()
    );
    path
}

/// A GGUF file under construction: metadata and tensors in GGUF v3 layout.
pub struct GgufBytes {
    pub version: u32,
    pub alignment: u64,
    pub kv: Vec<u8>,
    pub kv_count: u64,
    pub infos: Vec<u8>,
    pub tensor_count: u64,
    pub data: Vec<u8>,
}

impl GgufBytes {
    pub fn new() -> Self {
        GgufBytes {
            version: 3,
            alignment: 32,
            kv: Vec::new(),
            kv_count: 0,
            infos: Vec::new(),
            tensor_count: 0,
            data: Vec::new(),
        }
    }

    pub fn raw_string(buf: &mut Vec<u8>, s: &[u8]) {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s);
    }

    pub fn kv_str(&mut self, key: &str, value: &str) -> &mut Self {
        Self::raw_string(&mut self.kv, key.as_bytes());
        self.kv.extend(8u32.to_le_bytes());
        Self::raw_string(&mut self.kv, value.as_bytes());
        self.kv_count += 1;
        self
    }

    pub fn kv_u32(&mut self, key: &str, value: u32) -> &mut Self {
        Self::raw_string(&mut self.kv, key.as_bytes());
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(value.to_le_bytes());
        self.kv_count += 1;
        self
    }

    pub fn kv_f32(&mut self, key: &str, value: f32) -> &mut Self {
        Self::raw_string(&mut self.kv, key.as_bytes());
        self.kv.extend(6u32.to_le_bytes());
        self.kv.extend(value.to_le_bytes());
        self.kv_count += 1;
        self
    }

    /// A tensor of F32 values with dims in GGML order (fastest first).
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], fill: f32) -> &mut Self {
        let n: u64 = dims.iter().product();
        let pad = (self.alignment - self.data.len() as u64 % self.alignment) % self.alignment;
        self.data.extend(std::iter::repeat_n(0u8, pad as usize));
        self.tensor_info(name, dims, 0, self.data.len() as u64);
        for _ in 0..n {
            self.data.extend(fill.to_le_bytes());
        }
        self
    }

    /// A tensor info only, with any type id and data offset.
    pub fn tensor_info(
        &mut self,
        name: &str,
        dims: &[u64],
        type_id: u32,
        offset: u64,
    ) -> &mut Self {
        Self::raw_string(&mut self.infos, name.as_bytes());
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(type_id.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.tensor_count += 1;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.tensor_count.to_le_bytes());
        out.extend(self.kv_count.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        let pad = (self.alignment - out.len() as u64 % self.alignment) % self.alignment;
        out.extend(std::iter::repeat_n(0u8, pad as usize));
        out.extend(&self.data);
        out
    }
}

/// A safetensors file: F32 tensors with the given shapes, then `header_patch` applied to the JSON.
pub fn safetensors_bytes(tensors: &[(&str, &[u64])], dtype: &str) -> (String, Vec<u8>) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    let elem = match dtype {
        "F32" => 4,
        _ => 2,
    };
    for (name, shape) in tensors {
        let n: u64 = shape.iter().product::<u64>() * elem;
        let start = data.len() as u64;
        data.extend((0..n).map(|i| (i % 7) as u8 * 16));
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, start + n]}),
        );
    }
    (serde_json::Value::Object(header).to_string(), data)
}

pub fn assemble_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// The tensors of a 1-layer Llama with hidden 32, 2 heads of 16, 1 KV head, ffn 64, vocab 64.
pub fn tiny_llama_tensors() -> Vec<(&'static str, Vec<u64>)> {
    vec![
        ("model.embed_tokens.weight", vec![64, 32]),
        ("model.norm.weight", vec![32]),
        ("lm_head.weight", vec![64, 32]),
        ("model.layers.0.input_layernorm.weight", vec![32]),
        ("model.layers.0.post_attention_layernorm.weight", vec![32]),
        ("model.layers.0.self_attn.q_proj.weight", vec![32, 32]),
        ("model.layers.0.self_attn.k_proj.weight", vec![16, 32]),
        ("model.layers.0.self_attn.v_proj.weight", vec![16, 32]),
        ("model.layers.0.self_attn.o_proj.weight", vec![32, 32]),
        ("model.layers.0.mlp.gate_proj.weight", vec![64, 32]),
        ("model.layers.0.mlp.up_proj.weight", vec![64, 32]),
        ("model.layers.0.mlp.down_proj.weight", vec![32, 64]),
    ]
}

pub fn tiny_llama_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 64,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false
    })
}

/// Writes a valid tiny Llama directory; returns its path.
pub fn write_tiny_llama(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), tiny_llama_config().to_string()).unwrap();
    let tensors = tiny_llama_tensors();
    let refs: Vec<(&str, &[u64])> = tensors.iter().map(|(n, s)| (*n, s.as_slice())).collect();
    let (header, data) = safetensors_bytes(&refs, "F32");
    std::fs::write(
        dir.join("model.safetensors"),
        assemble_safetensors(&header, &data),
    )
    .unwrap();
    dir.to_path_buf()
}

/// A valid tiny Llama as GGUF (metadata + F32 tensors, llama.cpp names).
pub fn tiny_llama_gguf() -> GgufBytes {
    let mut g = GgufBytes::new();
    g.kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 1)
        .kv_u32("llama.context_length", 128)
        .kv_u32("llama.embedding_length", 32)
        .kv_u32("llama.feed_forward_length", 64)
        .kv_u32("llama.attention.head_count", 2)
        .kv_u32("llama.attention.head_count_kv", 1)
        .kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .kv_u32("llama.vocab_size", 64);
    g.tensor_f32("token_embd.weight", &[32, 64], 0.5)
        .tensor_f32("output_norm.weight", &[32], 1.0)
        .tensor_f32("output.weight", &[32, 64], 0.25)
        .tensor_f32("blk.0.attn_norm.weight", &[32], 1.0)
        .tensor_f32("blk.0.ffn_norm.weight", &[32], 1.0)
        .tensor_f32("blk.0.attn_q.weight", &[32, 32], 0.1)
        .tensor_f32("blk.0.attn_k.weight", &[32, 16], 0.1)
        .tensor_f32("blk.0.attn_v.weight", &[32, 16], 0.1)
        .tensor_f32("blk.0.attn_output.weight", &[32, 32], 0.1)
        .tensor_f32("blk.0.ffn_gate.weight", &[32, 64], 0.1)
        .tensor_f32("blk.0.ffn_up.weight", &[32, 64], 0.1)
        .tensor_f32("blk.0.ffn_down.weight", &[64, 32], 0.1);
    g
}

/// A checkpoint for `--no-weights` runs: `config` as config.json and a
/// model.safetensors of f16 `tensors` whose data is a hole in a sparse file
/// (only the header is ever read).
pub fn write_sparse_checkpoint(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &[(String, Vec<u64>)],
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, dims) in tensors {
        let bytes = 2 * dims.iter().product::<u64>();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F16", "shape": dims, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let json = serde_json::Value::Object(header).to_string();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    let path = dir.join("model.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(bytes.len() as u64 + offset).unwrap();
}

/// `forge compile MODEL OUT --no-weights --dtype DTYPE`; panics if forge
/// panicked. Returns the exit code and stderr.
pub fn compile_no_weights(model: &Path, out: &Path, dtype: &str) -> (i32, String) {
    let (code, _, stderr) = forge(&[
        "compile",
        model.to_str().unwrap(),
        out.to_str().unwrap(),
        "--no-weights",
        "--dtype",
        dtype,
    ]);
    assert!(
        !stderr.contains("panicked"),
        "{}: forge panicked:\n{stderr}",
        model.display()
    );
    (code, stderr)
}

/// `forge check-msl` of a compiled project's kernels: the strict check and
/// msl-emu's build against Metal's limits. Err(stderr) when it fails.
pub fn check_project_msl(project: &Path) -> Result<(), String> {
    let kernels = project.join("shaders/kernels.metal");
    let (code, stdout, stderr) = forge(&["check-msl", kernels.to_str().unwrap()]);
    assert!(
        !stderr.contains("panicked"),
        "{}: forge panicked:\n{stderr}",
        kernels.display()
    );
    if code != 0 || !stdout.contains("passes the strict check") {
        return Err(stderr);
    }
    Ok(())
}
