//! Element and block types of tensor data, with the GGML type ids GGUF uses.

use serde::{Deserialize, Serialize};

/// A tensor's storage type: plain scalars or a GGML quantisation block format.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    I16,
    I32,
    I64,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    IQ1_M,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// (dtype, GGML type id, elements per block, bytes per block)
const TABLE: &[(DType, u32, u64, u64)] = &[
    (DType::F32, 0, 1, 4),
    (DType::F16, 1, 1, 2),
    (DType::Q4_0, 2, 32, 18),
    (DType::Q4_1, 3, 32, 20),
    (DType::Q5_0, 6, 32, 22),
    (DType::Q5_1, 7, 32, 24),
    (DType::Q8_0, 8, 32, 34),
    (DType::Q8_1, 9, 32, 36),
    (DType::Q2_K, 10, 256, 84),
    (DType::Q3_K, 11, 256, 110),
    (DType::Q4_K, 12, 256, 144),
    (DType::Q5_K, 13, 256, 176),
    (DType::Q6_K, 14, 256, 210),
    (DType::Q8_K, 15, 256, 292),
    (DType::IQ2_XXS, 16, 256, 66),
    (DType::IQ2_XS, 17, 256, 74),
    (DType::IQ3_XXS, 18, 256, 98),
    (DType::IQ1_S, 19, 256, 50),
    (DType::IQ4_NL, 20, 32, 18),
    (DType::IQ3_S, 21, 256, 110),
    (DType::IQ2_S, 22, 256, 82),
    (DType::IQ4_XS, 23, 256, 136),
    (DType::I8, 24, 1, 1),
    (DType::I16, 25, 1, 2),
    (DType::I32, 26, 1, 4),
    (DType::I64, 27, 1, 8),
    (DType::F64, 28, 1, 8),
    (DType::IQ1_M, 29, 256, 56),
    (DType::BF16, 30, 1, 2),
    (DType::TQ1_0, 34, 256, 54),
    (DType::TQ2_0, 35, 256, 66),
    (DType::MXFP4, 39, 32, 17),
];

impl DType {
    fn entry(self) -> &'static (DType, u32, u64, u64) {
        TABLE
            .iter()
            .find(|e| e.0 == self)
            .expect("every DType has a table entry")
    }

    /// The GGML type id stored in GGUF tensor infos.
    pub fn ggml_type_id(self) -> u32 {
        self.entry().1
    }

    pub fn from_ggml_type_id(id: u32) -> Option<DType> {
        TABLE.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    /// Number of elements one block holds (1 for plain scalar types).
    pub fn block_elements(self) -> u64 {
        self.entry().2
    }

    /// Bytes one block occupies.
    pub fn block_bytes(self) -> u64 {
        self.entry().3
    }

    pub fn is_quantized(self) -> bool {
        self.block_elements() > 1
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    /// Bytes taken by `elements` values, or `None` if the count is not a whole
    /// number of blocks or the size overflows.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let per = self.block_elements();
        if !elements.is_multiple_of(per) {
            return None;
        }
        (elements / per).checked_mul(self.block_bytes())
    }

    /// The name llama.cpp and gguf-py use (`Q4_K`, `BF16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F64 => "F64",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::I32 => "I32",
            DType::I64 => "I64",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q8_1 => "Q8_1",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::Q8_K => "Q8_K",
            DType::IQ2_XXS => "IQ2_XXS",
            DType::IQ2_XS => "IQ2_XS",
            DType::IQ3_XXS => "IQ3_XXS",
            DType::IQ1_S => "IQ1_S",
            DType::IQ4_NL => "IQ4_NL",
            DType::IQ3_S => "IQ3_S",
            DType::IQ2_S => "IQ2_S",
            DType::IQ4_XS => "IQ4_XS",
            DType::IQ1_M => "IQ1_M",
            DType::TQ1_0 => "TQ1_0",
            DType::TQ2_0 => "TQ2_0",
            DType::MXFP4 => "MXFP4",
        }
    }

    /// Parses a dtype name as users write it (`q8_0`, `bf16`, `F32`).
    pub fn parse(name: &str) -> Option<DType> {
        TABLE
            .iter()
            .map(|e| e.0)
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for e in TABLE {
            assert_eq!(DType::from_ggml_type_id(e.1), Some(e.0));
            assert_eq!(DType::parse(&e.0.name().to_lowercase()), Some(e.0));
        }
        let mut ids: Vec<u32> = TABLE.iter().map(|e| e.1).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), TABLE.len());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(DType::Q8_0.bytes_for(64), Some(68));
        assert_eq!(DType::Q8_0.bytes_for(63), None);
        assert_eq!(DType::BF16.bytes_for(3), Some(6));
        assert_eq!(DType::F32.bytes_for(u64::MAX), None);
    }
}
