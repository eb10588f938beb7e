//! The `top_candidates` kernel family (templates/metal/top_candidates.metal.j2).

use super::KernelInstance;

/// The two dispatches that pick the `count` largest of `vocab` logits after
/// the repeat penalty, sorted by logit descending (ties: smaller id first),
/// each logit loaded once.
pub struct TopCandidates {
    /// One simdgroup per list of consecutive logits: its sorted top `count`
    /// into the partials. Buffers: 0 logits, 1 recent ids `uint[m]`, 2
    /// partials, 3 `{uint n_recent; float repeat_penalty;}` (setBytes).
    pub select: KernelInstance,
    /// A multiway merge of the lists: one thread per list. Buffers: 0
    /// partials, 2 out `{uint id; float logit;}[count]`.
    pub merge: KernelInstance,
    /// Bytes of the partials buffer: `lists × count` (id, logit) pairs.
    pub partial_bytes: u64,
}

/// Lists the merge may take: one thread each.
const MAX_LISTS: u64 = 1024;

pub fn top_candidates(vocab: u64, count: u64) -> TopCandidates {
    assert!(
        vocab > 0 && vocab < u32::MAX as u64 / 2,
        "top_candidates: vocab = {vocab}"
    );
    assert!(
        count > 0 && count <= vocab,
        "top_candidates: count = {count} must be in 1..={vocab}"
    );
    // Eight logits per lane keep the select rounds short; more only when the
    // lists would outnumber the merge's threads.
    let per_lane = vocab.div_ceil(32 * MAX_LISTS).max(8);
    // A lane marks the values it penalised in one 32-bit mask.
    assert!(
        per_lane <= 32,
        "top_candidates: vocab {vocab} over 32 x 32 x {MAX_LISTS}"
    );
    let per_list = 32 * per_lane;
    let lists = vocab.div_ceil(per_list);
    let merge_threads = lists.next_multiple_of(32) as u32;
    let params = |stage: &str| {
        serde_json::json!({
            "stage": stage,
            "vocab": vocab,
            "count": count,
            "per_lane": per_lane,
            "per_list": per_list,
            "lists": lists,
            "threads": if stage == "select" { 32 } else { merge_threads },
        })
    };
    TopCandidates {
        select: KernelInstance {
            family: "top_candidates",
            name: format!("top_candidates_{vocab}_top{count}_select"),
            params: params("select"),
            threads: [32, 1, 1],
            grid: [lists.to_string(), "1".into(), "1".into()],
        },
        merge: KernelInstance {
            family: "top_candidates",
            name: format!("top_candidates_{vocab}_top{count}_merge"),
            params: params("merge"),
            threads: [merge_threads, 1, 1],
            grid: ["1".into(), "1".into(), "1".into()],
        },
        partial_bytes: lists * count * 8,
    }
}
