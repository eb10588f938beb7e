//! The `top_candidates` family (select per vocabulary slice, then merge)
//! under msl-emu against a Rust reference: the repeat penalty (HF /
//! llama.cpp rule, once per distinct recent id), then the `count` largest
//! sorted by logit descending, ties to the smaller id; and each logit is
//! loaded once.

mod kernel_support;

use forge_codegen::kernels::top_candidates::top_candidates;
use kernel_support::*;
use msl_emu::{Binding, Buffer};

fn reference(logits: &[f32], recent: &[u32], penalty: f32, count: usize) -> Vec<(u32, f32)> {
    let mut values = logits.to_vec();
    let mut distinct = recent.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    for id in distinct {
        let v = &mut values[id as usize];
        *v = if *v > 0.0 { *v / penalty } else { *v * penalty };
    }
    let mut order: Vec<(u32, f32)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, v))
        .collect();
    // IEEE order (no NaNs here): -0.0 and 0.0 tie and go by id, as in torch.
    order.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    order.truncate(count);
    order
}

/// The candidates, and the bytes both dispatches loaded.
fn run(
    kernels: &Kernels,
    logits: &[f32],
    recent: &[u32],
    penalty: f32,
    count: usize,
) -> (Vec<(u32, f32)>, u64) {
    let k = top_candidates(logits.len() as u64, count as u64);
    // An empty recent list still binds a buffer (Metal needs one).
    let ids = if recent.is_empty() {
        vec![0u32]
    } else {
        recent.to_vec()
    };
    let (lb, rb) = (buffer(logits), buffer(&ids));
    let partials = Buffer::new(k.partial_bytes as usize);
    let ob = Buffer::new(count * 8);
    let mut params = (recent.len() as u32).to_le_bytes().to_vec();
    params.extend_from_slice(&penalty.to_le_bytes());
    let select = kernels.run(
        &k.select,
        1,
        0,
        &[
            bind(0, &lb),
            bind(1, &rb),
            bind(2, &partials),
            Binding::Bytes {
                index: 3,
                data: &params,
            },
        ],
    );
    let merge = kernels.run(&k.merge, 1, 0, &[bind(0, &partials), bind(2, &ob)]);
    // Index 3 is setBytes data, not device memory.
    let loaded = [select, merge]
        .iter()
        .flat_map(|s| s.buffers.iter())
        .filter(|b| b.index != 3)
        .map(|b| b.bytes_read)
        .sum();
    let words = ob.read::<u32>();
    let candidates = words
        .chunks(2)
        .map(|w| (w[0], f32::from_bits(w[1])))
        .collect();
    (candidates, loaded)
}

fn instances(shapes: &[(usize, usize)]) -> Vec<forge_codegen::KernelInstance> {
    shapes
        .iter()
        .flat_map(|&(v, c)| {
            let k = top_candidates(v as u64, c as u64);
            [k.select, k.merge]
        })
        .collect()
}

#[test]
fn top_candidates_with_repeat_penalty() {
    // count = vocab sorts everything, so penalised negative logits show too.
    // A partial last list (1000 = 3 x 256 + 232) and several lists with few values.
    let shapes = [(384usize, 40usize), (384, 384), (1000, 64), (49152, 64)];
    let kernels = Kernels::build(&instances(&shapes));
    let mut rng = Rng::new(5);
    for &(vocab, count) in &shapes {
        let mut logits = rng.vec(vocab, 8.0);
        // Ties: equal logits at ids far apart, and values quantised to a
        // coarse grid so many tie.
        logits[vocab - 2] = 7.5;
        logits[3] = 7.5;
        let coarse: Vec<f32> = logits.iter().map(|v| (v * 2.0).round() / 2.0).collect();
        let top_ids: Vec<u32> = reference(&logits, &[], 1.0, 8)
            .iter()
            .map(|c| c.0)
            .collect();
        // Recent ids: repeats, top ids (positive logits, divided) and a
        // negative one (multiplied); 4101 shares 5's hash bucket.
        let mut recent = vec![top_ids[0], top_ids[1], top_ids[0], 5, 5, top_ids[4]];
        if vocab > 8197 {
            recent.push(4101);
        }
        for (data, recent, penalty) in [
            (&logits, &recent[..], 1.3f32),
            (&logits, &[][..], 1.0),
            (&coarse, &recent[..], 1.1),
            (&logits, &recent[..], 0.8),
        ] {
            let (got, _) = run(&kernels, data, recent, penalty, count);
            let want = reference(data, recent, penalty, count);
            // Same f32 operations on both sides: ids and logits match exactly.
            assert_eq!(
                got,
                want,
                "vocab {vocab}, {} recent, penalty {penalty}",
                recent.len()
            );
        }
    }
}

#[test]
fn nan_logits_are_never_picked_and_every_logit_is_loaded_once() {
    let shapes = [(2048usize, 64usize), (49152, 64)];
    let kernels = Kernels::build_counting(&instances(&shapes));
    let mut rng = Rng::new(9);
    for &(vocab, count) in &shapes {
        let mut logits = rng.vec(vocab, 4.0);
        for i in (0..vocab).step_by(7) {
            logits[i] = f32::NAN;
        }
        let (got, loaded) = run(&kernels, &logits, &[1, 2, 3], 1.2, count);
        let finite: Vec<f32> = logits
            .iter()
            .map(|v| if v.is_nan() { f32::MIN } else { *v })
            .collect();
        let want = reference(&finite, &[1, 2, 3], 1.2, count);
        assert_eq!(got, want, "vocab {vocab}");
        // The logits once, the recent ids once per list and the merge's reads
        // of list heads: within 1.1x the logits (issue 9's bound is 4x).
        let logit_bytes = 4 * vocab as u64;
        assert!(
            loaded <= logit_bytes + logit_bytes / 10,
            "vocab {vocab}: {loaded} bytes loaded for {logit_bytes} bytes of logits"
        );
    }
}

#[test]
fn top_candidates_refuses_a_count_outside_the_vocab() {
    let t = top_candidates(1000, 40);
    for k in [&t.select, &t.merge] {
        assert_refused(
            &with_param(k, "count", 0.into()),
            "top_candidates: count = 0",
        );
        assert_refused(
            &with_param(k, "count", 1001.into()),
            "top_candidates: count = 1001",
        );
        assert_renders(&with_param(k, "count", 1000.into()));
    }
}

#[test]
fn top_candidates_refuses_per_lane_beyond_its_penalty_mask() {
    let k = top_candidates(1000, 40).select;
    let wide = with_param(
        &with_param(&k, "per_lane", 33.into()),
        "per_list",
        (33 * 32).into(),
    );
    assert_refused(&wide, "top_candidates: per_lane = 33");
    let empty = with_param(&with_param(&k, "per_lane", 0.into()), "per_list", 0.into());
    assert_refused(&empty, "top_candidates: per_lane = 0");
    let full = with_param(
        &with_param(&k, "per_lane", 32.into()),
        "per_list",
        (32 * 32).into(),
    );
    assert_renders(&full);
}

#[test]
fn top_candidates_refuses_lists_that_are_not_32_lanes_of_per_lane() {
    let k = top_candidates(1000, 40).select;
    assert_param_refused(&k, "per_list", 300.into());
}

#[test]
fn top_candidates_refuses_a_select_dispatch_other_than_one_simdgroup() {
    let mut k = top_candidates(1000, 40).select;
    k.threads = [64, 1, 1];
    assert_refused(&k, "top_candidates: threads = 64 of the select stage");
}

#[test]
fn top_candidates_merge_refuses_a_list_count_unlike_the_vocab() {
    // 1000 logits in lists of 256: 4 lists.
    let k = top_candidates(1000, 40).merge;
    assert_param_refused(&k, "lists", 3.into());
    assert_param_refused(&k, "lists", 5.into());
    assert_renders(&k);
}

#[test]
fn top_candidates_merge_refuses_threads_other_than_the_dispatch() {
    let k = top_candidates(1000, 40).merge;
    assert_param_refused(&k, "threads", 64.into());
    // Fewer threads than lists (with the dispatch matching): a list would have no thread.
    let mut few = with_param(&top_candidates(40_000, 4).merge, "threads", 2.into());
    few.threads = [2, 1, 1];
    assert_refused(&few, "top_candidates: threads = 2");
}
