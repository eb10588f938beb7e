//! Mixture-of-experts checkpoints, written small and synthetic here: their
//! configs, which layers are experts, and how every stored expert tensor (one
//! per expert, or transformers 5's and llama.cpp's stacks) maps onto the
//! canonical per-expert tensors, down to the bytes each one reads.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use forge_frontend::load_model;
use forge_ir::{Architecture, DType, FeedForwardKind, Model, MoeConfig, Op, TensorTransform};
use forge_weights::gguf::{GgufValue, GgufWriter};

const HIDDEN: u64 = 8;
const VOCAB: u64 = 16;
const EXPERTS: u64 = 4;
const EXPERT_FF: u64 = 6;
const SHARED_FF: u64 = 10;
const DENSE_FF: u64 = 12;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("forge-moe-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Hugging Face directory of F32 tensors; returns each tensor's data offset.
fn write_hf(dir: &Path, config: &str, tensors: &[(String, Vec<u64>)]) -> BTreeMap<String, u64> {
    fs::write(dir.join("config.json"), config).unwrap();
    let mut header = serde_json::Map::new();
    let mut offsets = BTreeMap::new();
    let mut at = 0u64;
    for (name, shape) in tensors {
        let bytes = 4 * shape.iter().product::<u64>();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [at, at + bytes]}),
        );
        offsets.insert(name.clone(), at);
        at += bytes;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut file = (text.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(text.as_bytes());
    let data_start = file.len() as u64;
    file.resize(file.len() + at as usize, 0);
    fs::write(dir.join("model.safetensors"), file).unwrap();
    offsets
        .into_iter()
        .map(|(k, v)| (k, v + data_start))
        .collect()
}

fn t(name: impl Into<String>, shape: &[u64]) -> (String, Vec<u64>) {
    (name.into(), shape.to_vec())
}

/// Embedding, final norm and LM head.
fn outer_tensors() -> Vec<(String, Vec<u64>)> {
    vec![
        t("model.embed_tokens.weight", &[VOCAB, HIDDEN]),
        t("model.norm.weight", &[HIDDEN]),
        t("lm_head.weight", &[VOCAB, HIDDEN]),
    ]
}

/// Two heads of 4, one KV head; q/k/v biases and q/k norms when asked.
fn attention_tensors(i: u64, bias: bool, qk_norm: bool) -> Vec<(String, Vec<u64>)> {
    let p = format!("model.layers.{i}.");
    let mut v = vec![
        t(format!("{p}input_layernorm.weight"), &[HIDDEN]),
        t(format!("{p}post_attention_layernorm.weight"), &[HIDDEN]),
        t(format!("{p}self_attn.q_proj.weight"), &[8, HIDDEN]),
        t(format!("{p}self_attn.k_proj.weight"), &[4, HIDDEN]),
        t(format!("{p}self_attn.v_proj.weight"), &[4, HIDDEN]),
        t(format!("{p}self_attn.o_proj.weight"), &[HIDDEN, 8]),
    ];
    if bias {
        v.push(t(format!("{p}self_attn.q_proj.bias"), &[8]));
        v.push(t(format!("{p}self_attn.k_proj.bias"), &[4]));
        v.push(t(format!("{p}self_attn.v_proj.bias"), &[4]));
    }
    if qk_norm {
        v.push(t(format!("{p}self_attn.q_norm.weight"), &[4]));
        v.push(t(format!("{p}self_attn.k_norm.weight"), &[4]));
    }
    v
}

fn dense_mlp(i: u64) -> Vec<(String, Vec<u64>)> {
    let p = format!("model.layers.{i}.mlp.");
    vec![
        t(format!("{p}gate_proj.weight"), &[DENSE_FF, HIDDEN]),
        t(format!("{p}up_proj.weight"), &[DENSE_FF, HIDDEN]),
        t(format!("{p}down_proj.weight"), &[HIDDEN, DENSE_FF]),
    ]
}

/// A router and experts under `p` (`model.layers.N.mlp.`), one tensor per
/// expert with the given projection names, or transformers 5's two stacks.
fn experts(p: &str, fused: bool, names: [&str; 3]) -> Vec<(String, Vec<u64>)> {
    let mut v = vec![t(format!("{p}gate.weight"), &[EXPERTS, HIDDEN])];
    if fused {
        v.push(t(
            format!("{p}experts.gate_up_proj"),
            &[EXPERTS, 2 * EXPERT_FF, HIDDEN],
        ));
        v.push(t(
            format!("{p}experts.down_proj"),
            &[EXPERTS, HIDDEN, EXPERT_FF],
        ));
        return v;
    }
    let [gate, up, down] = names;
    for e in 0..EXPERTS {
        v.push(t(
            format!("{p}experts.{e}.{gate}.weight"),
            &[EXPERT_FF, HIDDEN],
        ));
        v.push(t(
            format!("{p}experts.{e}.{up}.weight"),
            &[EXPERT_FF, HIDDEN],
        ));
        v.push(t(
            format!("{p}experts.{e}.{down}.weight"),
            &[HIDDEN, EXPERT_FF],
        ));
    }
    v
}

fn shared_expert(i: u64) -> Vec<(String, Vec<u64>)> {
    let p = format!("model.layers.{i}.mlp.");
    vec![
        t(
            format!("{p}shared_expert.gate_proj.weight"),
            &[SHARED_FF, HIDDEN],
        ),
        t(
            format!("{p}shared_expert.up_proj.weight"),
            &[SHARED_FF, HIDDEN],
        ),
        t(
            format!("{p}shared_expert.down_proj.weight"),
            &[HIDDEN, SHARED_FF],
        ),
        t(format!("{p}shared_expert_gate.weight"), &[1, HIDDEN]),
    ]
}

fn load(dir: &Path) -> Model {
    load_model(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn kinds(model: &Model) -> Vec<FeedForwardKind> {
    model.config.layers.iter().map(|l| l.feed_forward).collect()
}

/// The canonical tensor `name`'s shape and offset into its stored tensor's data.
fn slice_of(model: &Model, name: &str, stored_at: u64) -> (Vec<u64>, u64) {
    let spec = model
        .tensors
        .get(name)
        .unwrap_or_else(|| panic!("no canonical tensor {name}"));
    (spec.shape.clone(), spec.source.offset - stored_at)
}

/// Every MoE layer's graph reads its experts, and its shared expert as configured.
fn check_graph(model: &Model) {
    let moe = model.config.moe.as_ref().unwrap();
    for (i, block) in model.graph.blocks.iter().enumerate() {
        let experts = block.nodes.iter().find_map(|n| match &n.op {
            Op::MoeExperts { gate, shared, .. } => Some((gate.len() as u64, shared.clone())),
            _ => None,
        });
        match model.config.layers[i].feed_forward {
            FeedForwardKind::MixtureOfExperts => {
                let (n, shared) = experts.unwrap_or_else(|| panic!("layer {i} has no experts"));
                assert_eq!(n, moe.num_experts);
                assert_eq!(shared.is_some(), moe.shared_intermediate_size.is_some());
                assert_eq!(
                    shared.is_some_and(|s| s.gate_inp.is_some()),
                    moe.shared_gated
                );
            }
            _ => assert!(experts.is_none(), "layer {i} is dense but has experts"),
        }
    }
}

const QWEN_BASE: &str = r#""hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1,
    "vocab_size": 16, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
    "intermediate_size": 12, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 6"#;

fn qwen2_moe_dir(name: &str, fused: bool) -> (PathBuf, BTreeMap<String, u64>) {
    let config = format!(
        r#"{{"model_type": "qwen2_moe", "architectures": ["Qwen2MoeForCausalLM"], {QWEN_BASE},
        "num_hidden_layers": 3, "shared_expert_intermediate_size": 10, "norm_topk_prob": false,
        "decoder_sparse_step": 1, "mlp_only_layers": [1], "qkv_bias": true,
        "use_sliding_window": false, "sliding_window": 4096}}"#
    );
    let mut tensors = outer_tensors();
    for i in 0..3 {
        tensors.extend(attention_tensors(i, true, false));
        if i == 1 {
            tensors.extend(dense_mlp(i));
        } else {
            let p = format!("model.layers.{i}.mlp.");
            tensors.extend(experts(&p, fused, ["gate_proj", "up_proj", "down_proj"]));
            tensors.extend(shared_expert(i));
        }
    }
    let dir = scratch(name);
    let offsets = write_hf(&dir, &config, &tensors);
    (dir, offsets)
}

#[test]
fn qwen2_moe_per_expert_names() {
    let (dir, offsets) = qwen2_moe_dir("qwen2moe", false);
    let model = load(&dir);
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Qwen2Moe);
    assert_eq!(
        c.moe,
        Some(MoeConfig {
            num_experts: 4,
            experts_per_token: 2,
            renormalize: false,
            expert_intermediate_size: EXPERT_FF,
            shared_intermediate_size: Some(SHARED_FF),
            shared_gated: true,
        })
    );
    use FeedForwardKind::{Dense, MixtureOfExperts as Moe};
    assert_eq!(kinds(&model), [Moe, Dense, Moe]);
    assert_eq!(c.feed_forward.as_ref().unwrap().intermediate_size, DENSE_FF);
    let a = c.attention.as_ref().unwrap();
    assert!(a.qkv_bias && !a.output_bias && !a.qk_norm);
    assert_eq!(a.sliding_window, None);
    let at = |name: &str| offsets[name];
    assert_eq!(
        slice_of(
            &model,
            "blk.2.ffn_up.3.weight",
            at("model.layers.2.mlp.experts.3.up_proj.weight")
        ),
        (vec![EXPERT_FF, HIDDEN], 0)
    );
    for (canonical, stored) in [
        (
            "blk.0.ffn_gate_inp.weight",
            "model.layers.0.mlp.gate.weight",
        ),
        (
            "blk.0.ffn_gate_inp_shexp.weight",
            "model.layers.0.mlp.shared_expert_gate.weight",
        ),
        (
            "blk.2.ffn_down_shexp.weight",
            "model.layers.2.mlp.shared_expert.down_proj.weight",
        ),
        (
            "blk.1.ffn_gate.weight",
            "model.layers.1.mlp.gate_proj.weight",
        ),
    ] {
        assert_eq!(
            model.tensors.get(canonical).unwrap().source.offset,
            at(stored)
        );
    }
    check_graph(&model);
}

#[test]
fn qwen2_moe_fused_expert_stacks_split_per_expert() {
    let (dir, offsets) = qwen2_moe_dir("qwen2moe-fused", true);
    let model = load(&dir);
    let gate_up = offsets["model.layers.2.mlp.experts.gate_up_proj"];
    let down = offsets["model.layers.2.mlp.experts.down_proj"];
    let row = 4 * HIDDEN;
    // Expert e's gate rows, then its up rows, in [experts, 2·inter, hidden].
    for e in 0..EXPERTS {
        let base = e * 2 * EXPERT_FF * row;
        assert_eq!(
            slice_of(&model, &format!("blk.2.ffn_gate.{e}.weight"), gate_up),
            (vec![EXPERT_FF, HIDDEN], base)
        );
        assert_eq!(
            slice_of(&model, &format!("blk.2.ffn_up.{e}.weight"), gate_up),
            (vec![EXPERT_FF, HIDDEN], base + EXPERT_FF * row)
        );
        assert_eq!(
            slice_of(&model, &format!("blk.2.ffn_down.{e}.weight"), down),
            (vec![HIDDEN, EXPERT_FF], e * HIDDEN * 4 * EXPERT_FF)
        );
        let spec = model
            .tensors
            .get(&format!("blk.2.ffn_up.{e}.weight"))
            .unwrap();
        assert_eq!(spec.source.n_bytes, EXPERT_FF * row);
    }
    check_graph(&model);
}

#[test]
fn qwen2_moe_refuses_a_stack_of_the_wrong_shape() {
    let config = format!(
        r#"{{"model_type": "qwen2_moe", {QWEN_BASE}, "num_hidden_layers": 1,
        "shared_expert_intermediate_size": 10}}"#
    );
    let mut tensors = outer_tensors();
    tensors.extend(attention_tensors(0, true, false));
    tensors.extend(shared_expert(0));
    tensors.push(t("model.layers.0.mlp.gate.weight", &[EXPERTS, HIDDEN]));
    // Transposed ([experts, hidden, 2·inter]), as some other models store it.
    tensors.push(t(
        "model.layers.0.mlp.experts.gate_up_proj",
        &[EXPERTS, HIDDEN, 2 * EXPERT_FF],
    ));
    tensors.push(t(
        "model.layers.0.mlp.experts.down_proj",
        &[EXPERTS, HIDDEN, EXPERT_FF],
    ));
    let dir = scratch("qwen2moe-bad-stack");
    write_hf(&dir, &config, &tensors);
    let e = load_model(&dir).unwrap_err().to_string();
    assert!(e.contains("model.layers.0.mlp.experts.gate_up_proj"), "{e}");
    assert!(e.contains("has 8 rows, expected 12"), "{e}");
}

#[test]
fn qwen2_moe_dense_tensor_in_an_expert_layer_is_unexpected() {
    let config = format!(
        r#"{{"model_type": "qwen2_moe", {QWEN_BASE}, "num_hidden_layers": 1,
        "shared_expert_intermediate_size": 10}}"#
    );
    let mut tensors = outer_tensors();
    tensors.extend(attention_tensors(0, true, false));
    tensors.extend(dense_mlp(0));
    let dir = scratch("qwen2moe-dense-in-moe");
    write_hf(&dir, &config, &tensors);
    let e = load_model(&dir).unwrap_err().to_string();
    assert!(
        e.contains("unexpected tensor model.layers.0.mlp.gate_proj.weight"),
        "{e}"
    );
}

#[test]
fn qwen3_moe_sparse_step_and_mlp_only_layers() {
    let config = format!(
        r#"{{"model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], {QWEN_BASE},
        "head_dim": 4, "num_hidden_layers": 4, "norm_topk_prob": true, "decoder_sparse_step": 2,
        "mlp_only_layers": [3], "attention_bias": false, "use_sliding_window": false,
        "sliding_window": null}}"#
    );
    let mut tensors = outer_tensors();
    for i in 0..4 {
        tensors.extend(attention_tensors(i, false, true));
        if i == 1 {
            let p = format!("model.layers.{i}.mlp.");
            tensors.extend(experts(&p, true, ["gate_proj", "up_proj", "down_proj"]));
        } else {
            tensors.extend(dense_mlp(i));
        }
    }
    let dir = scratch("qwen3moe");
    write_hf(&dir, &config, &tensors);
    let model = load(&dir);
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Qwen3Moe);
    let moe = c.moe.as_ref().unwrap();
    assert!(moe.renormalize);
    assert_eq!(moe.shared_intermediate_size, None);
    assert!(!moe.shared_gated);
    use FeedForwardKind::{Dense, MixtureOfExperts as Moe};
    // (i + 1) % 2 == 0 picks layers 1 and 3; layer 3 is listed as dense.
    assert_eq!(kinds(&model), [Dense, Moe, Dense, Dense]);
    let a = c.attention.as_ref().unwrap();
    assert!(a.qk_norm && !a.qkv_bias && !a.output_bias);
    assert!(model.tensors.get("blk.1.attn_q_norm.weight").is_some());
    check_graph(&model);
}

#[test]
fn qwen_moe_config_errors() {
    let parse = |extra: &str| {
        let text = format!(
            r#"{{"model_type": "qwen3_moe", {QWEN_BASE}, "num_hidden_layers": 2 {extra}}}"#
        );
        let obj =
            forge_frontend::hf::json::JsonObject::parse(Path::new("config.json"), text.as_bytes())
                .unwrap();
        forge_frontend::hf::config::parse(&obj).map_err(|e| e.to_string())
    };
    assert!(parse("").is_ok());
    let e = parse(r#", "mlp_only_layers": [2]"#).unwrap_err();
    assert!(
        e.contains("mlp_only_layers names layer 2 of a 2-layer model"),
        "{e}"
    );
    let e = parse(r#", "decoder_sparse_step": 0"#).unwrap_err();
    assert!(e.contains("decoder_sparse_step is 0"), "{e}");
    // No experts at all: a dense model.
    let c = parse(r#", "num_experts": 0"#).unwrap();
    assert!(c.moe.is_none());
    assert!(c
        .layers
        .iter()
        .all(|l| l.feed_forward == FeedForwardKind::Dense));
}

const MIXTRAL_CONFIG: &str = r#"{"model_type": "mixtral", "hidden_size": 8,
    "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
    "max_position_embeddings": 64, "intermediate_size": 6, "num_hidden_layers": 1,
    "num_local_experts": 4, "num_experts_per_tok": 2}"#;

#[test]
fn mixtral_legacy_and_fused_layouts_agree() {
    let mut legacy = outer_tensors();
    legacy.extend(attention_tensors(0, false, false));
    legacy.extend(experts(
        "model.layers.0.block_sparse_moe.",
        false,
        ["w1", "w3", "w2"],
    ));
    let mut fused = outer_tensors();
    fused.extend(attention_tensors(0, false, false));
    fused.extend(experts("model.layers.0.mlp.", true, ["", "", ""]));
    let (a, b) = (scratch("mixtral-legacy"), scratch("mixtral-fused"));
    let legacy_at = write_hf(&a, MIXTRAL_CONFIG, &legacy);
    let fused_at = write_hf(&b, MIXTRAL_CONFIG, &fused);
    let (a, b) = (load(&a), load(&b));
    assert_eq!(a.config, b.config);
    assert_eq!(a.graph, b.graph);
    let names = |m: &Model| {
        let mut v: Vec<_> = m
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&a), names(&b));
    assert_eq!(
        a.tensors
            .get("blk.0.ffn_up.2.weight")
            .unwrap()
            .source
            .offset,
        legacy_at["model.layers.0.block_sparse_moe.experts.2.w3.weight"]
    );
    assert_eq!(
        slice_of(
            &b,
            "blk.0.ffn_up.2.weight",
            fused_at["model.layers.0.mlp.experts.gate_up_proj"]
        ),
        (
            vec![EXPERT_FF, HIDDEN],
            (2 * 2 + 1) * EXPERT_FF * 4 * HIDDEN
        )
    );
    assert!(a.config.moe.as_ref().unwrap().renormalize);
    check_graph(&b);
}

/// Granite-4.0-H with experts: two attention layers (no Mamba tensors needed).
fn granite_dir(name: &str, fused: bool) -> (PathBuf, BTreeMap<String, u64>) {
    let config = r#"{"model_type": "granitemoehybrid", "hidden_size": 8,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
        "max_position_embeddings": 64, "num_hidden_layers": 2,
        "layer_types": ["attention", "attention"], "intermediate_size": 6,
        "shared_intermediate_size": 10, "num_local_experts": 4, "num_experts_per_tok": 2,
        "mamba_n_heads": 4, "mamba_d_state": 4, "mamba_d_head": 4,
        "residual_multiplier": 0.5, "logits_scaling": 2.0, "position_embedding_type": "nope"}"#;
    let mut tensors = outer_tensors();
    for i in 0..2 {
        tensors.extend(attention_tensors(i, false, false));
        let p = format!("model.layers.{i}.");
        let (router, gate_up, down) = if fused {
            (
                "block_sparse_moe.router.weight",
                "block_sparse_moe.experts.gate_up_proj",
                "block_sparse_moe.experts.down_proj",
            )
        } else {
            (
                "block_sparse_moe.router.layer.weight",
                "block_sparse_moe.input_linear.weight",
                "block_sparse_moe.output_linear.weight",
            )
        };
        tensors.push(t(format!("{p}{router}"), &[EXPERTS, HIDDEN]));
        tensors.push(t(
            format!("{p}{gate_up}"),
            &[EXPERTS, 2 * EXPERT_FF, HIDDEN],
        ));
        tensors.push(t(format!("{p}{down}"), &[EXPERTS, HIDDEN, EXPERT_FF]));
        tensors.push(t(
            format!("{p}shared_mlp.input_linear.weight"),
            &[2 * SHARED_FF, HIDDEN],
        ));
        tensors.push(t(
            format!("{p}shared_mlp.output_linear.weight"),
            &[HIDDEN, SHARED_FF],
        ));
    }
    let dir = scratch(name);
    let offsets = write_hf(&dir, config, &tensors);
    (dir, offsets)
}

#[test]
fn granite_hybrid_with_experts_and_shared_mlp() {
    let (dir, offsets) = granite_dir("granite-moe", false);
    let model = load(&dir);
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::GraniteHybrid);
    assert_eq!(
        c.moe,
        Some(MoeConfig {
            num_experts: 4,
            experts_per_token: 2,
            renormalize: true,
            expert_intermediate_size: EXPERT_FF,
            shared_intermediate_size: Some(SHARED_FF),
            shared_gated: false,
        })
    );
    assert_eq!(kinds(&model), [FeedForwardKind::MixtureOfExperts; 2]);
    let row = 4 * HIDDEN;
    let input = offsets["model.layers.1.block_sparse_moe.input_linear.weight"];
    assert_eq!(
        slice_of(&model, "blk.1.ffn_up.3.weight", input),
        (vec![EXPERT_FF, HIDDEN], (3 * 2 + 1) * EXPERT_FF * row)
    );
    let shared = offsets["model.layers.1.shared_mlp.input_linear.weight"];
    assert_eq!(
        slice_of(&model, "blk.1.ffn_gate_shexp.weight", shared),
        (vec![SHARED_FF, HIDDEN], 0)
    );
    assert_eq!(
        slice_of(&model, "blk.1.ffn_up_shexp.weight", shared),
        (vec![SHARED_FF, HIDDEN], SHARED_FF * row)
    );
    assert!(model.tensors.get("blk.1.ffn_gate.weight").is_none());
    // The residual multiplier scales every expert's and the shared expert's output.
    let half = TensorTransform::ScaleRows {
        runs: vec![(HIDDEN, 0.5)],
    };
    for name in [
        "blk.0.ffn_down.0.weight",
        "blk.1.ffn_down.3.weight",
        "blk.1.ffn_down_shexp.weight",
    ] {
        assert_eq!(
            model.tensors.get(name).unwrap().transforms,
            std::slice::from_ref(&half),
            "{name}"
        );
    }
    assert!(model
        .tensors
        .get("blk.1.ffn_up.3.weight")
        .unwrap()
        .transforms
        .is_empty());
    check_graph(&model);

    let (fused_dir, _) = granite_dir("granite-moe-fused", true);
    let fused = load(&fused_dir);
    assert_eq!(fused.config, model.config);
    assert_eq!(fused.graph, model.graph);
}

fn gguf_string_array(items: &[&str]) -> GgufValue {
    GgufValue::Array(forge_weights::gguf::GgufArray {
        item_type: forge_weights::gguf::GgufValueType::String,
        items: items
            .iter()
            .map(|s| GgufValue::String(s.to_string()))
            .collect(),
    })
}

/// A GGUF of F32 tensors (dims in GGML order); returns each tensor's offset.
fn write_gguf(
    path: &Path,
    metadata: Vec<(&str, GgufValue)>,
    tensors: &[(String, Vec<u64>)],
) -> BTreeMap<String, u64> {
    let out = BufWriter::new(fs::File::create(path).unwrap());
    let mut w = GgufWriter::new(out);
    for (k, v) in metadata {
        w.add_metadata(k, v).unwrap();
    }
    let sizes: Vec<u64> = tensors
        .iter()
        .map(|(n, d)| w.add_tensor(n, d, DType::F32).unwrap())
        .collect();
    for ((n, _), size) in tensors.iter().zip(sizes) {
        w.write_tensor_data(n, &vec![0u8; size as usize]).unwrap();
    }
    w.finish().unwrap();
    let file = forge_frontend::gguf::GgufFile::open(path).unwrap();
    file.tensors
        .iter()
        .map(|t| (t.name.clone(), t.offset))
        .collect()
}

/// A llama.cpp `qwen2moe` or `qwen3moe` file of three layers, layer 1 dense.
fn qwen_moe_gguf(arch: &str, shared: bool) -> (Model, BTreeMap<String, u64>) {
    let key = |k: &str| format!("{arch}.{k}");
    let keys: Vec<(String, GgufValue)> = vec![
        (key("block_count"), GgufValue::U32(3)),
        (key("context_length"), GgufValue::U32(64)),
        (key("embedding_length"), GgufValue::U32(HIDDEN as u32)),
        (key("feed_forward_length"), GgufValue::U32(DENSE_FF as u32)),
        (key("attention.head_count"), GgufValue::U32(2)),
        (key("attention.head_count_kv"), GgufValue::U32(1)),
        (
            key("attention.layer_norm_rms_epsilon"),
            GgufValue::F32(1e-6),
        ),
        (key("expert_count"), GgufValue::U32(EXPERTS as u32)),
        (key("expert_used_count"), GgufValue::U32(2)),
        (
            key("expert_feed_forward_length"),
            GgufValue::U32(EXPERT_FF as u32),
        ),
        (
            key("expert_shared_feed_forward_length"),
            GgufValue::U32(SHARED_FF as u32),
        ),
    ];
    let mut metadata: Vec<(&str, GgufValue)> = vec![
        ("general.architecture", GgufValue::String(arch.into())),
        (
            "tokenizer.ggml.tokens",
            gguf_string_array(&["a"; VOCAB as usize]),
        ),
    ];
    metadata.extend(keys.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let mut tensors = vec![
        t("token_embd.weight", &[HIDDEN, VOCAB]),
        t("output_norm.weight", &[HIDDEN]),
        t("output.weight", &[HIDDEN, VOCAB]),
    ];
    for i in 0..3 {
        let b = |n: &str| format!("blk.{i}.{n}");
        tensors.extend([
            t(b("attn_norm.weight"), &[HIDDEN]),
            t(b("ffn_norm.weight"), &[HIDDEN]),
            t(b("attn_q.weight"), &[HIDDEN, 8]),
            t(b("attn_k.weight"), &[HIDDEN, 4]),
            t(b("attn_v.weight"), &[HIDDEN, 4]),
            t(b("attn_output.weight"), &[8, HIDDEN]),
        ]);
        if arch == "qwen3moe" {
            tensors.push(t(b("attn_q_norm.weight"), &[4]));
            tensors.push(t(b("attn_k_norm.weight"), &[4]));
        } else {
            tensors.push(t(b("attn_q.bias"), &[8]));
            tensors.push(t(b("attn_k.bias"), &[4]));
            tensors.push(t(b("attn_v.bias"), &[4]));
        }
        if i == 1 {
            tensors.extend([
                t(b("ffn_gate.weight"), &[HIDDEN, DENSE_FF]),
                t(b("ffn_up.weight"), &[HIDDEN, DENSE_FF]),
                t(b("ffn_down.weight"), &[DENSE_FF, HIDDEN]),
            ]);
            continue;
        }
        tensors.extend([
            t(b("ffn_gate_inp.weight"), &[HIDDEN, EXPERTS]),
            t(b("ffn_gate_exps.weight"), &[HIDDEN, EXPERT_FF, EXPERTS]),
            t(b("ffn_up_exps.weight"), &[HIDDEN, EXPERT_FF, EXPERTS]),
            t(b("ffn_down_exps.weight"), &[EXPERT_FF, HIDDEN, EXPERTS]),
        ]);
        if shared {
            tensors.extend([
                t(b("ffn_gate_inp_shexp.weight"), &[HIDDEN]),
                t(b("ffn_gate_shexp.weight"), &[HIDDEN, SHARED_FF]),
                t(b("ffn_up_shexp.weight"), &[HIDDEN, SHARED_FF]),
                t(b("ffn_down_shexp.weight"), &[SHARED_FF, HIDDEN]),
            ]);
        }
    }
    let dir = scratch(&format!("gguf-{arch}"));
    let path = dir.join("model.gguf");
    let offsets = write_gguf(&path, metadata, &tensors);
    (load(&path), offsets)
}

#[test]
fn gguf_qwen2moe_shared_expert_and_dense_layer() {
    let (model, offsets) = qwen_moe_gguf("qwen2moe", true);
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Qwen2Moe);
    assert_eq!(
        c.moe,
        Some(MoeConfig {
            num_experts: 4,
            experts_per_token: 2,
            // llama.cpp does not renormalise Qwen2-MoE's top-k.
            renormalize: false,
            expert_intermediate_size: EXPERT_FF,
            shared_intermediate_size: Some(SHARED_FF),
            shared_gated: true,
        })
    );
    use FeedForwardKind::{Dense, MixtureOfExperts as Moe};
    assert_eq!(kinds(&model), [Moe, Dense, Moe]);
    assert!(c.attention.as_ref().unwrap().qkv_bias);
    let gate = model
        .tensors
        .get("blk.2.ffn_gate_inp_shexp.weight")
        .unwrap();
    assert_eq!(gate.shape, [1, HIDDEN]);
    assert_eq!(
        slice_of(
            &model,
            "blk.2.ffn_down.3.weight",
            offsets["blk.2.ffn_down_exps.weight"]
        ),
        (vec![HIDDEN, EXPERT_FF], 3 * HIDDEN * EXPERT_FF * 4)
    );
    check_graph(&model);
}

#[test]
fn gguf_qwen3moe_renormalises() {
    let (model, _) = qwen_moe_gguf("qwen3moe", false);
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Qwen3Moe);
    let moe = c.moe.as_ref().unwrap();
    assert!(moe.renormalize);
    assert_eq!(moe.shared_intermediate_size, None);
    assert!(c.attention.as_ref().unwrap().qk_norm);
    check_graph(&model);
}

/// Jamba: attention where `i % 2 == 1`, Mamba-1 elsewhere; experts where
/// `i % 3 == 0`; `mamba_dt_rank` "auto" is ⌈8 / 16⌉ = 1.
const JAMBA_CONFIG: &str = r#"{"model_type": "jamba", "hidden_size": 8,
    "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
    "max_position_embeddings": 64, "intermediate_size": 6, "num_hidden_layers": 4,
    "attn_layer_period": 2, "attn_layer_offset": 1,
    "expert_layer_period": 3, "expert_layer_offset": 0,
    "num_experts": 4, "num_experts_per_tok": 2, "rms_norm_eps": 1e-6,
    "mamba_d_state": 4, "mamba_d_conv": 3, "mamba_expand": 2, "mamba_dt_rank": "auto",
    "mamba_conv_bias": true, "mamba_proj_bias": false}"#;

/// The stored tensors of a Jamba of [`JAMBA_CONFIG`]'s shape, passed through `edit`.
fn jamba_dir(
    name: &str,
    fused: bool,
    edit: fn(&mut Vec<(String, Vec<u64>)>),
) -> (PathBuf, BTreeMap<String, u64>) {
    let mut tensors = vec![
        t("model.embed_tokens.weight", &[VOCAB, HIDDEN]),
        t("model.final_layernorm.weight", &[HIDDEN]),
        t("lm_head.weight", &[VOCAB, HIDDEN]),
    ];
    let inner = 2 * HIDDEN;
    for i in 0..4u64 {
        let p = format!("model.layers.{i}.");
        tensors.push(t(format!("{p}input_layernorm.weight"), &[HIDDEN]));
        tensors.push(t(format!("{p}pre_ff_layernorm.weight"), &[HIDDEN]));
        if i % 2 == 1 {
            for (proj, rows) in [("q", 8), ("k", 4), ("v", 4)] {
                tensors.push(t(
                    format!("{p}self_attn.{proj}_proj.weight"),
                    &[rows, HIDDEN],
                ));
            }
            tensors.push(t(format!("{p}self_attn.o_proj.weight"), &[HIDDEN, 8]));
        } else {
            let m = format!("{p}mamba.");
            tensors.extend([
                t(format!("{m}A_log"), &[inner, 4]),
                t(format!("{m}D"), &[inner]),
                t(format!("{m}conv1d.weight"), &[inner, 1, 3]),
                t(format!("{m}conv1d.bias"), &[inner]),
                t(format!("{m}in_proj.weight"), &[2 * inner, HIDDEN]),
                t(format!("{m}x_proj.weight"), &[1 + 2 * 4, inner]),
                t(format!("{m}dt_proj.weight"), &[inner, 1]),
                t(format!("{m}dt_proj.bias"), &[inner]),
                t(format!("{m}out_proj.weight"), &[HIDDEN, inner]),
                t(format!("{m}dt_layernorm.weight"), &[1]),
                t(format!("{m}b_layernorm.weight"), &[4]),
                t(format!("{m}c_layernorm.weight"), &[4]),
            ]);
        }
        if i % 3 == 0 {
            let f = format!("{p}feed_forward.");
            let mut e = experts(&f, fused, ["gate_proj", "up_proj", "down_proj"]);
            e[0] = t(format!("{f}router.weight"), &[EXPERTS, HIDDEN]);
            tensors.extend(e);
        } else {
            for (proj, shape) in [
                ("gate_proj", [EXPERT_FF, HIDDEN]),
                ("up_proj", [EXPERT_FF, HIDDEN]),
                ("down_proj", [HIDDEN, EXPERT_FF]),
            ] {
                tensors.push(t(format!("{p}feed_forward.{proj}.weight"), &shape));
            }
        }
    }
    edit(&mut tensors);
    let dir = scratch(name);
    let offsets = write_hf(&dir, JAMBA_CONFIG, &tensors);
    (dir, offsets)
}

#[test]
fn jamba_layers_experts_and_mamba_norms() {
    use forge_ir::{Mixer, SsmConfig};
    let (dir, offsets) = jamba_dir("jamba", false, |_| {});
    let model = load(&dir);
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Jamba);
    let mixers: Vec<Mixer> = c.layers.iter().map(|l| l.mixer).collect();
    assert_eq!(
        mixers,
        [
            Mixer::Mamba,
            Mixer::FullAttention,
            Mixer::Mamba,
            Mixer::FullAttention
        ]
    );
    use FeedForwardKind::{Dense, MixtureOfExperts};
    assert_eq!(
        kinds(&model),
        [MixtureOfExperts, Dense, Dense, MixtureOfExperts]
    );
    assert_eq!(
        c.moe,
        Some(MoeConfig {
            num_experts: 4,
            experts_per_token: 2,
            renormalize: false,
            expert_intermediate_size: EXPERT_FF,
            shared_intermediate_size: None,
            shared_gated: false,
        })
    );
    let a = c.attention.as_ref().unwrap();
    assert_eq!((a.num_heads, a.num_kv_heads, a.head_dim), (2, 1, 4));
    assert_eq!(a.rope.rotary_dim, 0, "Jamba's attention has no rope");
    let Some(SsmConfig::Mamba(m)) = &c.ssm else {
        panic!("no Mamba config: {:?}", c.ssm)
    };
    assert_eq!(
        (m.d_state, m.d_conv, m.d_inner, m.dt_rank),
        (4, 3, 2 * HIDDEN, 1)
    );
    assert!(m.conv_bias && !m.proj_bias && m.dt_bc_norms);
    assert_eq!(c.norm_eps, 1e-6);
    // The experts of layer 3, one stored tensor each.
    let e2 = offsets["model.layers.3.feed_forward.experts.2.up_proj.weight"];
    assert_eq!(
        slice_of(&model, "blk.3.ffn_up.2.weight", e2),
        (vec![EXPERT_FF, HIDDEN], 0)
    );
    for name in [
        "blk.0.ffn_gate_inp.weight",
        "blk.1.ffn_gate.weight",
        "blk.2.ssm_dt_norm.weight",
        "blk.2.ssm_b_norm.weight",
        "blk.2.ssm_c_norm.weight",
        "blk.3.attn_q.weight",
    ] {
        assert!(model.tensors.get(name).is_some(), "no {name}");
    }
    assert_eq!(
        model.tensors.get("blk.0.ssm_conv1d.weight").unwrap().shape,
        [2 * HIDDEN, 3]
    );
    // dt, B and C are normed between the x projection and the scan.
    let norms: Vec<(String, u64)> = model.graph.blocks[2]
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::RmsNorm { weight, group, .. } if weight.contains("ssm_") => {
                Some((weight.clone(), *group))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        norms,
        [
            ("blk.2.ssm_dt_norm.weight".to_string(), 1),
            ("blk.2.ssm_b_norm.weight".to_string(), 4),
            ("blk.2.ssm_c_norm.weight".to_string(), 4),
        ]
    );
    check_graph(&model);

    // transformers 5's expert stacks read as the same model.
    let (fused_dir, _) = jamba_dir("jamba-fused", true, |_| {});
    let fused = load(&fused_dir);
    assert_eq!(fused.config, model.config);
    assert_eq!(fused.graph, model.graph);
}

#[test]
fn jamba_config_errors_and_a_single_expert() {
    let parse = |config: &str| {
        let obj = forge_frontend::hf::json::JsonObject::parse(
            Path::new("config.json"),
            config.as_bytes(),
        )
        .unwrap();
        forge_frontend::hf::config::parse(&obj).map_err(|e| e.to_string())
    };
    let e = parse(&JAMBA_CONFIG.replace(r#""attn_layer_offset": 1"#, r#""attn_layer_offset": 2"#))
        .unwrap_err();
    assert!(
        e.contains("attn_layer_offset 2 is not below attn_layer_period 2"),
        "{e}"
    );
    // One expert is a dense MLP (transformers' JambaMLP) in every layer.
    let c = parse(&JAMBA_CONFIG.replace(r#""num_experts": 4"#, r#""num_experts": 1"#)).unwrap();
    assert!(c.moe.is_none());
    assert!(c
        .layers
        .iter()
        .all(|l| l.feed_forward == FeedForwardKind::Dense));
    // An integer rank is taken as it is.
    let c = parse(&JAMBA_CONFIG.replace(r#""auto""#, "3")).unwrap();
    assert!(matches!(c.ssm, Some(forge_ir::SsmConfig::Mamba(m)) if m.dt_rank == 3));

    // A dense MLP tensor in an expert layer is unexpected.
    let (dir, _) = jamba_dir("jamba-stray", false, |tensors| {
        tensors.push(t(
            "model.layers.0.feed_forward.gate_proj.weight",
            &[EXPERT_FF, HIDDEN],
        ))
    });
    let e = load_model(&dir).unwrap_err().to_string();
    assert!(
        e.contains("unexpected tensor model.layers.0.feed_forward.gate_proj.weight"),
        "{e}"
    );
}
