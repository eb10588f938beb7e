//! The `argmax` kernel family (templates/metal/argmax.metal.j2).

use super::KernelInstance;

/// Greedy sampling: the index of the largest of `vocab` logits, ties to the
/// smallest index, in one threadgroup. Buffers: 0 logits, 1 out `uint[1]`.
pub fn argmax(vocab: u64) -> KernelInstance {
    assert!(
        vocab > 0 && vocab < u32::MAX as u64,
        "argmax: vocab = {vocab}"
    );
    let lanes = if vocab.is_multiple_of(4) {
        vocab / 4
    } else {
        vocab
    };
    let threads = lanes.next_multiple_of(32).min(1024) as u32;
    KernelInstance {
        family: "argmax",
        name: format!("argmax_{vocab}"),
        params: serde_json::json!({ "vocab": vocab, "threads": threads }),
        threads: [threads, 1, 1],
        grid: ["1".into(), "1".into(), "1".into()],
    }
}
