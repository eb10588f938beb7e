//! Streaming GGUF v3 writer: metadata and tensor infos are collected first,
//! then tensor data is written one tensor at a time, so a whole model is never
//! held in memory.

use std::io::{self, Write};

use forge_ir::DType;

use super::{GgufArray, GgufValue, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION};

/// GGML tensors have at most four dimensions; readers (llama.cpp) reject more.
const MAX_DIMS: usize = 4;

struct PlannedTensor {
    name: String,
    dims: Vec<u64>,
    dtype: DType,
    n_bytes: u64,
    /// Offset from the start of the data section.
    offset: u64,
}

/// Writes one GGUF v3 file.
///
/// Usage: [`add_metadata`](Self::add_metadata) and
/// [`add_tensor`](Self::add_tensor) for everything, then
/// [`write_tensor_data`](Self::write_tensor_data) for each tensor in the order
/// it was added, then [`finish`](Self::finish). The header is written on the
/// first data write (or by [`write_header`](Self::write_header)).
/// Each tensor starts at a multiple of the alignment and the file is padded to
/// one too, so a page-aligned mmap of it can back GPU buffers without copies.
pub struct GgufWriter<W: Write> {
    out: W,
    alignment: u64,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<PlannedTensor>,
    /// Bytes of tensor data planned so far, including padding.
    data_len: u64,
    header_written: bool,
    next_tensor: usize,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn padding_for(len: u64, alignment: u64) -> u64 {
    (alignment - len % alignment) % alignment
}

impl<W: Write> GgufWriter<W> {
    /// A writer with the GGUF default alignment of 32 bytes.
    pub fn new(out: W) -> Self {
        GgufWriter {
            out,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
            data_len: 0,
            header_written: false,
            next_tensor: 0,
        }
    }

    /// A writer whose data section and tensors are aligned to `alignment`
    /// bytes (a power of two that fits in u32; forge uses 16384 so Metal can
    /// wrap the mapped file). A non-default value is recorded as
    /// `general.alignment`, which is how readers learn it.
    pub fn with_alignment(out: W, alignment: u64) -> io::Result<Self> {
        if !alignment.is_power_of_two() || alignment > u64::from(u32::MAX) {
            return Err(invalid(format!(
                "GGUF alignment {alignment} is not a power of two that fits in u32"
            )));
        }
        let mut w = Self::new(out);
        w.alignment = alignment;
        if alignment != DEFAULT_ALIGNMENT {
            w.metadata
                .push((ALIGNMENT_KEY.to_string(), GgufValue::U32(alignment as u32)));
        }
        Ok(w)
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Adds one metadata entry. Keys must be unique; `general.alignment` is
    /// set through [`with_alignment`](Self::with_alignment) instead so the
    /// value and the layout cannot disagree.
    pub fn add_metadata(&mut self, key: &str, value: GgufValue) -> io::Result<()> {
        if self.header_written {
            return Err(invalid(format!(
                "metadata '{key}' added after the GGUF header was written"
            )));
        }
        if key == ALIGNMENT_KEY {
            return Err(invalid(format!(
                "'{ALIGNMENT_KEY}' is set with GgufWriter::with_alignment, not as metadata"
            )));
        }
        if self.metadata.iter().any(|(k, _)| k == key) {
            return Err(invalid(format!("duplicate GGUF metadata key '{key}'")));
        }
        check_value(key, &value)?;
        self.metadata.push((key.to_string(), value));
        Ok(())
    }

    /// Plans a tensor with dims in GGML order (`dims[0]` is the contiguous
    /// row length) and returns the byte length its data must have.
    pub fn add_tensor(&mut self, name: &str, dims: &[u64], dtype: DType) -> io::Result<u64> {
        if self.header_written {
            return Err(invalid(format!(
                "tensor '{name}' added after the GGUF header was written"
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(invalid(format!("duplicate GGUF tensor name '{name}'")));
        }
        if dims.len() > MAX_DIMS {
            return Err(invalid(format!(
                "tensor '{name}' has {} dimensions; GGUF allows at most {MAX_DIMS}",
                dims.len()
            )));
        }
        let row = dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(dtype.block_elements()) {
            return Err(invalid(format!(
                "tensor '{name}': row length {row} is not a multiple of the {dtype} block size {}",
                dtype.block_elements()
            )));
        }
        let n_bytes = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|elements| dtype.bytes_for(elements))
            .ok_or_else(|| invalid(format!("tensor '{name}': size of {dims:?} overflows u64")))?;
        let padded = n_bytes
            .checked_add(padding_for(n_bytes, self.alignment))
            .and_then(|p| p.checked_add(self.data_len))
            .ok_or_else(|| invalid(format!("tensor '{name}': file size overflows u64")))?;
        self.tensors.push(PlannedTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            n_bytes,
            offset: self.data_len,
        });
        self.data_len = padded;
        Ok(n_bytes)
    }

    /// Writes magic, counts, metadata, tensor infos and the padding before
    /// the data section. Called automatically by the first data write.
    pub fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Err(invalid("GGUF header written twice".to_string()));
        }
        let mut buf = Vec::new();
        buf.extend_from_slice(&GGUF_MAGIC);
        buf.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut buf, key);
            buf.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut buf, value);
        }
        for t in &self.tensors {
            put_string(&mut buf, &t.name);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            buf.extend_from_slice(&t.dtype.ggml_type_id().to_le_bytes());
            buf.extend_from_slice(&t.offset.to_le_bytes());
        }
        let pad = padding_for(buf.len() as u64, self.alignment);
        buf.resize(buf.len() + pad as usize, 0);
        self.out.write_all(&buf)?;
        self.header_written = true;
        Ok(())
    }

    /// Writes the data of the next planned tensor; `name` must be that tensor
    /// and `bytes` exactly its size.
    pub fn write_tensor_data(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let Some(t) = self.tensors.get(self.next_tensor) else {
            return Err(invalid(format!(
                "data for tensor '{name}' written, but all {} planned tensors are already written",
                self.tensors.len()
            )));
        };
        if t.name != name {
            return Err(invalid(format!(
                "data for tensor '{name}' written where '{}' comes next",
                t.name
            )));
        }
        if bytes.len() as u64 != t.n_bytes {
            return Err(invalid(format!(
                "tensor '{name}': {} bytes of data given, its {} shape {:?} needs {}",
                bytes.len(),
                t.dtype,
                t.dims,
                t.n_bytes
            )));
        }
        let pad = padding_for(t.n_bytes, self.alignment);
        if !self.header_written {
            self.write_header()?;
        }
        self.out.write_all(bytes)?;
        write_zeros(&mut self.out, pad)?;
        self.next_tensor += 1;
        Ok(())
    }

    /// Checks every planned tensor was written, flushes and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.header_written {
            self.write_header()?;
        }
        if let Some(t) = self.tensors.get(self.next_tensor) {
            return Err(invalid(format!(
                "GGUF file finished before the data of tensor '{}' was written",
                t.name
            )));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_zeros<W: Write>(out: &mut W, n: u64) -> io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut left = n;
    while left > 0 {
        let chunk = left.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..chunk])?;
        left -= chunk as u64;
    }
    Ok(())
}

/// Rejects arrays whose items do not all have the declared item type, which
/// would otherwise produce a file no reader can parse.
fn check_value(key: &str, value: &GgufValue) -> io::Result<()> {
    if let GgufValue::Array(GgufArray { item_type, items }) = value {
        for (i, item) in items.iter().enumerate() {
            if item.value_type() != *item_type {
                return Err(invalid(format!(
                    "metadata '{key}': array item {i} is {}, the array holds {}",
                    item.type_name(),
                    item_type.name()
                )));
            }
            check_value(key, item)?;
        }
    }
    Ok(())
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => buf.push(*v),
        GgufValue::I8(v) => buf.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => buf.push(u8::from(*v)),
        GgufValue::String(s) => put_string(buf, s),
        GgufValue::Array(a) => {
            buf.extend_from_slice(&(a.item_type as u32).to_le_bytes());
            buf.extend_from_slice(&(a.items.len() as u64).to_le_bytes());
            for item in &a.items {
                put_value(buf, item);
            }
        }
        GgufValue::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => buf.extend_from_slice(&v.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufValueType;

    #[test]
    fn layout_is_aligned_and_padded() {
        let mut w = GgufWriter::with_alignment(Vec::new(), 64).unwrap();
        w.add_metadata("a", GgufValue::U8(1)).unwrap();
        assert_eq!(w.add_tensor("t0", &[3], DType::F32).unwrap(), 12);
        assert_eq!(w.add_tensor("t1", &[32, 2], DType::Q8_0).unwrap(), 68);
        w.write_tensor_data("t0", &[1; 12]).unwrap();
        w.write_tensor_data("t1", &[2; 68]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 64, 0);
        assert_eq!(&bytes[..4], b"GGUF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
        // t1 starts one aligned block after t0, at the end of the file minus its padded size.
        let t1_start = bytes.len() - 128;
        assert_eq!(&bytes[t1_start..t1_start + 68], &[2; 68][..]);
        assert!(bytes[t1_start + 68..].iter().all(|&b| b == 0));
        assert_eq!(&bytes[t1_start - 64..t1_start - 52], &[1; 12][..]);
    }

    #[test]
    fn misuse_is_an_error() {
        assert!(GgufWriter::with_alignment(Vec::new(), 24).is_err());
        assert!(GgufWriter::with_alignment(Vec::new(), 1 << 33).is_err());
        let mut w = GgufWriter::new(Vec::new());
        w.add_metadata("k", GgufValue::Bool(true)).unwrap();
        assert!(w.add_metadata("k", GgufValue::Bool(false)).is_err());
        assert!(w.add_metadata(ALIGNMENT_KEY, GgufValue::U32(64)).is_err());
        let bad = GgufValue::Array(GgufArray {
            item_type: GgufValueType::U8,
            items: vec![GgufValue::U8(1), GgufValue::I8(1)],
        });
        assert!(w.add_metadata("bad", bad).is_err());
        assert!(w.add_tensor("q", &[33], DType::Q8_0).is_err());
        assert!(w.add_tensor("big", &[u64::MAX, 2], DType::F32).is_err());
        assert!(w.add_tensor("five", &[1, 1, 1, 1, 1], DType::F32).is_err());
        w.add_tensor("a", &[4], DType::F16).unwrap();
        w.add_tensor("b", &[4], DType::F16).unwrap();
        assert!(w.add_tensor("a", &[4], DType::F16).is_err());
        assert!(w.write_tensor_data("b", &[0; 8]).is_err());
        assert!(w.write_tensor_data("a", &[0; 7]).is_err());
        w.write_tensor_data("a", &[0; 8]).unwrap();
        assert!(w.add_tensor("c", &[4], DType::F16).is_err());
        assert!(w.add_metadata("late", GgufValue::U8(0)).is_err());
        let err = match w.finish() {
            Err(e) => e.to_string(),
            Ok(_) => panic!("finish must fail while 'b' is unwritten"),
        };
        assert!(err.contains("'b'"), "{err}");
    }
}
