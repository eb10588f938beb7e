//! The mixture-of-experts families around the expert projections (which are
//! `matvec` and `matmul` with experts): `moe_router`
//! (templates/metal/moe_router.metal.j2) and `moe_combine`
//! (templates/metal/moe_combine.metal.j2).

use super::KernelInstance;

/// Threads of a router threadgroup: 4 simdgroups share the expert rows.
const ROUTER_THREADS: u32 = 128;

/// Threads of a combine threadgroup (one per float4 of a row).
const COMBINE_THREADS: u32 = 128;

/// What the router writes besides the routed experts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedSlot {
    /// No shared expert.
    None,
    /// A shared expert with weight 1.
    Ungated,
    /// A shared expert scaled by sigmoid of router row `experts`.
    Gated,
}

/// Routing of each of the pass's tokens: logits of `experts` rows of the
/// f32 router `[experts (+1 with a gated shared expert), cols]`, softmax,
/// top `top_k` (ties to the lower id), optionally renormalised; each token's
/// row of [`routing_width`] floats gets the ids, then the weights, then the
/// shared expert's (0, weight). Buffers: 0 router, 1 x `[n, cols]`, 2
/// routing `[n, width]`, 7 step. Grid (n).
pub fn moe_router(
    experts: u64,
    cols: u64,
    top_k: u64,
    renormalize: bool,
    shared: SharedSlot,
) -> KernelInstance {
    assert!(
        top_k >= 1 && top_k <= experts,
        "moe_router: top-{top_k} of {experts}"
    );
    let mut name = format!("moe_router_{experts}x{cols}_top{top_k}");
    if renormalize {
        name += "_renorm";
    }
    match shared {
        SharedSlot::None => {}
        SharedSlot::Ungated => name += "_shared",
        SharedSlot::Gated => name += "_shared_gated",
    }
    KernelInstance {
        family: "moe_router",
        name,
        params: serde_json::json!({
            "experts": experts,
            "cols": cols,
            "top_k": top_k,
            "renormalize": renormalize,
            "shared": shared != SharedSlot::None,
            "shared_gated": shared == SharedSlot::Gated,
            "width": routing_width(top_k, shared != SharedSlot::None),
            "threads": ROUTER_THREADS,
        }),
        threads: [ROUTER_THREADS, 1, 1],
        grid: ["n".into(), "1".into(), "1".into()],
    }
}

/// Floats per token of a routing row: k ids, k weights, and the shared
/// expert's (id, weight) pair when there is one.
pub fn routing_width(top_k: u64, shared: bool) -> u64 {
    2 * top_k + if shared { 2 } else { 0 }
}

/// x[t] += Σ_s y[t·slots + s] for rows of `width`: the prefill sum of a
/// mixture's weighted expert outputs into the residual stream. Buffers: 0 y
/// `[n·slots, width]`, 2 x `[n, width]`, 7 step. Grid (⌈chunks/128⌉, n).
pub fn moe_combine(width: u64, slots: u64) -> KernelInstance {
    assert!(slots >= 1, "moe_combine: no slots");
    let chunks = if width.is_multiple_of(4) {
        width / 4
    } else {
        width
    };
    KernelInstance {
        family: "moe_combine",
        name: format!("moe_combine_{width}x{slots}"),
        params: serde_json::json!({
            "width": width,
            "slots": slots,
            "threads": COMBINE_THREADS,
        }),
        threads: [COMBINE_THREADS, 1, 1],
        grid: [
            chunks.div_ceil(u64::from(COMBINE_THREADS)).to_string(),
            "n".into(),
            "1".into(),
        ],
    }
}
