//! `forge inspect` on the real SmolLM2-135M-Instruct Q4_1 GGUF, which the test
//! command fetches into `.cache/` (scripts/fetch_smollm2.sh).
//!
//! The expected facts are the model's published configuration (HuggingFaceTB's
//! config.json: 30 layers, hidden 576, 9/3 heads, ffn 1536, vocab 49152, tied)
//! and the tensor census llama.cpp's quantizer produced for this file.

mod support;

use support::*;

fn smollm2() -> String {
    let path = cached_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    path.to_str().unwrap().to_string()
}

#[test]
fn text_summary_reports_the_model() {
    let (code, out, err) = forge(&["inspect", &smollm2()]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "architecture  llama",
        "layers        30, hidden 576, feed-forward 1536",
        "9 heads / 3 KV heads",
        "vocabulary    49152, tied embeddings: yes",
        "chat template yes",
        "F32 ×61",
        "Q4_1 ×210",
        "Q8_0 ×1",
        "0-29: attention",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn json_summary_reports_the_model() {
    let (code, out, err) = forge(&["inspect", "--json", &smollm2()]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["architecture"], "llama");
    assert_eq!(j["layers"], 30);
    assert_eq!(j["hidden_size"], 576);
    assert_eq!(j["feed_forward_length"], 1536);
    assert_eq!(j["heads"], 9);
    assert_eq!(j["kv_heads"], 3);
    assert_eq!(j["vocab_size"], 49152);
    assert_eq!(j["tie_word_embeddings"], true);
    assert_eq!(j["chat_template"], true);
    assert_eq!(j["tokenizer"]["vocab_size"], 49152);
    assert_eq!(j["tokenizer"]["kind"], "byte_pair_bpe");
    assert_eq!(j["tensors"]["Q4_1"]["count"], 210);
    assert_eq!(j["tensors"]["F32"]["count"], 61);
    assert_eq!(j["tensors"]["Q8_0"]["count"], 1);
    assert_eq!(j["tensor_count"], 272);
}
