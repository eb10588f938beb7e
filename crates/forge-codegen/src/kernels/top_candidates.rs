//! The `top_candidates` kernel family (templates/metal/top_candidates.metal.j2).

use super::KernelInstance;

/// The `count` largest of `vocab` logits after the repeat penalty, sorted by
/// logit descending (ties: smaller id first), in one threadgroup. Buffers:
/// 0 logits, 1 recent ids `uint[m]`, 2 out `{uint id; float logit;}[count]`,
/// 3 `{uint n_recent; float repeat_penalty;}` (setBytes).
pub fn top_candidates(vocab: u64, count: u64) -> KernelInstance {
    assert!(
        vocab > 0 && vocab < i32::MAX as u64,
        "top_candidates: vocab = {vocab}"
    );
    assert!(
        count > 0 && count <= vocab,
        "top_candidates: count = {count} must be in 1..={vocab}"
    );
    let threads = vocab.next_multiple_of(32).min(1024) as u32;
    KernelInstance {
        family: "top_candidates",
        name: format!("top_candidates_{vocab}_top{count}"),
        params: serde_json::json!({ "vocab": vocab, "count": count, "threads": threads }),
        threads: [threads, 1, 1],
        grid: ["1".into(), "1".into(), "1".into()],
    }
}
