//! Quantised matrices as the GPU kernels read them: the GGML blocks of a
//! matrix split into planes, so a simdgroup's lanes load consecutive bytes
//! (a GGML block interleaves its scales with its quants, which strides the
//! lanes' loads by the block size). Each format's planes are listed by
//! [`layout`]; the first, `quants`, is written as the tensor itself, the
//! others as `<tensor>.<name>` (see each format's section in `blocks.rs`).
//!
//! The split is lossless: [`join`] rebuilds the GGML blocks bit for bit.

mod blocks;
pub mod k_quants;

use forge_ir::DType;

use crate::QuantError;

/// One plane of a format's GPU layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneLayout {
    /// `quants` for the first plane; the others are stored as `<tensor>.<name>`.
    pub name: &'static str,
    /// The GGUF type the plane is stored as: I8 for bytes, F16 for halves.
    pub element: DType,
    /// Elements of `element` per block of the format.
    pub per_block: u64,
}

impl PlaneLayout {
    /// Bytes of the plane per block.
    fn block_bytes(&self) -> usize {
        (self.per_block * self.element.block_bytes()) as usize
    }
}

/// The planes of `dtype` in file and binding order, or `None` for a format
/// that is not split (floats, and block formats no kernel reads).
pub fn layout(dtype: DType) -> Option<&'static [PlaneLayout]> {
    blocks::format(dtype).map(|f| f.planes)
}

/// Whether [`split`] takes `dtype`.
pub fn has_planes(dtype: DType) -> bool {
    layout(dtype).is_some()
}

/// The planes of a quantised matrix, in [`layout`] order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planes {
    pub planes: Vec<Vec<u8>>,
}

impl Planes {
    /// The first plane, the matrix's quants.
    pub fn quants(&self) -> &[u8] {
        &self.planes[0]
    }
}

/// Elements of plane `plane` of `dtype` for `values` values (a whole number
/// of blocks): the plane tensor's row length when `values` is a row.
pub fn plane_elements(dtype: DType, plane: &PlaneLayout, values: u64) -> u64 {
    values / dtype.block_elements() * plane.per_block
}

fn format_of(dtype: DType) -> Result<&'static blocks::Format, QuantError> {
    blocks::format(dtype).ok_or(QuantError::NoPlanes(dtype))
}

/// Splits whole GGML blocks of `dtype` (any number of rows, in order) into planes.
pub fn split(dtype: DType, data: &[u8]) -> Result<Planes, QuantError> {
    let format = format_of(dtype)?;
    let size = dtype.block_bytes() as usize;
    if !data.len().is_multiple_of(size) {
        return Err(QuantError::PlaneLength {
            dtype,
            expected: data.len().next_multiple_of(size),
            actual: data.len(),
        });
    }
    let n = data.len() / size;
    let mut planes: Vec<Vec<u8>> = format
        .planes
        .iter()
        .map(|p| Vec::with_capacity(n * p.block_bytes()))
        .collect();
    for block in data.chunks_exact(size) {
        (format.split)(block, &mut planes);
    }
    Ok(Planes { planes })
}

/// Rebuilds the GGML blocks of `dtype` from its planes.
pub fn join(dtype: DType, planes: &Planes) -> Result<Vec<u8>, QuantError> {
    let format = format_of(dtype)?;
    let sizes: Vec<usize> = format.planes.iter().map(PlaneLayout::block_bytes).collect();
    let n = planes.planes.first().map_or(0, |q| q.len() / sizes[0]);
    let whole = planes.planes.len() == sizes.len()
        && planes
            .planes
            .iter()
            .zip(&sizes)
            .all(|(plane, &size)| plane.len() == n * size);
    if !whole {
        let actual = planes.planes.iter().map(Vec::len).sum();
        return Err(QuantError::PlaneLength {
            dtype,
            expected: n * sizes.iter().sum::<usize>(),
            actual,
        });
    }
    let mut data = Vec::with_capacity(n * dtype.block_bytes() as usize);
    let mut parts: Vec<&[u8]> = vec![&[]; sizes.len()];
    for i in 0..n {
        for (k, part) in parts.iter_mut().enumerate() {
            *part = &planes.planes[k][i * sizes[k]..(i + 1) * sizes[k]];
        }
        (format.join)(&parts, &mut data);
    }
    Ok(data)
}

#[cfg(test)]
mod tests;
