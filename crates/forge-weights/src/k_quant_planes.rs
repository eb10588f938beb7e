//! K-quant matrices (Q4_K, Q5_K, Q6_K) as the GPU kernels read them: each
//! 256-value super-block of the GGML format split into its quants, in a
//! quant plane, and its d / dmin / sub-block scales, in a header plane, so a
//! simdgroup's 32 lanes each take 8 consecutive values of a super-block and
//! their loads of either plane are consecutive bytes. Both planes hold
//! super-blocks one after another (a row is `cols / 256` of them, rows in
//! order) and exactly the GGML bytes, rearranged: the planes take as many
//! bytes as the blocks.
//!
//! Quant plane, per super-block; value `v` is in group `g = v / 8` (lane g's
//! chunk):
//! - low nibbles, 128 bytes (all three formats): the group's 8 values in
//!   bytes `4g .. 4g + 4`, byte `4g + j` holding value `8g + j` in its low
//!   nibble and `8g + j + 4` in its high one (as the Q4_0 plane), so
//!   `uchar4 & 15` and `uchar4 >> 4` are four consecutive values each;
//! - Q5_K: then 32 bytes of fifth bits, byte `g` bit `j` = bit 4 of value
//!   `8g + j`;
//! - Q6_K: then 64 bytes of top bits, the little-endian u16 at `2g` holding
//!   bits 4-5 of value `8g + j` at bits `2j .. 2j + 2`.
//!
//! Header plane, per super-block:
//! - Q4_K, Q5_K: 16 bytes, the block's own first 16: f16 d, f16 dmin and the
//!   12 bytes of packed 6-bit scales and mins (sub-block `j` = values
//!   `32j ..`, so lane g's sub-block is `g / 4`); value = d·sc·q − dmin·m;
//! - Q6_K: 18 bytes, f16 d then the 16 int8 scales of the 16-value sub-blocks
//!   (lane g's is `g / 2`); value = d·scale·(q − 32).
//!
//! [`split_block`] and [`join_block`] are lossless (bit for bit), and [`dequantize`]
//! decodes the planes with the same f32 operations as the GGML formats'
//! decoders, so its values equal `crate::dequantize` of the blocks exactly.

use forge_ir::DType;

use crate::quant::k_quants::unpack_scale_min;
use crate::QuantError;

/// Values per super-block.
pub const SUPER_BLOCK: usize = 256;

/// Values per lane chunk (a group): 32 chunks make a super-block.
const GROUP: usize = 8;

/// Whether `dtype` is a K-quant these planes are defined for.
pub fn is_k_quant(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_K | DType::Q5_K | DType::Q6_K)
}

/// Quant-plane bytes of one super-block.
pub fn quant_block_bytes(dtype: DType) -> Result<usize, QuantError> {
    match dtype {
        DType::Q4_K => Ok(128),
        DType::Q5_K => Ok(128 + 32),
        DType::Q6_K => Ok(128 + 64),
        other => Err(QuantError::NoPlanes(other)),
    }
}

/// Header-plane bytes of one super-block.
pub fn header_block_bytes(dtype: DType) -> Result<usize, QuantError> {
    match dtype {
        DType::Q4_K | DType::Q5_K => Ok(16),
        DType::Q6_K => Ok(2 + 16),
        other => Err(QuantError::NoPlanes(other)),
    }
}

/// GGML bytes of one super-block (the sum of the two planes').
fn block_bytes(dtype: DType) -> Result<usize, QuantError> {
    Ok(quant_block_bytes(dtype)? + header_block_bytes(dtype)?)
}

/// Where value `v` (0..256) of a super-block keeps its low nibble in the
/// quant plane: (byte, shift).
fn nibble_at(v: usize) -> (usize, u32) {
    let (g, j) = (v / GROUP, v % GROUP);
    (4 * g + j % 4, 4 * (j as u32 / 4))
}

/// The 256 codes of one GGML super-block (Q4_K 0..16, Q5_K 0..32, Q6_K 0..64,
/// unsigned, before any offset), and its header bytes.
fn codes_and_header(dtype: DType, block: &[u8]) -> ([u8; SUPER_BLOCK], Vec<u8>) {
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
            let mut header = block[208..210].to_vec();
            header.extend_from_slice(&block[192..208]);
            (codes, header)
        }
    }
}

/// The inverse of [`codes_and_header`]: one GGML super-block.
fn block_from(dtype: DType, codes: &[u8; SUPER_BLOCK], header: &[u8], block: &mut [u8]) {
    block.fill(0);
    match dtype {
        DType::Q4_K | DType::Q5_K => {
            block[..16].copy_from_slice(header);
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
            block[192..208].copy_from_slice(&header[2..18]);
            block[208..210].copy_from_slice(&header[..2]);
        }
    }
}

/// Writes the codes of one super-block into its quant-plane bytes.
fn put_codes(dtype: DType, codes: &[u8; SUPER_BLOCK], quants: &mut [u8]) {
    quants.fill(0);
    for (v, &code) in codes.iter().enumerate() {
        let (byte, shift) = nibble_at(v);
        quants[byte] |= (code & 15) << shift;
        let (g, j) = (v / GROUP, v % GROUP);
        match dtype {
            DType::Q5_K => quants[128 + g] |= (code >> 4) << j,
            DType::Q6_K => {
                let bit = 2 * j;
                quants[128 + 2 * g + bit / 8] |= (code >> 4) << (bit % 8);
            }
            _ => {}
        }
    }
}

/// Reads the codes of one super-block back from its quant-plane bytes.
fn get_codes(dtype: DType, quants: &[u8]) -> [u8; SUPER_BLOCK] {
    std::array::from_fn(|v| {
        let (byte, shift) = nibble_at(v);
        let lo = (quants[byte] >> shift) & 15;
        let (g, j) = (v / GROUP, v % GROUP);
        match dtype {
            DType::Q5_K => lo | ((quants[128 + g] >> j) & 1) << 4,
            DType::Q6_K => {
                let bit = 2 * j;
                lo | ((quants[128 + 2 * g + bit / 8] >> (bit % 8)) & 3) << 4
            }
            _ => lo,
        }
    })
}

/// Appends one GGML super-block of `dtype` to its planes: quants to
/// `planes[0]`, the header to `planes[1]`.
pub fn split_block(dtype: DType, block: &[u8], planes: &mut [Vec<u8>]) {
    let (codes, header) = codes_and_header(dtype, block);
    let quants = &mut planes[0];
    let at = quants.len();
    quants.resize(at + quant_block_bytes(dtype).expect("a K-quant"), 0);
    put_codes(dtype, &codes, &mut quants[at..]);
    planes[1].extend_from_slice(&header);
}

/// Appends the GGML super-block of `dtype` made of its parts of the planes
/// (`parts[0]` its quants, `parts[1]` its header).
pub fn join_block(dtype: DType, parts: &[&[u8]], out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + block_bytes(dtype).expect("a K-quant"), 0);
    block_from(dtype, &get_codes(dtype, parts[0]), parts[1], &mut out[at..]);
}

/// The scale and the amount subtracted of each sub-block of one super-block's
/// header: value = scale·q − min (Q6_K: scale·(q − 32), min 0), as f32
/// products of the f16 scales and the sub-block's integer scale.
fn sub_block_scales(dtype: DType, header: &[u8]) -> Vec<(f32, f32)> {
    let f16 = |at: usize| half::f16::from_le_bytes([header[at], header[at + 1]]).to_f32();
    match dtype {
        DType::Q6_K => (0..16)
            .map(|j| (f16(0) * f32::from(header[2 + j] as i8), 0.0))
            .collect(),
        _ => {
            let (sc, m) = unpack_scale_min(&header[4..16]);
            (0..8)
                .map(|j| (f16(0) * f32::from(sc[j]), f16(2) * f32::from(m[j])))
                .collect()
        }
    }
}

/// Decodes the planes of `dtype` (`quants` and `header`, whole super-blocks
/// of both) into `out`, which must hold exactly their values, as the kernels
/// do: the Rust reference of the GPU layout.
pub fn dequantize(
    dtype: DType,
    quants: &[u8],
    header: &[u8],
    out: &mut [f32],
) -> Result<(), QuantError> {
    let (quant_size, header_size) = (quant_block_bytes(dtype)?, header_block_bytes(dtype)?);
    let n = out.len() / SUPER_BLOCK;
    if n * SUPER_BLOCK != out.len()
        || quants.len() != n * quant_size
        || header.len() != n * header_size
    {
        return Err(QuantError::PlaneLength {
            dtype,
            expected: n * (quant_size + header_size),
            actual: quants.len() + header.len(),
        });
    }
    let sub = if dtype == DType::Q6_K { 16 } else { 32 };
    for ((y, quants), header) in out
        .chunks_exact_mut(SUPER_BLOCK)
        .zip(quants.chunks_exact(quant_size))
        .zip(header.chunks_exact(header_size))
    {
        let codes = get_codes(dtype, quants);
        let scales = sub_block_scales(dtype, header);
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

    /// The two planes of whole super-blocks.
    fn split(dtype: DType, blocks: &[u8]) -> [Vec<u8>; 2] {
        let mut planes = [Vec::new(), Vec::new()];
        for block in blocks.chunks_exact(block_bytes(dtype).unwrap()) {
            split_block(dtype, block, &mut planes);
        }
        planes
    }

    fn join(dtype: DType, planes: &[Vec<u8>; 2]) -> Vec<u8> {
        let (q, h) = (
            quant_block_bytes(dtype).unwrap(),
            header_block_bytes(dtype).unwrap(),
        );
        let mut out = Vec::new();
        for (quants, header) in planes[0].chunks_exact(q).zip(planes[1].chunks_exact(h)) {
            join_block(dtype, &[quants, header], &mut out);
        }
        out
    }

    #[test]
    fn split_then_join_gives_the_blocks_back_bit_for_bit() {
        for dtype in FORMATS {
            let blocks = random_blocks(dtype, 5, 3);
            let planes = split(dtype, &blocks);
            assert_eq!(planes[0].len(), 5 * quant_block_bytes(dtype).unwrap());
            assert_eq!(planes[1].len(), 5 * header_block_bytes(dtype).unwrap());
            // The planes take the blocks' bytes, no more.
            assert_eq!(planes[0].len() + planes[1].len(), blocks.len());
            assert_eq!(join(dtype, &planes), blocks, "{dtype}");
        }
    }

    #[test]
    fn planes_decode_to_the_ggml_formats_values_exactly() {
        for dtype in FORMATS {
            let blocks = random_blocks(dtype, 4, 11);
            let mut want = vec![0f32; 4 * SUPER_BLOCK];
            crate::dequantize(dtype, &blocks, &mut want).unwrap();
            let [quants, header] = split(dtype, &blocks);
            let mut got = vec![0f32; 4 * SUPER_BLOCK];
            dequantize(dtype, &quants, &header, &mut got).unwrap();
            for (v, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{dtype} value {v}: {g} vs {w}");
            }
        }
    }

    /// The documented byte positions, read directly: value v's nibble, its
    /// high bits and its sub-block's header fields.
    #[test]
    fn the_planes_hold_the_values_in_the_documented_order() {
        for dtype in FORMATS {
            let blocks = random_blocks(dtype, 2, 5);
            let mut want = vec![0f32; 2 * SUPER_BLOCK];
            crate::dequantize(dtype, &blocks, &mut want).unwrap();
            let planes = split(dtype, &blocks);
            let (qsize, hsize) = (
                quant_block_bytes(dtype).unwrap(),
                header_block_bytes(dtype).unwrap(),
            );
            for (i, &w) in want.iter().enumerate() {
                let (b, v) = (i / SUPER_BLOCK, i % SUPER_BLOCK);
                let q = &planes[0][b * qsize..][..qsize];
                let h = &planes[1][b * hsize..][..hsize];
                let (g, j) = (v / 8, v % 8);
                let byte = q[4 * g + j % 4];
                let nibble = if j < 4 { byte & 15 } else { byte >> 4 };
                let d = half::f16::from_le_bytes([h[0], h[1]]).to_f32();
                let got = match dtype {
                    DType::Q6_K => {
                        let top = u16::from_le_bytes([q[128 + 2 * g], q[129 + 2 * g]]);
                        let code = nibble | (((top >> (2 * j)) & 3) as u8) << 4;
                        d * f32::from(h[2 + v / 16] as i8) * f32::from(code as i8 - 32)
                    }
                    _ => {
                        let code = if dtype == DType::Q5_K {
                            nibble | ((q[128 + g] >> j) & 1) << 4
                        } else {
                            nibble
                        };
                        let (sc, m) = unpack_scale_min(&h[4..16]);
                        let dmin = half::f16::from_le_bytes([h[2], h[3]]).to_f32();
                        d * f32::from(sc[v / 32]) * f32::from(code) - dmin * f32::from(m[v / 32])
                    }
                };
                assert_eq!(got.to_bits(), w.to_bits(), "{dtype} value {i}");
            }
        }
    }

    #[test]
    fn other_dtypes_and_partial_planes_are_refused() {
        assert!(quant_block_bytes(DType::Q8_0).is_err());
        assert!(header_block_bytes(DType::Q3_K).is_err());
        let mut out = vec![0f32; 256];
        assert!(dequantize(DType::Q4_K, &[0; 127], &[0; 16], &mut out).is_err());
        assert!(dequantize(DType::Q6_K, &[0; 192], &[0; 17], &mut out).is_err());
        assert!(dequantize(DType::Q5_K, &[0; 160], &[0; 16], &mut out[..255]).is_err());
        assert!(dequantize(DType::Q5_K, &[0; 160], &[0; 16], &mut out).is_ok());
    }
}
