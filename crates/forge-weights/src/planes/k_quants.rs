//! K-quant matrices (Q4_K, Q5_K, Q6_K) as the GPU kernels read them: each
//! 256-value super-block of the GGML format split into planes, so a
//! simdgroup's 32 lanes each take one 8-value chunk of a super-block and
//! their loads of every plane are consecutive bytes. Each plane holds the
//! super-blocks one after another (a row is `cols / 256` of them, rows in
//! order), and together the planes hold exactly the GGML bytes, rearranged:
//! 144, 176 and 210 per super-block.
//!
//! Planes, in layout order; value `v` of a super-block is in chunk `g = v / 8`:
//! - `quants`, 128 bytes, all three formats: the low 4 bits of each value,
//!   chunk g in bytes `4g .. 4g + 4`, byte `4g + j` holding value `8g + j` in
//!   its low nibble and `8g + j + 4` in its high one (as the Q4_0 plane), so
//!   `uchar4 & 15` and `uchar4 >> 4` are four consecutive values each;
//! - Q4_K and Q5_K `scales`, 16 bytes: the GGML block's first 16, f16 d, f16
//!   dmin and the 12 bytes of packed 6-bit scales and mins of the eight
//!   32-value sub-blocks (chunk g's is `g / 4`); value = d·sc·q − dmin·m;
//! - Q6_K `scales`, 16 bytes: the int8 scales of the sixteen 16-value
//!   sub-blocks (chunk g's is `g / 2`), then `d`, 2 bytes: the f16
//!   super-block scale; value = d·scale·(q − 32);
//! - last, Q5_K `high`, 32 bytes: byte g bit j = bit 4 of value `8g + j` (as
//!   the Q5_0 plane); Q6_K `high`, 64 bytes: the little-endian u16 at `2g`
//!   holds bits 4-5 of value `8g + j` at bits `2j .. 2j + 2`.
//!
//! The formats' split and join are lossless (bit for bit), and
//! [`dequantize`] decodes the planes with the same f32 operations as the
//! GGML formats' decoders, so its values equal `crate::dequantize` of the
//! blocks exactly.

use forge_ir::DType;

use super::blocks::{plane, Format};
use super::PlaneLayout;
use crate::quant::k_quants::unpack_scale_min;
use crate::QuantError;

/// Values per super-block.
pub const SUPER_BLOCK: usize = 256;

/// Values per lane chunk: 32 chunks make a super-block.
const CHUNK: usize = 8;

/// The low 4 bits of every value.
const QUANTS: PlaneLayout = plane("quants", DType::I8, 128);

/// Q4_K's and Q5_K's d, dmin and packed 6-bit scales and mins.
const SCALE_MINS: PlaneLayout = plane("scales", DType::I8, 16);

pub(super) static Q4_K: Format = Format {
    planes: &[QUANTS, SCALE_MINS],
    split: |block, planes| split_block(DType::Q4_K, block, planes),
    join: |parts, out| join_block(DType::Q4_K, parts, out),
};

pub(super) static Q5_K: Format = Format {
    planes: &[QUANTS, SCALE_MINS, plane("high", DType::I8, 32)],
    split: |block, planes| split_block(DType::Q5_K, block, planes),
    join: |parts, out| join_block(DType::Q5_K, parts, out),
};

pub(super) static Q6_K: Format = Format {
    planes: &[
        QUANTS,
        plane("scales", DType::I8, 16),
        plane("d", DType::F16, 1),
        plane("high", DType::I8, 64),
    ],
    split: |block, planes| split_block(DType::Q6_K, block, planes),
    join: |parts, out| join_block(DType::Q6_K, parts, out),
};

/// Bytes of each plane of `dtype` per super-block, in layout order.
fn plane_block_bytes(dtype: DType) -> Result<Vec<usize>, QuantError> {
    let format = match dtype {
        DType::Q4_K => &Q4_K,
        DType::Q5_K => &Q5_K,
        DType::Q6_K => &Q6_K,
        other => return Err(QuantError::NoPlanes(other)),
    };
    Ok(format
        .planes
        .iter()
        .map(|p| (p.per_block * p.element.block_bytes()) as usize)
        .collect())
}

/// GGML bytes of one super-block (the sum of the planes').
fn block_bytes(dtype: DType) -> Result<usize, QuantError> {
    Ok(plane_block_bytes(dtype)?.iter().sum())
}

/// The planes holding scales: those after the quants, up to `high`.
fn scale_planes(dtype: DType) -> std::ops::Range<usize> {
    if dtype == DType::Q6_K {
        1..3
    } else {
        1..2
    }
}

/// Where value `v` (0..256) of a super-block keeps its low nibble in the
/// quants plane: (byte, shift).
fn nibble_at(v: usize) -> (usize, u32) {
    let (g, j) = (v / CHUNK, v % CHUNK);
    (4 * g + j % 4, 4 * (j as u32 / 4))
}

/// The 256 codes of one GGML super-block (Q4_K 0..16, Q5_K 0..32, Q6_K 0..64,
/// unsigned, before any offset), and its scale bytes as the planes after
/// `high` hold them.
fn codes_and_scales(dtype: DType, block: &[u8]) -> ([u8; SUPER_BLOCK], Vec<u8>) {
    let mut codes = [0u8; SUPER_BLOCK];
    match dtype {
        DType::Q4_K | DType::Q5_K => {
            let qs = if dtype == DType::Q4_K {
                &block[16..144]
            } else {
                &block[48..176]
            };
            for (v, code) in codes.iter_mut().enumerate() {
                let (j, l) = (v / 32, v % 32);
                *code = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
                if dtype == DType::Q5_K {
                    *code |= ((block[16 + l] >> j) & 1) << 4;
                }
            }
            (codes, block[..16].to_vec())
        }
        _ => {
            // Q6_K: value 128n + 32s + l, low nibble of ql[64n + 32(s % 2) + l]
            // (high nibble for s >= 2), top bits 2s.. of qh[32n + l].
            for (v, code) in codes.iter_mut().enumerate() {
                let (n, s, l) = (v / 128, (v % 128) / 32, v % 32);
                let lo = (block[64 * n + 32 * (s % 2) + l] >> (4 * (s / 2))) & 15;
                let hi = (block[128 + 32 * n + l] >> (2 * s)) & 3;
                *code = lo | hi << 4;
            }
            (codes, block[192..210].to_vec())
        }
    }
}

/// The inverse of [`codes_and_scales`]: one GGML super-block.
fn block_from(dtype: DType, codes: &[u8; SUPER_BLOCK], scales: &[u8], block: &mut [u8]) {
    block.fill(0);
    match dtype {
        DType::Q4_K | DType::Q5_K => {
            block[..16].copy_from_slice(scales);
            let qs_at = if dtype == DType::Q4_K { 16 } else { 48 };
            for (v, &code) in codes.iter().enumerate() {
                let (j, l) = (v / 32, v % 32);
                block[qs_at + 32 * (j / 2) + l] |= (code & 15) << (4 * (j % 2));
                if dtype == DType::Q5_K {
                    block[16 + l] |= (code >> 4) << j;
                }
            }
        }
        _ => {
            for (v, &code) in codes.iter().enumerate() {
                let (n, s, l) = (v / 128, (v % 128) / 32, v % 32);
                block[64 * n + 32 * (s % 2) + l] |= (code & 15) << (4 * (s / 2));
                block[128 + 32 * n + l] |= (code >> 4) << (2 * s);
            }
            block[192..210].copy_from_slice(scales);
        }
    }
}

/// The codes of one super-block as its quants and `high` plane bytes.
fn put_codes(dtype: DType, codes: &[u8; SUPER_BLOCK], quants: &mut [u8], high: &mut [u8]) {
    for (v, &code) in codes.iter().enumerate() {
        let (byte, shift) = nibble_at(v);
        quants[byte] |= (code & 15) << shift;
        let (g, j) = (v / CHUNK, v % CHUNK);
        match dtype {
            DType::Q5_K => high[g] |= (code >> 4) << j,
            DType::Q6_K => high[2 * g + j / 4] |= (code >> 4) << (2 * (j % 4)),
            _ => {}
        }
    }
}

/// The codes of one super-block from its quants and `high` plane bytes.
fn get_codes(dtype: DType, quants: &[u8], high: &[u8]) -> [u8; SUPER_BLOCK] {
    std::array::from_fn(|v| {
        let (byte, shift) = nibble_at(v);
        let lo = (quants[byte] >> shift) & 15;
        let (g, j) = (v / CHUNK, v % CHUNK);
        match dtype {
            DType::Q5_K => lo | ((high[g] >> j) & 1) << 4,
            DType::Q6_K => lo | ((high[2 * g + j / 4] >> (2 * (j % 4))) & 3) << 4,
            _ => lo,
        }
    })
}

/// Appends one GGML super-block of `dtype` to its planes (in layout order).
fn split_block(dtype: DType, block: &[u8], planes: &mut [Vec<u8>]) {
    let sizes = plane_block_bytes(dtype).expect("a K-quant");
    let (codes, scales) = codes_and_scales(dtype, block);
    let scale_planes = scale_planes(dtype);
    let high_bytes = sizes.get(scale_planes.end).copied().unwrap_or(0);
    let (mut quants, mut high) = (vec![0u8; sizes[0]], vec![0u8; high_bytes]);
    put_codes(dtype, &codes, &mut quants, &mut high);
    planes[0].extend_from_slice(&quants);
    let mut scales = scales.iter().copied();
    for k in scale_planes.clone() {
        planes[k].extend(scales.by_ref().take(sizes[k]));
    }
    if let Some(plane) = planes.get_mut(scale_planes.end) {
        plane.extend_from_slice(&high);
    }
}

/// Appends the GGML super-block of `dtype` made of its parts of the planes.
fn join_block(dtype: DType, parts: &[&[u8]], out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + block_bytes(dtype).expect("a K-quant"), 0);
    let scale_planes = scale_planes(dtype);
    let high = parts.get(scale_planes.end).copied().unwrap_or(&[]);
    let scales = parts[scale_planes].concat();
    block_from(
        dtype,
        &get_codes(dtype, parts[0], high),
        &scales,
        &mut out[at..],
    );
}

/// The scale and the amount subtracted of each sub-block of one super-block,
/// from its scale bytes: value = scale·q − min (Q6_K: scale·(q − 32), min 0),
/// as f32 products of the f16 scales and the sub-block's integer scale.
fn sub_block_scales(dtype: DType, scales: &[u8]) -> Vec<(f32, f32)> {
    let f16 = |at: usize| half::f16::from_le_bytes([scales[at], scales[at + 1]]).to_f32();
    match dtype {
        DType::Q6_K => (0..16)
            .map(|j| (f16(16) * f32::from(scales[j] as i8), 0.0))
            .collect(),
        _ => {
            let (sc, m) = unpack_scale_min(&scales[4..16]);
            (0..8)
                .map(|j| (f16(0) * f32::from(sc[j]), f16(2) * f32::from(m[j])))
                .collect()
        }
    }
}

/// Decodes the planes of `dtype` (whole super-blocks of each, in layout
/// order) into `out`, which must hold exactly their values, as the kernels
/// do: the Rust reference of the GPU layout.
pub fn dequantize(dtype: DType, planes: &[&[u8]], out: &mut [f32]) -> Result<(), QuantError> {
    let sizes = plane_block_bytes(dtype)?;
    let n = out.len() / SUPER_BLOCK;
    let whole = n * SUPER_BLOCK == out.len()
        && planes.len() == sizes.len()
        && planes
            .iter()
            .zip(&sizes)
            .all(|(p, &size)| p.len() == n * size);
    if !whole {
        return Err(QuantError::PlaneLength {
            dtype,
            expected: n * block_bytes(dtype)?,
            actual: planes.iter().map(|p| p.len()).sum(),
        });
    }
    let sub = if dtype == DType::Q6_K { 16 } else { 32 };
    let scale_planes = scale_planes(dtype);
    for (b, y) in out.chunks_exact_mut(SUPER_BLOCK).enumerate() {
        let part = |k: usize| &planes[k][b * sizes[k]..(b + 1) * sizes[k]];
        let high = if scale_planes.end < sizes.len() {
            part(scale_planes.end)
        } else {
            &[]
        };
        let codes = get_codes(dtype, part(0), high);
        let scales: Vec<u8> = scale_planes.clone().flat_map(part).copied().collect();
        let scales = sub_block_scales(dtype, &scales);
        for (v, y) in y.iter_mut().enumerate() {
            let (dl, ml) = scales[v / sub];
            *y = match dtype {
                DType::Q6_K => dl * f32::from(codes[v] as i8 - 32),
                _ => dl * f32::from(codes[v]) - ml,
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [DType; 3] = [DType::Q4_K, DType::Q5_K, DType::Q6_K];

    /// `n` super-blocks of random bytes: every bit pattern is a valid block,
    /// so this covers codes and scales no encoder would choose.
    fn random_blocks(dtype: DType, n: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let size = block_bytes(dtype).unwrap();
        let mut blocks: Vec<u8> = (0..n * size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        // Finite f16 scales (exponent below 31), so decoded values compare bit for bit.
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
        blocks
    }

    /// The planes of whole super-blocks.
    fn split(dtype: DType, blocks: &[u8]) -> Vec<Vec<u8>> {
        let mut planes = vec![Vec::new(); plane_block_bytes(dtype).unwrap().len()];
        for block in blocks.chunks_exact(block_bytes(dtype).unwrap()) {
            split_block(dtype, block, &mut planes);
        }
        planes
    }

    fn join(dtype: DType, planes: &[Vec<u8>]) -> Vec<u8> {
        let sizes = plane_block_bytes(dtype).unwrap();
        let mut out = Vec::new();
        for b in 0..planes[0].len() / sizes[0] {
            let parts: Vec<&[u8]> = planes
                .iter()
                .zip(&sizes)
                .map(|(p, &size)| &p[b * size..(b + 1) * size])
                .collect();
            join_block(dtype, &parts, &mut out);
        }
        out
    }

    fn views(planes: &[Vec<u8>]) -> Vec<&[u8]> {
        planes.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn split_then_join_gives_the_blocks_back_bit_for_bit() {
        for dtype in FORMATS {
            let blocks = random_blocks(dtype, 5, 3);
            let planes = split(dtype, &blocks);
            for (plane, size) in planes.iter().zip(plane_block_bytes(dtype).unwrap()) {
                assert_eq!(plane.len(), 5 * size, "{dtype}");
            }
            // The planes take the blocks' bytes, no more.
            assert_eq!(planes.iter().map(Vec::len).sum::<usize>(), blocks.len());
            assert_eq!(join(dtype, &planes), blocks, "{dtype}");
        }
    }

    #[test]
    fn planes_decode_to_the_ggml_formats_values_exactly() {
        for dtype in FORMATS {
            let blocks = random_blocks(dtype, 4, 11);
            let mut want = vec![0f32; 4 * SUPER_BLOCK];
            crate::dequantize(dtype, &blocks, &mut want).unwrap();
            let planes = split(dtype, &blocks);
            let mut got = vec![0f32; 4 * SUPER_BLOCK];
            dequantize(dtype, &views(&planes), &mut got).unwrap();
            for (v, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{dtype} value {v}: {g} vs {w}");
            }
        }
    }

    /// The documented byte positions, read directly: value v's nibble, its
    /// high bits and its sub-block's scales.
    #[test]
    fn the_planes_hold_the_values_in_the_documented_order() {
        for dtype in FORMATS {
            let blocks = random_blocks(dtype, 2, 5);
            let mut want = vec![0f32; 2 * SUPER_BLOCK];
            crate::dequantize(dtype, &blocks, &mut want).unwrap();
            let planes = split(dtype, &blocks);
            let sizes = plane_block_bytes(dtype).unwrap();
            for (i, &w) in want.iter().enumerate() {
                let (b, v) = (i / SUPER_BLOCK, i % SUPER_BLOCK);
                let part = |k: usize| &planes[k][b * sizes[k]..][..sizes[k]];
                let f16 = |bytes: &[u8], at: usize| {
                    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
                };
                let (g, j) = (v / 8, v % 8);
                let byte = part(0)[4 * g + j % 4];
                let nibble = if j < 4 { byte & 15 } else { byte >> 4 };
                let got = match dtype {
                    DType::Q6_K => {
                        let high = part(3);
                        let top = u16::from_le_bytes([high[2 * g], high[2 * g + 1]]);
                        let code = nibble | (((top >> (2 * j)) & 3) as u8) << 4;
                        let scale = f32::from(part(1)[v / 16] as i8);
                        f16(part(2), 0) * scale * f32::from(code as i8 - 32)
                    }
                    _ => {
                        let code = if dtype == DType::Q5_K {
                            nibble | ((part(2)[g] >> j) & 1) << 4
                        } else {
                            nibble
                        };
                        let scales = part(1);
                        let (sc, m) = unpack_scale_min(&scales[4..16]);
                        let (d, dmin) = (f16(scales, 0), f16(scales, 2));
                        d * f32::from(sc[v / 32]) * f32::from(code) - dmin * f32::from(m[v / 32])
                    }
                };
                assert_eq!(got.to_bits(), w.to_bits(), "{dtype} value {i}");
            }
        }
    }

    #[test]
    fn other_dtypes_and_partial_planes_are_refused() {
        assert!(plane_block_bytes(DType::Q8_0).is_err());
        assert!(plane_block_bytes(DType::Q3_K).is_err());
        let mut out = vec![0f32; 256];
        let ok: [&[u8]; 3] = [&[0; 128], &[0; 16], &[0; 32]];
        assert!(dequantize(DType::Q5_K, &ok, &mut out).is_ok());
        assert!(dequantize(DType::Q5_K, &ok, &mut out[..255]).is_err());
        assert!(dequantize(DType::Q5_K, &ok[..2], &mut out).is_err());
        assert!(dequantize(DType::Q4_K, &[&[0; 127], &[0; 16]], &mut out).is_err());
        let short: [&[u8]; 4] = [&[0; 128], &[0; 16], &[0; 1], &[0; 64]];
        assert!(dequantize(DType::Q6_K, &short, &mut out).is_err());
    }
}
