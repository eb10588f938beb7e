//! GGML block formats: dequantisation to f32 and quantisation from f32.
//!
//! Every format is byte-compatible with ggml (llama.cpp) and gguf-py: blocks
//! are laid out exactly as `ggml-common.h` declares them, little-endian, so
//! tensors we write can be read by llama.cpp and tensors it writes by us.
//!
//! Dequantisation performs the same f32 operations in the same order as
//! gguf-py's `gguf.quants` (and ggml's reference C code), so results are
//! bitwise identical; `tests/quant_gguf_py.rs` checks that on real tensors.

mod float;
pub(crate) mod k_quants;
mod q4_0;
mod q4_1;
mod q5;
mod q8_0;

use forge_ir::DType;
use rayon::prelude::*;

/// Why a block conversion was refused. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("{0} has no quant planes")]
    NoPlanes(DType),
    #[error("{dtype}: {actual} bytes are not whole planes or blocks ({expected} expected)")]
    PlaneLength {
        dtype: DType,
        expected: usize,
        actual: usize,
    },
    #[error("dequantising {0} is not supported")]
    DequantizeUnsupported(DType),
    #[error("quantising to {0} is not supported")]
    QuantizeUnsupported(DType),
    #[error("{dtype}: {elements} elements is not a multiple of the block size {block}")]
    NotWholeBlocks {
        dtype: DType,
        elements: usize,
        block: u64,
    },
    #[error("{dtype}: {elements} elements take {expected} bytes, got {actual}")]
    ByteLength {
        dtype: DType,
        elements: usize,
        expected: u64,
        actual: usize,
    },
    #[error("{dtype}: row length {row_len} is not a multiple of the block size {block}")]
    RowNotWholeBlocks {
        dtype: DType,
        row_len: usize,
        block: u64,
    },
    #[error(
        "{dtype}: row length {row_len} does not divide the {elements} elements into whole rows"
    )]
    RowLength {
        dtype: DType,
        row_len: usize,
        elements: usize,
    },
}

/// True for the formats [`dequantize`] accepts.
pub fn can_dequantize(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F32
            | DType::F16
            | DType::BF16
            | DType::Q8_0
            | DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q2_K
            | DType::Q3_K
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
    )
}

/// True for the formats [`quantize`] can produce.
pub fn can_quantize(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F32
            | DType::F16
            | DType::BF16
            | DType::Q8_0
            | DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
    )
}

/// Checks that `elements` values of `dtype` occupy exactly `bytes` bytes.
fn check_lengths(dtype: DType, elements: usize, bytes: usize) -> Result<(), QuantError> {
    let block = dtype.block_elements();
    if !(elements as u64).is_multiple_of(block) {
        return Err(QuantError::NotWholeBlocks {
            dtype,
            elements,
            block,
        });
    }
    // bytes_for only fails on a partial block (ruled out above) or overflow,
    // and an overflowing size can never equal a real slice length.
    let expected = dtype.bytes_for(elements as u64).unwrap_or(u64::MAX);
    if expected != bytes as u64 {
        return Err(QuantError::ByteLength {
            dtype,
            elements,
            expected,
            actual: bytes,
        });
    }
    Ok(())
}

/// Checks a row split: whole blocks per row and whole rows overall.
fn check_rows(dtype: DType, elements: usize, row_len: usize) -> Result<(), QuantError> {
    if row_len == 0 || !elements.is_multiple_of(row_len) {
        return Err(QuantError::RowLength {
            dtype,
            row_len,
            elements,
        });
    }
    let block = dtype.block_elements();
    if !(row_len as u64).is_multiple_of(block) {
        return Err(QuantError::RowNotWholeBlocks {
            dtype,
            row_len,
            block,
        });
    }
    Ok(())
}

/// Dequantises `out.len()` values of `dtype` from `bytes`, which must be
/// exactly `dtype.bytes_for(out.len())` long.
pub fn dequantize(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    if !can_dequantize(dtype) {
        return Err(QuantError::DequantizeUnsupported(dtype));
    }
    check_lengths(dtype, out.len(), bytes.len())?;
    dequantize_checked(dtype, bytes, out);
    Ok(())
}

/// Runs the format's decoder on lengths already validated by the caller.
fn dequantize_checked(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        DType::F32 => float::dequantize_f32(bytes, out),
        DType::F16 => float::dequantize_f16(bytes, out),
        DType::BF16 => float::dequantize_bf16(bytes, out),
        DType::Q8_0 => q8_0::dequantize(bytes, out),
        DType::Q4_0 => q4_0::dequantize(bytes, out),
        DType::Q4_1 => q4_1::dequantize(bytes, out),
        DType::Q5_0 => q5::dequantize_q5_0(bytes, out),
        DType::Q5_1 => q5::dequantize_q5_1(bytes, out),
        DType::Q2_K => k_quants::q2_k::dequantize(bytes, out),
        DType::Q3_K => k_quants::q3_k::dequantize(bytes, out),
        DType::Q4_K => k_quants::q4_k::dequantize(bytes, out),
        DType::Q5_K => k_quants::q5_k::dequantize(bytes, out),
        DType::Q6_K => k_quants::q6_k::dequantize(bytes, out),
        other => unreachable!("can_dequantize admitted {other}"),
    }
}

/// Quantises `data` to `dtype` into `out`, which must be exactly
/// `dtype.bytes_for(data.len())` long.
pub fn quantize(dtype: DType, data: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    if !can_quantize(dtype) {
        return Err(QuantError::QuantizeUnsupported(dtype));
    }
    check_lengths(dtype, data.len(), out.len())?;
    quantize_checked(dtype, data, out);
    Ok(())
}

/// Runs the format's encoder on lengths already validated by the caller.
fn quantize_checked(dtype: DType, data: &[f32], out: &mut [u8]) {
    match dtype {
        DType::F32 => float::quantize_f32(data, out),
        DType::F16 => float::quantize_f16(data, out),
        DType::BF16 => float::quantize_bf16(data, out),
        DType::Q8_0 => q8_0::quantize(data, out),
        DType::Q4_0 => q4_0::quantize(data, out),
        DType::Q4_1 => q4_1::quantize(data, out),
        DType::Q5_0 => q5::quantize_q5_0(data, out),
        DType::Q5_1 => q5::quantize_q5_1(data, out),
        DType::Q4_K => k_quants::q4_k::quantize(data, out),
        DType::Q5_K => k_quants::q5_k::quantize(data, out),
        DType::Q6_K => k_quants::q6_k::quantize(data, out),
        other => unreachable!("can_quantize admitted {other}"),
    }
}

/// How many rows one rayon task takes: enough values that scheduling costs
/// little next to the conversion, few enough that both cores stay busy.
fn rows_per_task(row_len: usize) -> usize {
    const VALUES_PER_TASK: usize = 1 << 16;
    (VALUES_PER_TASK / row_len.max(1)).max(1)
}

/// [`dequantize`] for a matrix of rows of `row_len` values, rows in parallel.
pub fn dequantize_rows(
    dtype: DType,
    bytes: &[u8],
    row_len: usize,
    out: &mut [f32],
) -> Result<(), QuantError> {
    if !can_dequantize(dtype) {
        return Err(QuantError::DequantizeUnsupported(dtype));
    }
    check_lengths(dtype, out.len(), bytes.len())?;
    if out.is_empty() {
        return Ok(());
    }
    check_rows(dtype, out.len(), row_len)?;
    let rows = rows_per_task(row_len);
    let row_bytes = bytes.len() / (out.len() / row_len);
    out.par_chunks_mut(row_len * rows)
        .zip(bytes.par_chunks(row_bytes * rows))
        .for_each(|(out, bytes)| dequantize_checked(dtype, bytes, out));
    Ok(())
}

/// [`quantize`] for a matrix of rows of `row_len` values, rows in parallel.
pub fn quantize_rows(
    dtype: DType,
    data: &[f32],
    row_len: usize,
    out: &mut [u8],
) -> Result<(), QuantError> {
    if !can_quantize(dtype) {
        return Err(QuantError::QuantizeUnsupported(dtype));
    }
    check_lengths(dtype, data.len(), out.len())?;
    if data.is_empty() {
        return Ok(());
    }
    check_rows(dtype, data.len(), row_len)?;
    let rows = rows_per_task(row_len);
    let row_bytes = out.len() / (data.len() / row_len);
    out.par_chunks_mut(row_bytes * rows)
        .zip(data.par_chunks(row_len * rows))
        .for_each(|(out, data)| quantize_checked(dtype, data, out));
    Ok(())
}

/// Reads the little-endian f16 at `at` as f32 (exact: every f16 is an f32).
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Writes `value` rounded to nearest-even f16, as ggml's FP32_TO_FP16 does.
fn put_f16(bytes: &mut [u8], at: usize, value: f32) {
    bytes[at..at + 2].copy_from_slice(&half::f16::from_f32(value).to_le_bytes());
}

#[cfg(test)]
mod tests;
