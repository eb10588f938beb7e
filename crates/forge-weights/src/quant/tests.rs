//! API-level checks: length validation, hand-built blocks, row parallelism.
//! Bit-exactness against gguf-py lives in `tests/quant_gguf_py.rs`.

use super::*;

const DEQUANT: [DType; 13] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// A deterministic, roughly normal test signal with a few outliers.
fn signal(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            let mut acc = 0.0f32;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                acc += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            if i % 97 == 13 {
                acc * 8.0
            } else {
                acc
            }
        })
        .collect()
}

#[test]
fn every_length_is_checked_without_panicking() {
    for dtype in DEQUANT {
        let block = dtype.block_elements() as usize;
        let bytes = dtype.block_bytes() as usize;
        for elements in [0, 1, block - 1 + usize::from(block == 1), block, 3 * block] {
            for nbytes in [0, 1, bytes, 3 * bytes, 3 * bytes + 1] {
                let src = vec![0u8; nbytes];
                let mut out = vec![0.0f32; elements];
                let ok = elements % block == 0 && nbytes == elements / block * bytes;
                assert_eq!(
                    dequantize(dtype, &src, &mut out).is_ok(),
                    ok,
                    "{dtype} {elements} {nbytes}"
                );
                let ok_rows = ok && (elements == 0 || block <= elements);
                let rows = dequantize_rows(dtype, &src, block, &mut out);
                assert_eq!(rows.is_ok(), ok_rows, "{dtype} rows {elements} {nbytes}");
                if can_quantize(dtype) {
                    let data = vec![0.5f32; elements];
                    let mut dst = vec![0u8; nbytes];
                    assert_eq!(
                        quantize(dtype, &data, &mut dst).is_ok(),
                        ok,
                        "{dtype} q {elements} {nbytes}"
                    );
                }
            }
        }
    }
}

#[test]
fn errors_are_one_line_and_name_the_problem() {
    let mut out = [0.0f32; 31];
    let e = dequantize(DType::Q8_0, &[0; 34], &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Q8_0: 31 elements is not a multiple of the block size 32"
    );
    let mut out = [0.0f32; 32];
    let e = dequantize(DType::Q8_0, &[0; 33], &mut out).unwrap_err();
    assert_eq!(e.to_string(), "Q8_0: 32 elements take 34 bytes, got 33");
    let e = dequantize(DType::IQ2_XXS, &[], &mut []).unwrap_err();
    assert_eq!(e.to_string(), "dequantising IQ2_XXS is not supported");
    let e = quantize(DType::Q3_K, &[], &mut []).unwrap_err();
    assert_eq!(e.to_string(), "quantising to Q3_K is not supported");
    let mut out = [0.0f32; 96];
    let e = dequantize_rows(DType::Q8_0, &[0; 102], 64, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Q8_0: row length 64 does not divide the 96 elements into whole rows"
    );
    let e = dequantize_rows(DType::Q8_0, &[0; 102], 0, &mut out).unwrap_err();
    assert!(matches!(e, QuantError::RowLength { row_len: 0, .. }));
    let e = dequantize_rows(DType::Q8_0, &[0; 102], 48, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Q8_0: row length 48 is not a multiple of the block size 32"
    );
    // SmolLM2's 576-wide rows cannot be K-quantised: a clear error, not a panic.
    let mut out = vec![0.0f32; 576 * 4];
    let e = dequantize_rows(DType::Q4_K, &vec![0; 144 * 9], 576, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Q4_K: row length 576 is not a multiple of the block size 256"
    );
}

#[test]
fn hand_built_q4_0_and_q4_1_blocks() {
    // d = 0.5 (f16 0x3800); qs[0] = 0x1f: value 0 is code 15, value 16 is code 1.
    let mut block = [0u8; 18];
    block[..2].copy_from_slice(&0x3800u16.to_le_bytes());
    block[2] = 0x1f;
    let mut out = [0.0f32; 32];
    dequantize(DType::Q4_0, &block, &mut out).unwrap();
    assert_eq!(out[0], 3.5);
    assert_eq!(out[16], -3.5);
    assert_eq!(out[1], -4.0, "code 0 is -8 * d");
    // Q4_1 with d = 0.5, m = -1 (f16 0xbc00): value = 0.5 q - 1.
    let mut block = [0u8; 20];
    block[..2].copy_from_slice(&0x3800u16.to_le_bytes());
    block[2..4].copy_from_slice(&0xbc00u16.to_le_bytes());
    block[4] = 0x1f;
    dequantize(DType::Q4_1, &block, &mut out).unwrap();
    assert_eq!((out[0], out[16], out[1]), (6.5, -0.5, -1.0));
}

#[test]
fn hand_built_q6_k_block() {
    // d = 1, every scale 2, all codes 32 (value 0) except value 200 (n=1,
    // s=2, l=8): code 63 -> low nibble 15 in the high half of ql[64+8],
    // top bits 3 at bits 4..6 of qh[32+8]; value = 2 * (63 - 32) = 62.
    let mut block = [0u8; 210];
    for b in &mut block[128..192] {
        *b = 0b1010_1010; // top bits 2 for every code: 2 << 4 = 32
    }
    block[64 + 8] = 0xf0;
    block[128 + 32 + 8] = 0b1011_1010;
    block[192..208].fill(2);
    block[208..210].copy_from_slice(&0x3c00u16.to_le_bytes());
    let mut out = [0.0f32; 256];
    dequantize(DType::Q6_K, &block, &mut out).unwrap();
    for (i, &v) in out.iter().enumerate() {
        assert_eq!(v, if i == 200 { 62.0 } else { 0.0 }, "value {i}");
    }
}

/// Relative RMS error of a quantise -> dequantise round trip.
fn round_trip_error(dtype: DType, x: &[f32]) -> f32 {
    let mut bytes = vec![0u8; dtype.bytes_for(x.len() as u64).unwrap() as usize];
    quantize(dtype, x, &mut bytes).unwrap();
    let mut y = vec![0.0f32; x.len()];
    dequantize(dtype, &bytes, &mut y).unwrap();
    let err: f64 = x
        .iter()
        .zip(&y)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    let norm: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
    (err / norm).sqrt() as f32
}

#[test]
fn round_trips_stay_within_format_precision() {
    let x = signal(256 * 64, 7);
    // Bounds: a few times the uniform-rounding error of each format's step
    // on this signal (range / levels / sqrt(12), relative to its rms).
    for (dtype, bound) in [
        (DType::F32, 0.0),
        (DType::F16, 1e-3),
        (DType::BF16, 4e-3),
        (DType::Q8_0, 0.01),
        (DType::Q6_K, 0.04),
        (DType::Q5_0, 0.08),
        (DType::Q5_1, 0.08),
        (DType::Q5_K, 0.08),
        (DType::Q4_K, 0.15),
        (DType::Q4_0, 0.2),
        (DType::Q4_1, 0.2),
    ] {
        let e = round_trip_error(dtype, &x);
        eprintln!("{dtype}: relative rms error {e}");
        assert!(e <= bound, "{dtype}: relative rms error {e} > {bound}");
    }
}

#[test]
fn zero_blocks_stay_zero_and_constant_blocks_stay_close() {
    for dtype in [
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ] {
        let zeros = vec![0.0f32; 512];
        let mut bytes = vec![0xffu8; dtype.bytes_for(512).unwrap() as usize];
        quantize(dtype, &zeros, &mut bytes).unwrap();
        let mut y = vec![1.0f32; 512];
        dequantize(dtype, &bytes, &mut y).unwrap();
        assert_eq!(y, zeros, "{dtype} zeros");
        // A constant is representable up to the f16 rounding of the scale.
        // (Not tiny ones: Q4_K's d = scale / 63 then falls into f16
        // subnormals, a limit of the format itself.)
        for value in [1.0f32, -2.0, 0.03] {
            let e = round_trip_error(dtype, &vec![value; 512]);
            assert!(e < 2e-3, "{dtype} constant {value}: relative error {e}");
        }
    }
}

#[test]
fn rows_in_parallel_equal_one_call() {
    let row_len = 512;
    let x = signal(row_len * 300, 3);
    for dtype in [
        DType::Q8_0,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
        DType::BF16,
    ] {
        let n = dtype.bytes_for(x.len() as u64).unwrap() as usize;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        quantize(dtype, &x, &mut a).unwrap();
        quantize_rows(dtype, &x, row_len, &mut b).unwrap();
        assert_eq!(a, b, "{dtype} quantize_rows");
        let (mut ya, mut yb) = (vec![0.0f32; x.len()], vec![1.0f32; x.len()]);
        dequantize(dtype, &a, &mut ya).unwrap();
        dequantize_rows(dtype, &a, row_len, &mut yb).unwrap();
        assert_eq!(ya, yb, "{dtype} dequantize_rows");
    }
}
