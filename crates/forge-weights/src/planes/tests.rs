use super::*;
use crate::{dequantize, quantize};

/// The value planes say element `i` has, decoded from the documented plane
/// order (not from the GGML block).
type Decode = fn(&Planes, usize) -> f32;

/// Formats split into planes, and how to read their values back.
fn formats() -> Vec<(DType, Decode)> {
    vec![
        (DType::Q8_0, |p, i| {
            p.planes[0][i] as i8 as f32 * half_at(&p.planes[1], i / 32)
        }),
        (DType::Q4_0, |p, i| {
            (nibble(&p.planes[0], i) as f32 - 8.0) * half_at(&p.planes[1], i / 32)
        }),
        (DType::Q4_1, |p, i| {
            let (d, m) = (
                half_at(&p.planes[1], 2 * (i / 32)),
                half_at(&p.planes[1], 2 * (i / 32) + 1),
            );
            d * nibble(&p.planes[0], i) as f32 + m
        }),
        (DType::Q5_0, |p, i| {
            let q = nibble(&p.planes[0], i) | high_bit(&p.planes[2], i) << 4;
            half_at(&p.planes[1], i / 32) * (q as f32 - 16.0)
        }),
        (DType::Q5_1, |p, i| {
            let (d, m) = (
                half_at(&p.planes[1], 2 * (i / 32)),
                half_at(&p.planes[1], 2 * (i / 32) + 1),
            );
            let q = nibble(&p.planes[0], i) | high_bit(&p.planes[2], i) << 4;
            d * q as f32 + m
        }),
    ]
}

/// Element `i` of a plane of f16s.
fn half_at(plane: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([plane[2 * i], plane[2 * i + 1]]).to_f32()
}

/// Value `i` of a nibble plane: groups of 8 values in 4 bytes, byte j
/// holding values j (low) and j + 4 (high).
fn nibble(plane: &[u8], i: usize) -> u8 {
    let (group, k) = (i / 8, i % 8);
    let byte = plane[4 * group + k % 4];
    if k < 4 {
        byte & 15
    } else {
        byte >> 4
    }
}

/// Bit 4 of value `i` of a high-bit plane: byte i / 8, bit i % 8.
fn high_bit(plane: &[u8], i: usize) -> u8 {
    (plane[i / 8] >> (i % 8)) & 1
}

fn blocks(dtype: DType, seed: u32) -> Vec<u8> {
    let values: Vec<f32> = (0..96u32)
        .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let mut bytes = vec![0u8; dtype.bytes_for(96).unwrap() as usize];
    quantize(dtype, &values, &mut bytes).unwrap();
    bytes
}

#[test]
fn split_then_join_gives_the_blocks_back_bit_for_bit() {
    for (dtype, _) in formats() {
        let bytes = blocks(dtype, 7);
        let planes = split(dtype, &bytes).unwrap();
        for (plane, layout) in planes.planes.iter().zip(layout(dtype).unwrap()) {
            let elements = plane_elements(dtype, layout, 96);
            assert_eq!(
                plane.len() as u64,
                elements * layout.element.block_bytes(),
                "{dtype} {}",
                layout.name
            );
        }
        assert_eq!(join(dtype, &planes).unwrap(), bytes, "{dtype}");
    }
}

#[test]
fn any_block_bytes_survive_split_and_join() {
    // Arbitrary bytes (NaN scales, every bit pattern), not only what quantise writes.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for (dtype, _) in formats() {
        let bytes: Vec<u8> = (0..5 * dtype.block_bytes())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let planes = split(dtype, &bytes).unwrap();
        assert_eq!(join(dtype, &planes).unwrap(), bytes, "{dtype}");
    }
}

#[test]
fn the_planes_hold_the_values_in_the_documented_order() {
    for (dtype, value) in formats() {
        let bytes = blocks(dtype, 11);
        let mut want = vec![0f32; 96];
        dequantize(dtype, &bytes, &mut want).unwrap();
        let planes = split(dtype, &bytes).unwrap();
        for (i, &w) in want.iter().enumerate() {
            assert_eq!(value(&planes, i), w, "{dtype} value {i}");
        }
    }
}

#[test]
fn other_dtypes_and_partial_blocks_are_refused() {
    assert!(split(DType::F16, &[0; 64]).is_err());
    assert!(split(DType::Q8_0, &[0; 35]).is_err());
    let planes = Planes {
        planes: vec![vec![0; 31], vec![0; 2]],
    };
    assert!(join(DType::Q8_0, &planes).is_err());
    let missing = Planes {
        planes: vec![vec![0; 32]],
    };
    assert!(join(DType::Q8_0, &missing).is_err());
}
