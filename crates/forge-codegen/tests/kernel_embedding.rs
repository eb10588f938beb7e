//! The `embedding` family under msl-emu against the table decoded by
//! forge-weights, for every table dtype, with and without a scale.

mod kernel_support;

use forge_codegen::kernels::embedding::embedding;
use forge_ir::DType;
use kernel_support::*;
use msl_emu::Buffer;

fn check(dtype: DType, vocab: usize, hidden: usize, scale: Option<f32>) {
    let k = embedding(dtype, vocab as u64, hidden as u64, scale);
    let kernels = Kernels::build(std::slice::from_ref(&k));
    let mut rng = Rng::new(vocab as u64 + hidden as u64);
    let (bytes, table) = encode_weights(dtype, &rng.vec(vocab * hidden, 1.0), hidden);
    // First and last rows, a repeat, and random ids.
    let mut tokens = vec![0u32, vocab as u32 - 1, 7, 7];
    tokens.extend((0..13).map(|_| rng.below(vocab as u64) as u32));
    let n = tokens.len();
    let (tb, ib) = (buffer(&bytes), buffer(&tokens));
    let ob = Buffer::new(n * hidden * 4);
    let step = step_bytes(n as u32, 0);
    kernels.run(
        &k,
        n as u32,
        0,
        &[
            bind(0, &tb),
            bind(1, &ib),
            bind(2, &ob),
            step_binding(&step),
        ],
    );
    let got = read_f32(&ob);
    for (t, &id) in tokens.iter().enumerate() {
        let row = &table[id as usize * hidden..][..hidden];
        let out = &got[t * hidden..][..hidden];
        match scale {
            // Decoding is the same f32 operations as forge-weights: bitwise equal.
            None => assert_eq!(out, row, "{} token {t} (id {id})", k.name),
            Some(s) => {
                // The kernel scales the block scale first, (d·s)·q against
                // (d·q)·s: two roundings apart, 2.5e-7 relative.
                let want: Vec<f64> = row.iter().map(|&v| v as f64 * s as f64).collect();
                let tol: Vec<f64> = want.iter().map(|v| 2.5e-7 * v.abs()).collect();
                assert_close(&format!("{} token {t}", k.name), out, &want, &tol);
            }
        }
    }
}

#[test]
fn embedding_every_dtype() {
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
    ] {
        check(dtype, 384, 64, None);
        check(dtype, 384, 64, Some(8.0));
    }
}

/// SmolLM2-135M's width: 576 = 18 blocks, 144 float4s per row.
#[test]
fn embedding_smollm2_width() {
    check(DType::Q8_0, 1000, 576, None);
    check(DType::BF16, 1000, 576, Some(24.0));
}
