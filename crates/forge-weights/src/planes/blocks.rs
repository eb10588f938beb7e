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

const fn plane(name: &'static str, element: DType, per_block: u64) -> PlaneLayout {
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

// Q8_0: `{ d: f16, qs: [i8; 32] }`. Quants: the int8 values in order.

static Q8_0: Format = Format {
    planes: &[plane("quants", DType::I8, 32), SCALES],
    split: |block, planes| {
        planes[1].extend_from_slice(&block[..2]);
        planes[0].extend_from_slice(&block[2..]);
    },
    join: |parts, out| {
        out.extend_from_slice(parts[1]);
        out.extend_from_slice(parts[0]);
    },
};

// Q4_0: `{ d: f16, qs: [u8; 16] }`, byte j holding value j in its low nibble
// and value j + 16 in its high nibble (bias 8). Quants: the 4-bit values in
// groups of 8 in 4 bytes, byte j of a group holding value j in its low
// nibble and value j + 4 in its high nibble, so `uchar4 & 15` and
// `uchar4 >> 4` are four consecutive values each.

static Q4_0: Format = Format {
    planes: &[NIBBLES, SCALES],
    split: |block, planes| {
        planes[1].extend_from_slice(&block[..2]);
        regroup_nibbles(&block[2..], &mut planes[0]);
    },
    join: |parts, out| {
        out.extend_from_slice(parts[1]);
        ungroup_nibbles(parts[0], out);
    },
};

// Q4_1: `{ d: f16, m: f16, qs: [u8; 16] }`, nibbles as in Q4_0 (no bias),
// value = d·q + m. Quants as Q4_0's; scale_mins: (d, m).

static Q4_1: Format = Format {
    planes: &[NIBBLES, SCALE_MINS],
    split: |block, planes| {
        planes[1].extend_from_slice(&block[..4]);
        regroup_nibbles(&block[4..], &mut planes[0]);
    },
    join: |parts, out| {
        out.extend_from_slice(parts[1]);
        ungroup_nibbles(parts[0], out);
    },
};

// Q5_0: `{ d: f16, qh: [u8; 4], qs: [u8; 16] }`, the low 4 bits as Q4_0's
// nibbles and bit 4 of value i in bit i of qh, value = d·(q − 16). Quants:
// the low nibbles as Q4_0's; scales: d; high: qh.

static Q5_0: Format = Format {
    planes: &[NIBBLES, SCALES, HIGH],
    split: |block, planes| {
        planes[1].extend_from_slice(&block[..2]);
        planes[2].extend_from_slice(&block[2..6]);
        regroup_nibbles(&block[6..], &mut planes[0]);
    },
    join: |parts, out| {
        out.extend_from_slice(parts[1]);
        out.extend_from_slice(parts[2]);
        ungroup_nibbles(parts[0], out);
    },
};

// Q5_1: `{ d: f16, m: f16, qh: [u8; 4], qs: [u8; 16] }`, value = d·q + m.
// Quants as Q5_0's; scale_mins: (d, m); high: qh.

static Q5_1: Format = Format {
    planes: &[NIBBLES, SCALE_MINS, HIGH],
    split: |block, planes| {
        planes[1].extend_from_slice(&block[..4]);
        planes[2].extend_from_slice(&block[4..8]);
        regroup_nibbles(&block[8..], &mut planes[0]);
    },
    join: |parts, out| {
        out.extend_from_slice(parts[1]);
        out.extend_from_slice(parts[2]);
        ungroup_nibbles(parts[0], out);
    },
};

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
