//! A minimal GGUF v3 writer for the tests: string and u32 metadata, tensors
//! laid out at `general.alignment`, the file padded to 16 KiB pages as
//! forge's export does. Written here, not taken from forge-weights, so the
//! reader is checked against bytes built independently of forge's writer.

pub const GGML_F32: u32 = 0;
pub const GGML_Q8_0: u32 = 8;

pub enum Meta<'a> {
    Str(&'a str),
    U32(u32),
}

pub struct Tensor<'a> {
    pub name: &'a str,
    /// GGUF order: innermost dimension first.
    pub dims: &'a [u64],
    pub type_id: u32,
    pub data: &'a [u8],
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The file's bytes.
pub fn gguf(metadata: &[(&str, Meta)], tensors: &[Tensor], alignment: usize) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut out, key);
        match value {
            Meta::Str(s) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                string(&mut out, s);
            }
            Meta::U32(v) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let mut offset = 0usize;
    for t in tensors {
        string(&mut out, t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.type_id.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + t.data.len()).next_multiple_of(alignment);
    }
    out.resize(out.len().next_multiple_of(alignment), 0);
    for t in tensors {
        out.extend_from_slice(t.data);
        out.resize(out.len().next_multiple_of(alignment), 0);
    }
    out.resize(out.len().next_multiple_of(16384), 0);
    out
}
