//! The `embedding` family under msl-emu against the table decoded by
//! forge-weights, for every table dtype, with and without a scale.

mod kernel_support;

use forge_codegen::kernels::embedding::embedding;
use forge_codegen::kernels::weight_format::PlaneSlots;
use forge_ir::DType;
use kernel_support::*;
use msl_emu::Buffer;

fn check(dtype: DType, vocab: usize, hidden: usize, scale: Option<f32>) {
    let mut rng = Rng::new(vocab as u64 + hidden as u64);
    let encoded = encode_weights(dtype, &rng.vec(vocab * hidden, 1.0), hidden);
    check_table(&encoded, dtype, vocab, hidden, scale, &mut rng);
}

/// Looks up random ids of `encoded` (`vocab` rows of `hidden` values) and
/// checks the rows against its decoded values.
fn check_table(
    encoded: &Encoded,
    dtype: DType,
    vocab: usize,
    hidden: usize,
    scale: Option<f32>,
    rng: &mut Rng,
) {
    let k = embedding(dtype, vocab as u64, hidden as u64, scale);
    let kernels = Kernels::build(std::slice::from_ref(&k));
    let table = &encoded.values;
    // First and last rows, a repeat, and random ids.
    let mut tokens = vec![0u32, vocab as u32 - 1, 7, 7];
    tokens.extend((0..13).map(|_| rng.below(vocab as u64) as u32));
    let n = tokens.len();
    let (tb, ib) = (buffer(&encoded.bytes), buffer(&tokens));
    let planes = plane_buffers(dtype, &encoded.planes, PlaneSlots::Embedding);
    let ob = Buffer::new(n * hidden * 4);
    let step = step_bytes(n as u32, 0);
    let mut bindings = vec![
        bind(0, &tb),
        bind(1, &ib),
        bind(2, &ob),
        step_binding(&step),
    ];
    bindings.extend(plane_binds(&planes));
    kernels.run(&k, n as u32, 0, &bindings);
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
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
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

/// The new block formats at odd vocabularies and widths of 1, 3 and 25
/// blocks (a row shorter than a threadgroup's lanes, and one that leaves
/// its last pass of lanes partial), with and without a scale.
#[test]
fn embedding_block_formats_at_odd_shapes() {
    for dtype in [DType::Q4_1, DType::Q5_0, DType::Q5_1] {
        check(dtype, 37, 32, None);
        check(dtype, 101, 96, Some(8.0));
        check(dtype, 13, 800, Some(3.0));
        check(dtype, 1000, 576, None);
    }
}

/// Widths that are not multiples of 32 (or of 4): float tables only, one
/// value per lane when the width is odd.
#[test]
fn embedding_any_width_float_tables() {
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        check(dtype, 97, 80, None);
        check(dtype, 50, 13, Some(3.0));
        check(dtype, 31, 1, None);
    }
}

#[test]
fn embedding_refuses_an_unknown_dtype() {
    let k = embedding(DType::F32, 10, 64, None);
    assert_param_refused(&k, "dtype", "iq4_nl".into());
}

#[test]
fn embedding_refuses_a_chunk_its_loads_are_not_written_for() {
    let k = embedding(DType::F32, 10, 64, None);
    assert_param_refused(&k, "chunk", 1.into());
    let odd = embedding(DType::F16, 10, 66, None);
    assert_param_refused(&odd, "chunk", 4.into());
    let q4 = embedding(DType::Q4_0, 10, 64, None);
    assert_param_refused(&q4, "chunk", 4.into());
    assert_renders(&odd);
    assert_renders(&q4);
}

#[test]
fn embedding_refuses_an_empty_vocab() {
    let k = embedding(DType::F32, 10, 64, None);
    assert_param_refused(&k, "vocab", 0.into());
    assert_renders(&embedding(DType::F32, 1, 64, None));
}

#[test]
fn embedding_refuses_threads_other_than_the_dispatch() {
    let k = embedding(DType::F32, 10, 64, None);
    assert_param_refused(&k, "threads", 64.into());
    assert_renders(&k);
}

/// K-quant tables: rows of 1, 2 and 3 whole 256-value super-blocks at odd
/// vocabularies, with and without a scale.
#[test]
fn embedding_k_quants() {
    for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
        check(dtype, 37, 256, None);
        check(dtype, 101, 512, Some(8.0));
        check(dtype, 13, 768, Some(3.0));
    }
}

/// K-quant tables of random super-block bytes (every bit pattern of codes,
/// high bits and packed scales, not only what an encoder writes; the f16
/// scales finite) decode exactly as forge-weights decodes them.
#[test]
fn embedding_k_quants_decode_every_bit_pattern() {
    let (vocab, hidden) = (20, 512);
    let mut rng = Rng::new(13);
    for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
        let size = dtype.block_bytes() as usize;
        let mut blocks: Vec<u8> = (0..vocab * hidden / 256 * size)
            .map(|_| rng.next_u64() as u8)
            .collect();
        // Exponents below 16 (subnormals included): no inf or NaN scale.
        let f16_at: &[usize] = if dtype == DType::Q6_K {
            &[208]
        } else {
            &[0, 2]
        };
        for block in blocks.chunks_exact_mut(size) {
            for &at in f16_at {
                block[at + 1] &= 0b1011_1111;
            }
        }
        let encoded = encode_blocks(dtype, blocks, hidden);
        check_table(&encoded, dtype, vocab, hidden, None, &mut rng);
        check_table(&encoded, dtype, vocab, hidden, Some(3.0), &mut rng);
    }
}
