//! Q5_0 and Q5_1: 32 values of 5 bits. The low 4 bits are packed as in
//! Q4_0/Q4_1; bit 4 of value i is bit i of a little-endian u32 `qh`.
//! Q5_0 `{ d: f16, qh: [u8; 4], qs: [u8; 16] }`, value = d * (q - 16);
//! Q5_1 `{ d: f16, m: f16, qh: [u8; 4], qs: [u8; 16] }`, value = d * q + m.

use super::q4_0::signed_absmax;
use super::q4_1::min_max;
use super::{f16_at, put_f16};

const QK: usize = 32;
const Q5_0_BYTES: usize = 22;
const Q5_1_BYTES: usize = 24;

/// The 32 five-bit codes of a block whose `qh` starts at `at`.
fn codes(block: &[u8], at: usize) -> [u8; QK] {
    let qh = u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
    let qs = &block[at + 4..at + 4 + QK / 2];
    let mut q = [0u8; QK];
    for i in 0..QK / 2 {
        q[i] = (qs[i] & 0x0f) | ((((qh >> i) & 1) as u8) << 4);
        q[i + QK / 2] = (qs[i] >> 4) | ((((qh >> (i + QK / 2)) & 1) as u8) << 4);
    }
    q
}

/// Packs 32 five-bit codes into `qh` (4 bytes) followed by `qs` (16 bytes).
fn pack(q: &[u8; QK], dst: &mut [u8]) {
    let mut qh = 0u32;
    for (i, &c) in q.iter().enumerate() {
        qh |= u32::from(c >> 4) << i;
    }
    dst[..4].copy_from_slice(&qh.to_le_bytes());
    for i in 0..QK / 2 {
        dst[4 + i] = (q[i] & 0x0f) | ((q[i + QK / 2] & 0x0f) << 4);
    }
}

pub(super) fn dequantize_q5_0(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes.chunks_exact(Q5_0_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(block, 0);
        for (y, q) in y.iter_mut().zip(codes(block, 2)) {
            *y = d * f32::from(q as i8 - 16);
        }
    }
}

pub(super) fn dequantize_q5_1(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes.chunks_exact(Q5_1_BYTES).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(block, 0);
        let m = f16_at(block, 2);
        for (y, q) in y.iter_mut().zip(codes(block, 4)) {
            *y = d * f32::from(q) + m;
        }
    }
}

/// ggml's reference: d = max / -16 with the signed extreme, q = trunc(x / d + 16.5).
pub(super) fn quantize_q5_0(data: &[f32], out: &mut [u8]) {
    for (x, block) in data.chunks_exact(QK).zip(out.chunks_exact_mut(Q5_0_BYTES)) {
        let d = signed_absmax(x) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        let mut q = [0u8; QK];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v * id + 16.5) as u8).min(31);
        }
        pack(&q, &mut block[2..]);
    }
}

/// ggml's reference: d = (max - min) / 31, q = trunc((x - min) / d + 0.5).
pub(super) fn quantize_q5_1(data: &[f32], out: &mut [u8]) {
    for (x, block) in data.chunks_exact(QK).zip(out.chunks_exact_mut(Q5_1_BYTES)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        put_f16(block, 2, min);
        let mut q = [0u8; QK];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = (((v - min) * id + 0.5) as u8).min(31);
        }
        pack(&q, &mut block[4..]);
    }
}
