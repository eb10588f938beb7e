//! Any width compiles: 30 seeded random Llama-family shapes (hidden sizes,
//! head dims, feed-forward sizes and vocabularies from 8 to 600, primes
//! included, in every weight dtype) go through `forge compile` and
//! `forge check-msl` (the strict check, and msl-emu compiling every kernel
//! against Metal's limits). No shape may panic. The checkpoints are written
//! here: a config.json and a safetensors file whose data is left sparse,
//! since `--no-weights` reads only the header. Logit parity at odd widths is
//! checked against transformers by the fixtures `llama_odd`, `qwen2_odd`
//! and `mistral_odd` in generated_projects.rs, and at two of this sweep's
//! shapes by `sweep_case16` and `sweep_case25` (checked here to be them).

mod support;

use std::path::Path;

use support::{check_project_msl, compile_no_weights, repo_root};

/// SplitMix64, so the sweep is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// Widths to draw from: primes, powers of two and their neighbours, and
/// multiples of 4 that are not multiples of 32.
const WIDTHS: &[u64] = &[
    8, 11, 13, 17, 31, 37, 48, 61, 64, 80, 97, 100, 127, 131, 160, 191, 200, 251, 256, 288, 307,
    384, 401, 500, 509, 576, 599, 600,
];

#[derive(Debug)]
struct Shape {
    hidden: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    ffn: u64,
    vocab: u64,
    layers: u64,
    tied: bool,
    dtype: &'static str,
}

fn shapes() -> Vec<Shape> {
    let mut rng = Rng(20261202);
    (0..30)
        .map(|i| {
            let kv_heads = rng.range(1, 3);
            let heads = kv_heads * rng.range(1, 3);
            // Rotations pair columns: head dims are even.
            let head_dim = 2 * rng.range(1, 40);
            Shape {
                hidden: WIDTHS[i % WIDTHS.len()],
                heads,
                kv_heads,
                head_dim,
                ffn: rng.pick(WIDTHS),
                vocab: rng.pick(WIDTHS),
                layers: rng.range(1, 2),
                tied: rng.next().is_multiple_of(2),
                dtype: rng.pick(&["f32", "f16", "bf16", "q8_0", "q4_0"]),
            }
        })
        .collect()
}

/// A Llama checkpoint of `shape` in `dir` (see `support::write_sparse_checkpoint`).
fn write_checkpoint(dir: &Path, shape: &Shape) {
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.ffn,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "vocab_size": shape.vocab,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": shape.tied,
        "torch_dtype": "float16",
    });
    let (h, f, v) = (shape.hidden, shape.ffn, shape.vocab);
    let (q, kv) = (
        shape.heads * shape.head_dim,
        shape.kv_heads * shape.head_dim,
    );
    let mut tensors: Vec<(String, Vec<u64>)> =
        vec![("model.embed_tokens.weight".into(), vec![v, h])];
    for l in 0..shape.layers {
        let p = format!("model.layers.{l}.");
        for (name, dims) in [
            ("input_layernorm.weight", vec![h]),
            ("self_attn.q_proj.weight", vec![q, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, q]),
            ("post_attention_layernorm.weight", vec![h]),
            ("mlp.gate_proj.weight", vec![f, h]),
            ("mlp.up_proj.weight", vec![f, h]),
            ("mlp.down_proj.weight", vec![h, f]),
        ] {
            tensors.push((format!("{p}{name}"), dims));
        }
    }
    tensors.push(("model.norm.weight".into(), vec![h]));
    if !shape.tied {
        tensors.push(("lm_head.weight".into(), vec![v, h]));
    }
    support::write_sparse_checkpoint(dir, &config, &tensors);
}

#[test]
fn thirty_random_shapes_compile_and_pass_the_metal_checks() {
    let root = repo_root().join("target/shape-sweep");
    let _ = std::fs::remove_dir_all(&root);
    let shapes = shapes();
    // Primes and widths that are not multiples of 4 are in the sweep.
    assert!(shapes.iter().any(|s| !s.hidden.is_multiple_of(4)));
    assert!(shapes.iter().any(|s| !s.vocab.is_multiple_of(2)));
    let mut failures = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let model = root.join(format!("case{i}/model"));
        let out = root.join(format!("case{i}/project"));
        write_checkpoint(&model, shape);
        let (code, stderr) = compile_no_weights(&model, &out, shape.dtype);
        if code != 0 {
            failures.push(format!("case {i} {shape:?}: compile: {stderr}"));
            continue;
        }
        if let Err(stderr) = check_project_msl(&out) {
            failures.push(format!("case {i} {shape:?}: check-msl: {stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The parity fixtures `sweep_case16` and `sweep_case25` (made by
/// scripts/make_fixtures.py) are this sweep's cases 16 and 25.
#[test]
fn the_parity_fixtures_are_shapes_of_the_sweep() {
    let shapes = shapes();
    for case in [16, 25] {
        let path = repo_root().join(format!("tests/fixtures/sweep_case{case}/hf/config.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let shape = &shapes[case];
        let field = |name: &str| config[name].as_u64();
        assert_eq!(
            (
                field("hidden_size"),
                field("num_attention_heads"),
                field("num_key_value_heads"),
                field("head_dim"),
                field("intermediate_size"),
                field("vocab_size"),
                field("num_hidden_layers"),
                config["tie_word_embeddings"].as_bool(),
            ),
            (
                Some(shape.hidden),
                Some(shape.heads),
                Some(shape.kv_heads),
                Some(shape.head_dim),
                Some(shape.ffn),
                Some(shape.vocab),
                Some(shape.layers),
                Some(shape.tied),
            ),
            "{} is not the sweep's case {case}",
            path.display()
        );
    }
}
