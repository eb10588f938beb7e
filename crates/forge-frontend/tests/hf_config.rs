//! config.json parsing in both transformers styles.

use std::path::Path;

use forge_frontend::hf::{config, json::JsonObject};
use forge_ir::{Mixer, RopeScaling, SsmConfig};

fn parse(text: &str) -> Result<forge_ir::ModelConfig, String> {
    let obj =
        JsonObject::parse(Path::new("config.json"), text.as_bytes()).map_err(|e| e.to_string())?;
    config::parse(&obj).map_err(|e| e.to_string())
}

const LLAMA_BASE: &str = r#""model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 100, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5"#;

#[test]
fn v4_and_v5_rope_styles_agree() {
    let v4 = parse(&format!(
        r#"{{ {LLAMA_BASE}, "rope_theta": 500000.0, "torch_dtype": "bfloat16",
        "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}} }}"#
    ))
    .unwrap();
    let v5 = parse(&format!(
        r#"{{ {LLAMA_BASE}, "dtype": "bfloat16",
        "rope_parameters": {{"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}} }}"#
    ))
    .unwrap();
    assert_eq!(v4, v5);
    let rope = &v4.attention.as_ref().unwrap().rope;
    assert_eq!(rope.theta, 500000.0);
    assert!(
        matches!(rope.scaling, RopeScaling::Llama3 { factor, original_context_length: 8192, .. } if factor == 8.0)
    );
}

#[test]
fn gemma3_per_layer_type_rope_and_layer_types() {
    let c = parse(
        r#"{"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
        "vocab_size": 100, "max_position_embeddings": 1024, "query_pre_attn_scalar": 16,
        "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}}"#,
    )
    .unwrap();
    let a = c.attention.as_ref().unwrap();
    assert_eq!(c.layers[0].mixer, Mixer::SlidingAttention);
    assert_eq!(c.layers[1].mixer, Mixer::FullAttention);
    assert_eq!(a.rope.theta, 1e6);
    assert_eq!(a.rope.scaling, RopeScaling::Linear { factor: 8.0 });
    assert_eq!(a.rope_local.as_ref().unwrap().theta, 1e4);
    assert!(a.qk_norm);
    assert_eq!(a.query_scale, 0.25);
    assert_eq!(c.embedding_scale, Some(8.0));
    assert!(
        c.tie_word_embeddings,
        "Gemma ties embeddings unless told otherwise"
    );
}

#[test]
fn mamba2_infinite_time_step_limit() {
    let c = parse(
        r#"{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
        "num_heads": 8, "head_dim": 16, "n_groups": 2, "state_size": 16, "chunk_size": 8, "expand": 2,
        "conv_kernel": 4, "time_step_limit": [0.0, {"__float__": "Infinity"}], "use_conv_bias": true}"#,
    )
    .unwrap();
    let Some(SsmConfig::Mamba2(m)) = &c.ssm else {
        panic!("not mamba2")
    };
    assert_eq!(m.dt_limit, (0.0, f64::INFINITY));
    assert_eq!(m.d_inner, 128);
    assert_eq!(c.layers[0].mixer, Mixer::Mamba2);
}

#[test]
fn errors_name_the_field() {
    let e = parse(r#"{"model_type": "llama", "hidden_size": "big"}"#).unwrap_err();
    assert!(e.starts_with("config.json: "), "{e}");
    assert!(e.contains("hidden_size"), "{e}");
    let e = parse(&format!(
        r#"{{ {LLAMA_BASE}, "rope_scaling": {{"type": "warp", "factor": 2}} }}"#
    ))
    .unwrap_err();
    assert!(e.contains("warp"), "{e}");
    let e = parse("[1, 2]").unwrap_err();
    assert!(e.contains("expected a JSON object"), "{e}");
}
