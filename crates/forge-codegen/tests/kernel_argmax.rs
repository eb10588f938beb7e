//! The `argmax` family under msl-emu against `Iterator::max_by` with
//! torch's tie rule (the smallest index among equal maxima).

mod kernel_support;

use forge_codegen::kernels::argmax::argmax;
use kernel_support::*;
use msl_emu::Buffer;

fn reference(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn run(kernels: &Kernels, logits: &[f32]) -> u32 {
    let k = argmax(logits.len() as u64);
    let (lb, ob) = (buffer(logits), Buffer::new(4));
    kernels.run(&k, 1, 0, &[bind(0, &lb), bind(1, &ob)]);
    ob.read::<u32>()[0]
}

#[test]
fn argmax_picks_the_first_maximum() {
    let vocabs = [384usize, 1001, 49152];
    let instances: Vec<_> = vocabs.iter().map(|&v| argmax(v as u64)).collect();
    let kernels = Kernels::build(&instances);
    let mut rng = Rng::new(11);
    for &vocab in &vocabs {
        let logits = rng.vec(vocab, 10.0);
        assert_eq!(
            run(&kernels, &logits),
            reference(&logits),
            "random, vocab {vocab}"
        );
        // A tie between two maxima far apart (different threads).
        let mut tied = logits.clone();
        tied[vocab - 3] = 50.0;
        tied[vocab / 3] = 50.0;
        assert_eq!(
            run(&kernels, &tied),
            (vocab / 3) as u32,
            "tie, vocab {vocab}"
        );
        // Ties inside one float4 and across simdgroups; the last element.
        let mut last = logits.clone();
        last[vocab - 1] = 60.0;
        assert_eq!(
            run(&kernels, &last),
            vocab as u32 - 1,
            "last, vocab {vocab}"
        );
        let flat = vec![-1.5f32; vocab];
        assert_eq!(run(&kernels, &flat), 0, "all equal, vocab {vocab}");
        let mut neg_inf = vec![f32::NEG_INFINITY; vocab];
        neg_inf[vocab / 2] = -1e30;
        assert_eq!(
            run(&kernels, &neg_inf),
            (vocab / 2) as u32,
            "-inf, vocab {vocab}"
        );
    }
}

#[test]
fn argmax_refuses_an_empty_vocab() {
    assert_param_refused(&argmax(384), "vocab", 0.into());
    assert_renders(&argmax(1));
}

#[test]
fn argmax_refuses_threads_other_than_the_dispatch() {
    // 384 logits are 96 float4s: 96 threads.
    let k = argmax(384);
    assert_param_refused(&k, "threads", 128.into());
    assert_renders(&k);
}
