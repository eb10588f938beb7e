//! How each format's GGML block is split into its planes, one section per
//! format. A format splits one block at a time, appending its bytes to each
//! plane in [`Format::planes`] order, and joins one block back from its
//! parts of the planes.

use forge_ir::DType;

use super::PlaneLayout;

/// One format's planes and its block shuffles.
pub(super) struct Format {
    pub planes: &'static [PlaneLayout],
    /// Appends one GGML block's bytes to each plane.
    pub split: fn(&[u8], &mut [Vec<u8>]),
    /// Appends the GGML block made of its parts of the planes.
    pub join: fn(&[&[u8]], &mut Vec<u8>),
}

pub(super) fn format(dtype: DType) -> Option<&'static Format> {
    match dtype {
        DType::Q8_0 => Some(&Q8_0),
        DType::Q4_0 => Some(&Q4_0),
        DType::Q4_1 => Some(&Q4_1),
        DType::Q5_0 => Some(&Q5_0),
        DType::Q5_1 => Some(&Q5_1),
        DType::Q4_K => Some(&super::k_quants::Q4_K),
        DType::Q5_K => Some(&super::k_quants::Q5_K),
        DType::Q6_K => Some(&super::k_quants::Q6_K),
        _ => None,
    }
}

pub(super) const fn plane(name: &'static str, element: DType, per_block: u64) -> PlaneLayout {
    PlaneLayout {
        name,
        element,
        per_block,
    }
}

/// The f16 block scale, one per 32 values.
const SCALES: PlaneLayout = plane("scales", DType::F16, 1);

/// The f16 block scale and minimum (d, m), a pair per 32 values.
const SCALE_MINS: PlaneLayout = plane("scale_mins", DType::F16, 2);

/// The 4-bit values as the Q4_0 plane holds them (8 in 4 bytes).
const NIBBLES: PlaneLayout = plane("quants", DType::I8, 16);

/// Bit 4 of each value of a 5-bit format: byte g of a block holds the bits
/// of values 8g .. 8g + 7 (bit j for value 8g + j), the block's `qh` as
/// GGML stores it (little-endian, bit i for value i).
const HIGH: PlaneLayout = plane("high", DType::I8, 4);

// The legacy formats: a block is its header fields (d, then m and qh where
// the format has them), each kept as one plane in that order after the
// quants, then its quants: Q8_0's int8 values in order, the others' nibbles
// regrouped (`regroup_nibbles`).

// Q8_0: `{ d: f16, qs: [i8; 32] }`.
static Q8_0: Format = Format {
    planes: &[plane("quants", DType::I8, 32), SCALES],
    split: |block, planes| split_legacy(&Q8_0, block, planes),
    join: |parts, out| join_legacy(&Q8_0, parts, out),
};

// Q4_0: `{ d: f16, qs: [u8; 16] }`, byte j holding value j in its low nibble
// and value j + 16 in its high nibble (bias 8).
static Q4_0: Format = Format {
    planes: &[NIBBLES, SCALES],
    split: |block, planes| split_legacy(&Q4_0, block, planes),
    join: |parts, out| join_legacy(&Q4_0, parts, out),
};

// Q4_1: `{ d: f16, m: f16, qs: [u8; 16] }`, nibbles as in Q4_0 (no bias),
// value = d·q + m.
static Q4_1: Format = Format {
    planes: &[NIBBLES, SCALE_MINS],
    split: |block, planes| split_legacy(&Q4_1, block, planes),
    join: |parts, out| join_legacy(&Q4_1, parts, out),
};

// Q5_0: `{ d: f16, qh: [u8; 4], qs: [u8; 16] }`, the low 4 bits as Q4_0's
// nibbles and bit 4 of value i in bit i of qh, value = d·(q − 16).
static Q5_0: Format = Format {
    planes: &[NIBBLES, SCALES, HIGH],
    split: |block, planes| split_legacy(&Q5_0, block, planes),
    join: |parts, out| join_legacy(&Q5_0, parts, out),
};

// Q5_1: `{ d: f16, m: f16, qh: [u8; 4], qs: [u8; 16] }`, value = d·q + m.
static Q5_1: Format = Format {
    planes: &[NIBBLES, SCALE_MINS, HIGH],
    split: |block, planes| split_legacy(&Q5_1, block, planes),
    join: |parts, out| join_legacy(&Q5_1, parts, out),
};

/// Whether a legacy format's quants are nibbles (all but Q8_0's bytes).
fn nibbles(format: &Format) -> bool {
    format.planes[0].per_block == 16
}

/// Appends a legacy block to its planes: the header fields to planes 1..
/// in order, then the quants.
fn split_legacy(format: &Format, block: &[u8], planes: &mut [Vec<u8>]) {
    let mut at = 0;
    for (plane, layout) in planes[1..].iter_mut().zip(&format.planes[1..]) {
        let size = layout.block_bytes();
        plane.extend_from_slice(&block[at..at + size]);
        at += size;
    }
    if nibbles(format) {
        regroup_nibbles(&block[at..], &mut planes[0]);
    } else {
        planes[0].extend_from_slice(&block[at..]);
    }
}

/// The inverse of [`split_legacy`].
fn join_legacy(format: &Format, parts: &[&[u8]], out: &mut Vec<u8>) {
    for part in &parts[1..] {
        out.extend_from_slice(part);
    }
    if nibbles(format) {
        ungroup_nibbles(parts[0], out);
    } else {
        out.extend_from_slice(parts[0]);
    }
}

/// GGML's 16 nibble bytes of a 32-value block (value j low, j + 16 high)
/// as the quant plane's 4 groups of 8 values (byte j of a group: value j
/// low, j + 4 high).
pub(super) fn regroup_nibbles(qs: &[u8], out: &mut Vec<u8>) {
    let value = |v: usize| if v < 16 { qs[v] & 15 } else { qs[v - 16] >> 4 };
    for group in 0..4 {
        for j in 0..4 {
            let v = 8 * group + j;
            out.push(value(v) | value(v + 4) << 4);
        }
    }
}

/// The inverse of [`regroup_nibbles`].
pub(super) fn ungroup_nibbles(grouped: &[u8], out: &mut Vec<u8>) {
    let mut values = [0u8; 32];
    for (k, &byte) in grouped.iter().enumerate() {
        let (group, j) = (k / 4, k % 4);
        values[8 * group + j] = byte & 15;
        values[8 * group + j + 4] = byte >> 4;
    }
    for j in 0..16 {
        out.push(values[j] | values[j + 16] << 4);
    }
}
