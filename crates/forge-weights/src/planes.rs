//! Quantised matrices as the GPU kernels read them: the GGML blocks of a
//! Q8_0 or Q4_0 matrix split into two planes, so a simdgroup's lanes load
//! consecutive bytes (a GGML block interleaves its 2-byte scale with its
//! quants, which strides the lanes' loads by 34 or 18 bytes):
//!
//! - quants, one row after another: Q8_0 as its int8 values in order; Q4_0
//!   as 4-bit values (0..15, bias 8) packed two to a byte, each group of 8
//!   values in 4 bytes with byte `j` holding value `j` in its low nibble and
//!   value `j + 4` in its high nibble, so `uchar4 & 15` and `uchar4 >> 4`
//!   are four consecutive values each;
//! - scales: the blocks' f16 scales, `cols / 32` per row.
//!
//! The split is lossless: [`join`] rebuilds the GGML blocks bit for bit.

use forge_ir::DType;

use crate::QuantError;

/// Values per block of both formats.
const BLOCK: usize = 32;

/// The two planes of a quantised matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planes {
    /// Q8_0: `rows × cols` bytes; Q4_0: `rows × cols / 2`.
    pub quants: Vec<u8>,
    /// `rows × cols / 32` f16 scales, little-endian.
    pub scales: Vec<u8>,
}

/// Whether [`split`] takes `dtype`.
pub fn has_planes(dtype: DType) -> bool {
    matches!(dtype, DType::Q8_0 | DType::Q4_0)
}

/// Bytes of the quant plane of `values` values of `dtype`.
pub fn quant_bytes(dtype: DType, values: u64) -> u64 {
    match dtype {
        DType::Q4_0 => values / 2,
        _ => values,
    }
}

fn block_bytes(dtype: DType) -> Result<usize, QuantError> {
    match dtype {
        DType::Q8_0 => Ok(2 + BLOCK),
        DType::Q4_0 => Ok(2 + BLOCK / 2),
        other => Err(QuantError::NoPlanes(other)),
    }
}

/// Splits whole GGML blocks of `dtype` (any number of rows, in order) into planes.
pub fn split(dtype: DType, blocks: &[u8]) -> Result<Planes, QuantError> {
    let size = block_bytes(dtype)?;
    if !blocks.len().is_multiple_of(size) {
        return Err(QuantError::PlaneLength {
            dtype,
            expected: blocks.len().next_multiple_of(size),
            actual: blocks.len(),
        });
    }
    let n = blocks.len() / size;
    let mut planes = Planes {
        quants: Vec::with_capacity(n * (size - 2)),
        scales: Vec::with_capacity(2 * n),
    };
    for block in blocks.chunks_exact(size) {
        planes.scales.extend_from_slice(&block[..2]);
        let qs = &block[2..];
        match dtype {
            DType::Q8_0 => planes.quants.extend_from_slice(qs),
            _ => {
                // GGML byte j: value j (low nibble), value j + 16 (high nibble).
                let value = |v: usize| if v < 16 { qs[v] & 15 } else { qs[v - 16] >> 4 };
                for group in 0..BLOCK / 8 {
                    for j in 0..4 {
                        let v = 8 * group + j;
                        planes.quants.push(value(v) | value(v + 4) << 4);
                    }
                }
            }
        }
    }
    Ok(planes)
}

/// Rebuilds the GGML blocks of `dtype` from its planes.
pub fn join(dtype: DType, planes: &Planes) -> Result<Vec<u8>, QuantError> {
    let size = block_bytes(dtype)?;
    let n = planes.scales.len() / 2;
    if !planes.scales.len().is_multiple_of(2) || planes.quants.len() != n * (size - 2) {
        return Err(QuantError::PlaneLength {
            dtype,
            expected: n * (size - 2),
            actual: planes.quants.len(),
        });
    }
    let mut blocks = Vec::with_capacity(n * size);
    for (scale, qs) in planes
        .scales
        .chunks_exact(2)
        .zip(planes.quants.chunks_exact(size - 2))
    {
        blocks.extend_from_slice(scale);
        match dtype {
            DType::Q8_0 => blocks.extend_from_slice(qs),
            _ => {
                let mut values = [0u8; BLOCK];
                for (k, &byte) in qs.iter().enumerate() {
                    let (group, j) = (k / 4, k % 4);
                    values[8 * group + j] = byte & 15;
                    values[8 * group + j + 4] = byte >> 4;
                }
                for j in 0..BLOCK / 2 {
                    blocks.push(values[j] | values[j + 16] << 4);
                }
            }
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dequantize, quantize};

    fn blocks(dtype: DType, seed: u32) -> (Vec<f32>, Vec<u8>) {
        let values: Vec<f32> = (0..96u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 100.0 - 5.0)
            .collect();
        let mut bytes = vec![0u8; dtype.bytes_for(96).unwrap() as usize];
        quantize(dtype, &values, &mut bytes).unwrap();
        (values, bytes)
    }

    #[test]
    fn split_then_join_gives_the_blocks_back_bit_for_bit() {
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let (_, bytes) = blocks(dtype, 7);
            let planes = split(dtype, &bytes).unwrap();
            assert_eq!(planes.scales.len(), 3 * 2);
            assert_eq!(planes.quants.len() as u64, quant_bytes(dtype, 96));
            assert_eq!(join(dtype, &planes).unwrap(), bytes, "{dtype}");
        }
    }

    #[test]
    fn the_planes_hold_the_values_in_the_documented_order() {
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let (_, bytes) = blocks(dtype, 11);
            let mut want = vec![0f32; 96];
            dequantize(dtype, &bytes, &mut want).unwrap();
            let planes = split(dtype, &bytes).unwrap();
            for (i, &w) in want.iter().enumerate() {
                let s = 2 * (i / 32);
                let d = half::f16::from_le_bytes([planes.scales[s], planes.scales[s + 1]]);
                let q = match dtype {
                    DType::Q8_0 => planes.quants[i] as i8 as f32,
                    _ => {
                        // Group of 8 values in 4 bytes: byte j holds values j and j + 4.
                        let (group, k) = (i / 8, i % 8);
                        let byte = planes.quants[4 * group + k % 4];
                        let nibble = if k < 4 { byte & 15 } else { byte >> 4 };
                        nibble as f32 - 8.0
                    }
                };
                assert_eq!(q * d.to_f32(), w, "{dtype} value {i}");
            }
        }
    }

    #[test]
    fn other_dtypes_and_partial_blocks_are_refused() {
        assert!(split(DType::F16, &[0; 64]).is_err());
        assert!(split(DType::Q8_0, &[0; 35]).is_err());
        let planes = Planes {
            quants: vec![0; 31],
            scales: vec![0; 2],
        };
        assert!(join(DType::Q8_0, &planes).is_err());
    }
}
