//! The `top_candidates` family under msl-emu against a Rust reference: the
//! repeat penalty (HF / llama.cpp rule, once per distinct recent id), then
//! the `count` largest sorted by logit descending, ties to the smaller id.

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

fn run(
    kernels: &Kernels,
    logits: &[f32],
    recent: &[u32],
    penalty: f32,
    count: usize,
) -> Vec<(u32, f32)> {
    let k = top_candidates(logits.len() as u64, count as u64);
    // An empty recent list still binds a buffer (Metal needs one).
    let ids = if recent.is_empty() {
        vec![0u32]
    } else {
        recent.to_vec()
    };
    let (lb, rb) = (buffer(logits), buffer(&ids));
    let ob = Buffer::new(count * 8);
    let mut params = (recent.len() as u32).to_le_bytes().to_vec();
    params.extend_from_slice(&penalty.to_le_bytes());
    kernels.run(
        &k,
        1,
        0,
        &[
            bind(0, &lb),
            bind(1, &rb),
            bind(2, &ob),
            Binding::Bytes {
                index: 3,
                data: &params,
            },
        ],
    );
    let words = ob.read::<u32>();
    words
        .chunks(2)
        .map(|w| (w[0], f32::from_bits(w[1])))
        .collect()
}

#[test]
fn top_candidates_with_repeat_penalty() {
    // count = vocab sorts everything, so penalised negative logits show too.
    let shapes = [(384usize, 40usize), (384, 384), (49152, 64)];
    let instances: Vec<_> = shapes
        .iter()
        .map(|&(v, c)| top_candidates(v as u64, c as u64))
        .collect();
    let kernels = Kernels::build(&instances);
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
            let got = run(&kernels, data, recent, penalty, count);
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
