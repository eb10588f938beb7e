//! The weight formats the linear-algebra kernels (`matvec`, `matmul`,
//! `embedding`) read, one entry per format: its template name, the values a
//! lane loads as one chunk of a row, and the MSL types of the planes bound
//! beside a block format's quants (`forge_weights::planes::layout` gives
//! their order and sizes). The template side of each format is its section
//! of `templates/metal/weight_formats.metal.j2`.

use forge_ir::DType;
use forge_weights::planes;

/// One format the kernels read.
#[derive(Debug)]
pub struct WeightFormat {
    pub dtype: DType,
    /// The templates' `dtype` parameter.
    pub param: &'static str,
    /// Values per lane chunk for block formats; `None` for float formats,
    /// whose chunks are 4 values, or 1 when a row is not a multiple of 4.
    chunk: Option<u64>,
    /// MSL element types of the planes after the quants, in
    /// `forge_weights::planes::layout` order (empty for float formats).
    plane_types: &'static [&'static str],
}

/// Every format the kernels read.
pub const FORMATS: [WeightFormat; 11] = [
    float("f32", DType::F32),
    float("f16", DType::F16),
    float("bf16", DType::BF16),
    // Q8_0: 4 int8 values (a char4) per chunk; the f16 block scale.
    WeightFormat {
        dtype: DType::Q8_0,
        param: "q8_0",
        chunk: Some(4),
        plane_types: &["half"],
    },
    // Q4_0: 8 nibbles (a uchar4) per chunk; the f16 block scale.
    WeightFormat {
        dtype: DType::Q4_0,
        param: "q4_0",
        chunk: Some(8),
        plane_types: &["half"],
    },
    // Q4_1: 8 nibbles per chunk; the block's (d, m) as a half2.
    WeightFormat {
        dtype: DType::Q4_1,
        param: "q4_1",
        chunk: Some(8),
        plane_types: &["half2"],
    },
    // Q5_0: 8 nibbles per chunk; the f16 block scale; a byte of fifth bits per chunk.
    WeightFormat {
        dtype: DType::Q5_0,
        param: "q5_0",
        chunk: Some(8),
        plane_types: &["half", "uchar"],
    },
    // Q5_1: 8 nibbles per chunk; (d, m) as a half2; a byte of fifth bits per chunk.
    WeightFormat {
        dtype: DType::Q5_1,
        param: "q5_1",
        chunk: Some(8),
        plane_types: &["half2", "uchar"],
    },
    // K-quants (forge_weights::planes::k_quants): 8 nibbles per chunk; Q4_K
    // and Q5_K a uint4 of d, dmin and packed 6-bit scales/mins per
    // 256-value super-block (Q5_K: a byte of fifth bits per chunk); Q6_K an
    // int8 scale per 16 values, the f16 d per super-block and a ushort of
    // top bits per chunk.
    WeightFormat {
        dtype: DType::Q4_K,
        param: "q4_k",
        chunk: Some(8),
        plane_types: &["uint4"],
    },
    WeightFormat {
        dtype: DType::Q5_K,
        param: "q5_k",
        chunk: Some(8),
        plane_types: &["uint4", "uchar"],
    },
    WeightFormat {
        dtype: DType::Q6_K,
        param: "q6_k",
        chunk: Some(8),
        plane_types: &["char", "half", "ushort"],
    },
];

/// The dtypes of [`FORMATS`], in order.
pub const GPU_WEIGHT_DTYPES: [DType; FORMATS.len()] = {
    let mut dtypes = [DType::F32; FORMATS.len()];
    let mut i = 0;
    while i < FORMATS.len() {
        dtypes[i] = FORMATS[i].dtype;
        i += 1;
    }
    dtypes
};

const fn float(param: &'static str, dtype: DType) -> WeightFormat {
    WeightFormat {
        dtype,
        param,
        chunk: None,
        plane_types: &[],
    }
}

/// The format of `dtype`, if a kernel reads it.
pub fn format(dtype: DType) -> Option<&'static WeightFormat> {
    FORMATS.iter().find(|f| f.dtype == dtype)
}

/// The format of a dtype a kernel is asked to read.
///
/// # Panics
/// When no kernel reads `dtype` (the planner converts such weights first).
pub fn expect(dtype: DType) -> &'static WeightFormat {
    format(dtype).unwrap_or_else(|| {
        panic!(
            "no kernel reads {dtype} weights (supported: {})",
            names(", ")
        )
    })
}

/// The formats' template names (`f32`, `q8_0`), joined by `separator`.
pub fn names(separator: &str) -> String {
    let names: Vec<&str> = FORMATS.iter().map(|f| f.param).collect();
    names.join(separator)
}

/// The template name of a weight dtype the kernels read.
pub fn param(dtype: DType) -> &'static str {
    expect(dtype).param
}

/// Values one lane loads as a chunk of a row of `cols` values.
pub fn chunk_values(dtype: DType, cols: u64) -> u64 {
    match expect(dtype).chunk {
        Some(values) => values,
        None if cols.is_multiple_of(4) => 4,
        None => 1,
    }
}

/// Where a kernel family binds the planes after the quants, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaneSlots {
    /// `matvec` and `matmul`: 5, then indices no other binding of theirs uses.
    Linear,
    /// `embedding`: 3, 4, 5, 6.
    Embedding,
}

impl PlaneSlots {
    fn indices(self) -> &'static [u32] {
        match self {
            PlaneSlots::Linear => &[5, 9, 10, 11],
            PlaneSlots::Embedding => &[3, 4, 5, 6],
        }
    }
}

/// One plane a kernel binds beside the quants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneBinding {
    /// The plane's name (`scales`): the template's `all_scales`, the
    /// weights file's `<tensor>.scales`.
    pub name: &'static str,
    pub buffer: u32,
}

/// The planes of `dtype` after its quants and the buffer indices `slots`
/// binds them at (none for float formats).
pub fn plane_bindings(dtype: DType, slots: PlaneSlots) -> Vec<PlaneBinding> {
    let Some(layout) = planes::layout(dtype) else {
        return Vec::new();
    };
    let extra = &layout[1..];
    assert!(
        extra.len() <= slots.indices().len(),
        "{dtype}: more planes than {slots:?} has buffer indices for"
    );
    extra
        .iter()
        .zip(slots.indices())
        .map(|(plane, &buffer)| PlaneBinding {
            name: plane.name,
            buffer,
        })
        .collect()
}

/// The templates' `planes` parameter for rows of `cols` values of `dtype`:
/// each plane after the quants with its MSL type, elements per row and
/// buffer index.
pub fn plane_params(dtype: DType, cols: u64, slots: PlaneSlots) -> serde_json::Value {
    let format = expect(dtype);
    let Some(layout) = planes::layout(dtype) else {
        return serde_json::json!([]);
    };
    let bindings = plane_bindings(dtype, slots);
    let params: Vec<serde_json::Value> = layout[1..]
        .iter()
        .zip(format.plane_types)
        .zip(bindings)
        .map(|((plane, msl_type), binding)| {
            serde_json::json!({
                "name": plane.name,
                "type": msl_type,
                "per_row": planes::plane_elements(dtype, plane, cols) * plane.element.block_bytes()
                    / msl_bytes(msl_type),
                "buffer": binding.buffer,
            })
        })
        .collect();
    serde_json::Value::Array(params)
}

/// Bytes of one element of an MSL plane type (`uchar`, `half2`, `uint4`).
fn msl_bytes(msl_type: &str) -> u64 {
    let scalar = msl_type.trim_end_matches(['2', '3', '4']);
    let lanes = match msl_type.len() - scalar.len() {
        0 => 1,
        _ => u64::from(msl_type.as_bytes()[msl_type.len() - 1] - b'0'),
    };
    let bytes = match scalar {
        "char" | "uchar" => 1,
        "short" | "ushort" | "half" => 2,
        "int" | "uint" | "float" => 4,
        other => panic!("no plane type {other}"),
    };
    bytes * lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_format_types_exactly_the_planes_forge_weights_writes() {
        for f in &FORMATS {
            let extra = planes::layout(f.dtype).map_or(0, |l| l.len() - 1);
            assert_eq!(f.plane_types.len(), extra, "{}", f.dtype);
            assert_eq!(f.chunk.is_some(), f.dtype.is_quantized(), "{}", f.dtype);
        }
    }

    #[test]
    fn planes_are_bound_after_the_families_other_buffers() {
        let q4 = plane_params(DType::Q4_0, 576, PlaneSlots::Linear);
        assert_eq!(
            q4,
            serde_json::json!([{"name": "scales", "type": "half", "per_row": 18, "buffer": 5}])
        );
        let q8 = plane_bindings(DType::Q8_0, PlaneSlots::Embedding);
        assert_eq!(
            q8,
            [PlaneBinding {
                name: "scales",
                buffer: 3
            }]
        );
        assert!(plane_bindings(DType::F16, PlaneSlots::Linear).is_empty());
        let q5 = plane_params(DType::Q5_1, 64, PlaneSlots::Linear);
        assert_eq!(
            q5,
            serde_json::json!([
                {"name": "scale_mins", "type": "half2", "per_row": 2, "buffer": 5},
                {"name": "high", "type": "uchar", "per_row": 8, "buffer": 9},
            ])
        );
    }

    #[test]
    fn chunks_follow_the_format() {
        assert_eq!(chunk_values(DType::Q4_0, 64), 8);
        assert_eq!(chunk_values(DType::Q8_0, 64), 4);
        assert_eq!(chunk_values(DType::F32, 64), 4);
        assert_eq!(chunk_values(DType::BF16, 13), 1);
    }

    /// K-quant planes are indexed per super-block (uint4, half), per
    /// 16-value sub-block (char) or per chunk (uchar, ushort) of a row.
    #[test]
    fn k_quant_planes_count_their_msl_elements_per_row() {
        let q4 = plane_params(DType::Q4_K, 512, PlaneSlots::Linear);
        assert_eq!(
            q4,
            serde_json::json!([{"name": "scales", "type": "uint4", "per_row": 2, "buffer": 5}])
        );
        let q6 = plane_params(DType::Q6_K, 512, PlaneSlots::Embedding);
        assert_eq!(
            q6,
            serde_json::json!([
                {"name": "scales", "type": "char", "per_row": 32, "buffer": 3},
                {"name": "d", "type": "half", "per_row": 2, "buffer": 4},
                {"name": "high", "type": "ushort", "per_row": 64, "buffer": 5},
            ])
        );
        assert_eq!(chunk_values(DType::Q5_K, 256), 8);
    }
}
