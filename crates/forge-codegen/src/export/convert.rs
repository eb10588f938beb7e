//! One planned tensor's bytes from its checkpoint parts: each part's stored
//! rows are reordered, transformed and converted to the planned dtype, and the
//! parts are stacked along rows.

use forge_ir::{DType, TensorSpec, TensorTransform};
use forge_weights::{can_dequantize, can_quantize, dequantize, dequantize_rows, quantize_rows};
use rayon::prelude::*;

/// A value-wise transform, applied after dequantising.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Elementwise {
    AddOne,
    NegExp,
    /// Canonical rows' factors, as `TensorTransform::ScaleRows` runs.
    ScaleRows(Vec<(u64, f32)>),
}

impl Elementwise {
    /// Transforms `values`, canonical row `row` of the tensor.
    fn apply(&self, row: usize, values: &mut [f32]) {
        match self {
            Elementwise::AddOne => values.iter_mut().for_each(|v| *v += 1.0),
            Elementwise::NegExp => values.iter_mut().for_each(|v| *v = -v.exp()),
            Elementwise::ScaleRows(runs) => {
                let factor = row_factor(runs, row as u64);
                values.iter_mut().for_each(|v| *v *= factor);
            }
        }
    }
}

/// The factor of canonical row `row` under `runs` (1 past the last run).
fn row_factor(runs: &[(u64, f32)], row: u64) -> f32 {
    let mut start = 0;
    for &(len, factor) in runs {
        if row < start + len {
            return factor;
        }
        start += len;
    }
    1.0
}

/// How one part reaches the planned dtype.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum PartMode {
    /// Same dtype, no value change: stored rows are copied as bytes, in `rows` order.
    RawRows { rows: Vec<usize> },
    /// Stored rows `rows[i]` are dequantised, transformed and quantised one by one.
    ConvertRows {
        rows: Vec<usize>,
        elementwise: Vec<Elementwise>,
    },
    /// A transpose reshuffles values across rows: the whole part is
    /// dequantised, every transform applied in order, then quantised.
    Materialise {
        stored_shape: Vec<u64>,
        transforms: Vec<TensorTransform>,
    },
}

/// One checkpoint tensor, checked and ready to convert.
#[derive(Clone, Debug)]
pub(super) struct PreparedPart {
    pub dtype: DType,
    /// Canonical rows and the values per row.
    pub rows: usize,
    pub row_len: usize,
    pub mode: PartMode,
}

/// Rows of a tensor of `shape`: the outermost dimension, a vector being a column of 1-value rows.
pub(super) fn rows_and_len(shape: &[u64]) -> (u64, u64) {
    match shape {
        [] => (1, 1),
        [rows, rest @ ..] => (*rows, rest.iter().product()),
    }
}

/// The source row each canonical row comes from under llama.cpp's rope permutation:
/// per head, canonical rows (half s, index j) are stored at `2 j + s`.
fn unpermute_rope_rows(rows: usize, heads: u64) -> Result<Vec<usize>, String> {
    let heads = heads as usize;
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return Err(format!(
            "{rows} rows do not split into {heads} rope heads of an even size"
        ));
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    Ok((0..rows)
        .map(|i| {
            let (head, r) = (i / head_dim, i % head_dim);
            head * head_dim + 2 * (r % half) + r / half
        })
        .collect())
}

/// Decides how `spec` becomes `target` rows; `keep_interleaved_rope` drops its rope unpermutation.
pub(super) fn prepare_part(
    spec: &TensorSpec,
    target: DType,
    keep_interleaved_rope: bool,
) -> Result<PreparedPart, String> {
    let (rows, row_len) = rows_and_len(&spec.shape);
    let (rows, row_len) = (rows as usize, row_len as usize);
    let elements = spec
        .elements()
        .ok_or_else(|| format!("shape {:?} overflows", spec.shape))?;
    match spec.dtype.bytes_for(elements) {
        Some(n) if n == spec.source.n_bytes => {}
        _ => {
            return Err(format!(
                "{} shape {:?} does not fill its {} stored bytes",
                spec.dtype, spec.shape, spec.source.n_bytes
            ))
        }
    }
    let transforms: Vec<TensorTransform> = spec
        .transforms
        .iter()
        .filter(|t| {
            !(keep_interleaved_rope && matches!(t, TensorTransform::UnpermuteRopeRows { .. }))
        })
        .cloned()
        .collect();
    let converting = spec.dtype != target
        || transforms
            .iter()
            .any(|t| !matches!(t, TensorTransform::UnpermuteRopeRows { .. }));
    if converting && !can_dequantize(spec.dtype) {
        return Err(format!("reading {} weights is not supported", spec.dtype));
    }
    if converting && !can_quantize(target) {
        return Err(format!("writing {target} weights is not supported"));
    }
    let mode = if transforms.contains(&TensorTransform::Transpose) {
        let [r, c] = spec.shape[..] else {
            return Err(format!("transposing shape {:?}, not a matrix", spec.shape));
        };
        // Each transpose swaps the two dimensions, so the stored shape follows from their count.
        let swaps = transforms
            .iter()
            .filter(|t| **t == TensorTransform::Transpose)
            .count();
        let stored_shape = if swaps % 2 == 1 {
            vec![c, r]
        } else {
            vec![r, c]
        };
        let mut shape = stored_shape.clone();
        for t in &transforms {
            match t {
                TensorTransform::Transpose => shape.reverse(),
                TensorTransform::UnpermuteRopeRows { heads } => {
                    unpermute_rope_rows(shape[0] as usize, *heads)?;
                }
                TensorTransform::AddOne
                | TensorTransform::NegExp
                | TensorTransform::ScaleRows { .. } => {}
            }
        }
        check_row_blocks(spec.dtype, stored_shape[1])?;
        PartMode::Materialise {
            stored_shape,
            transforms,
        }
    } else {
        let mut order: Vec<usize> = (0..rows).collect();
        let mut elementwise = Vec::new();
        for t in &transforms {
            match t {
                TensorTransform::UnpermuteRopeRows { heads } => {
                    let step = unpermute_rope_rows(rows, *heads)?;
                    order = step.iter().map(|&i| order[i]).collect();
                }
                TensorTransform::AddOne => elementwise.push(Elementwise::AddOne),
                TensorTransform::NegExp => elementwise.push(Elementwise::NegExp),
                TensorTransform::ScaleRows { runs } => {
                    check_runs(runs, rows)?;
                    elementwise.push(Elementwise::ScaleRows(runs.clone()));
                }
                TensorTransform::Transpose => unreachable!("handled above"),
            }
        }
        check_row_blocks(spec.dtype, row_len as u64)?;
        if converting {
            PartMode::ConvertRows {
                rows: order,
                elementwise,
            }
        } else {
            PartMode::RawRows { rows: order }
        }
    };
    Ok(PreparedPart {
        dtype: spec.dtype,
        rows,
        row_len,
        mode,
    })
}

/// The runs of a row scaling cover exactly the tensor's rows.
fn check_runs(runs: &[(u64, f32)], rows: usize) -> Result<(), String> {
    let covered: u64 = runs.iter().map(|r| r.0).sum();
    if covered != rows as u64 {
        return Err(format!("row scaling covers {covered} of {rows} rows"));
    }
    Ok(())
}

fn check_row_blocks(dtype: DType, row_len: u64) -> Result<(), String> {
    if row_len.is_multiple_of(dtype.block_elements()) {
        Ok(())
    } else {
        Err(format!(
            "stored rows of {row_len} values are not whole {dtype} blocks of {}",
            dtype.block_elements()
        ))
    }
}

/// How many rows one parallel task converts: enough values to outweigh
/// scheduling, few enough that both cores stay busy on mid-sized tensors.
fn rows_per_task(row_len: usize) -> usize {
    const VALUES_PER_TASK: usize = 1 << 15;
    (VALUES_PER_TASK / row_len.max(1)).max(1)
}

/// Writes `part`'s canonical rows in `target` to `out`, which is exactly their size;
/// `stored` is the part's stored bytes.
pub(super) fn convert_part(part: &PreparedPart, stored: &[u8], target: DType, out: &mut [u8]) {
    let out_row = out.len() / part.rows.max(1);
    match &part.mode {
        PartMode::RawRows { rows } => {
            let in_row = stored.len() / part.rows.max(1);
            for (dst, &src) in out.chunks_exact_mut(out_row.max(1)).zip(rows) {
                dst.copy_from_slice(&stored[src * in_row..(src + 1) * in_row]);
            }
        }
        PartMode::ConvertRows { rows, elementwise } => {
            let in_row = stored.len() / part.rows.max(1);
            let per_task = rows_per_task(part.row_len);
            out.par_chunks_mut(out_row * per_task)
                .enumerate()
                .for_each(|(task, dst)| {
                    let first = task * per_task;
                    let n = dst.len() / out_row;
                    let mut values = vec![0f32; n * part.row_len];
                    for (k, row) in values.chunks_exact_mut(part.row_len).enumerate() {
                        let src = rows[first + k];
                        dequantize(part.dtype, &stored[src * in_row..(src + 1) * in_row], row)
                            .expect("prepare_part checked the dtype and row blocks");
                        for op in elementwise {
                            op.apply(first + k, row);
                        }
                    }
                    quantize_rows(target, &values, part.row_len, dst)
                        .expect("the planned tensor's rows are whole blocks of its dtype");
                });
        }
        PartMode::Materialise {
            stored_shape,
            transforms,
        } => {
            let values = materialise(part.dtype, stored, stored_shape, transforms);
            quantize_rows(target, &values, part.row_len, out)
                .expect("the planned tensor's rows are whole blocks of its dtype");
        }
    }
}

/// Dequantises a whole stored matrix and applies `transforms` in order.
fn materialise(
    dtype: DType,
    stored: &[u8],
    stored_shape: &[u64],
    transforms: &[TensorTransform],
) -> Vec<f32> {
    let mut shape = stored_shape.to_vec();
    let (_, row_len) = rows_and_len(&shape);
    let mut values = vec![0f32; shape.iter().product::<u64>() as usize];
    dequantize_rows(dtype, stored, row_len as usize, &mut values)
        .expect("prepare_part checked the dtype and row blocks");
    for t in transforms {
        match t {
            TensorTransform::Transpose => {
                let (r, c) = (shape[0] as usize, shape[1] as usize);
                let source = std::mem::take(&mut values);
                values = vec![0f32; r * c];
                values.par_chunks_mut(r).enumerate().for_each(|(j, row)| {
                    for (i, v) in row.iter_mut().enumerate() {
                        *v = source[i * c + j];
                    }
                });
                shape = vec![shape[1], shape[0]];
            }
            TensorTransform::UnpermuteRopeRows { heads } => {
                let (rows, row_len) = rows_and_len(&shape);
                let order = unpermute_rope_rows(rows as usize, *heads)
                    .expect("prepare_part checked the heads divide the rows");
                let row_len = row_len as usize;
                let source = std::mem::take(&mut values);
                values = order
                    .iter()
                    .flat_map(|&src| source[src * row_len..(src + 1) * row_len].iter().copied())
                    .collect();
            }
            TensorTransform::AddOne => Elementwise::AddOne.apply(0, &mut values),
            TensorTransform::NegExp => Elementwise::NegExp.apply(0, &mut values),
            TensorTransform::ScaleRows { runs } => {
                let row_len = rows_and_len(&shape).1 as usize;
                let scale = Elementwise::ScaleRows(runs.clone());
                for (r, row) in values.chunks_exact_mut(row_len).enumerate() {
                    scale.apply(r, row);
                }
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_unpermutation_inverts_llama_cpp_permutation() {
        // llama.cpp: reshape(heads, 2, hd/2, ...).swapaxes(1, 2): stored (h, j, s) holds canonical (h, s, j).
        let (heads, head_dim) = (2usize, 8usize);
        let half = head_dim / 2;
        let mut stored_of = vec![0usize; heads * head_dim];
        for h in 0..heads {
            for s in 0..2 {
                for j in 0..half {
                    stored_of[h * head_dim + s * half + j] = h * head_dim + j * 2 + s;
                }
            }
        }
        assert_eq!(unpermute_rope_rows(16, 2).unwrap(), stored_of);
        assert!(unpermute_rope_rows(12, 4).is_err());
        assert!(unpermute_rope_rows(16, 0).is_err());
    }
}
