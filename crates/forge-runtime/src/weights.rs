//! Reads `weights.gguf`: maps the file once, checks it was exported for this
//! binary's weight plan and finds each tensor's byte range in the map.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use memmap2::Mmap;

/// Which weights a binary accepts, and how to make them when it is given others.
#[derive(Clone, Copy, Debug)]
pub struct WeightsSpec {
    /// Fingerprint of the weight plan the binary was generated for.
    pub fingerprint: &'static str,
    /// The checkpoint the project was compiled from, for the re-export command.
    pub model_hint: &'static str,
    /// The flags `forge compile` was given that decide the weights (` --dtype q8_0`,
    /// or nothing for the checkpoint's own dtypes), for the re-export command.
    pub export_flags: &'static str,
}

const FINGERPRINT_KEY: &str = "forge.plan_fingerprint";
const ALIGNMENT_KEY: &str = "general.alignment";
const DEFAULT_ALIGNMENT: u64 = 32;
/// The export pads the file to whole 16 KiB pages so Metal can wrap the map.
const FILE_PAGE: usize = 16384;
/// Arrays nest at most this deep; deeper nesting is a corrupt file, not a deep stack.
const MAX_ARRAY_DEPTH: u32 = 8;

/// One tensor's bytes within the mapped file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRef {
    /// Absolute byte offset in the file.
    pub offset: usize,
    pub len: usize,
    /// GGML type name: `F32`, `F16`, `BF16`, `I8`, `Q8_0` or `Q4_0`.
    pub dtype: &'static str,
    /// Outermost dimension first: `[rows, cols]` for a matrix.
    pub shape: Vec<u64>,
}

/// The mapped weights file and its tensor table.
pub struct WeightsFile {
    pub path: PathBuf,
    pub map: Arc<Mmap>,
    tensors: HashMap<String, TensorRef>,
}

impl WeightsFile {
    /// Maps `path` and checks that it holds the weights `spec` describes.
    pub fn open(path: &Path, spec: &WeightsSpec) -> Result<WeightsFile> {
        let file = File::open(path).map_err(|e| anyhow!("{}: cannot open: {e}", path.display()))?;
        // SAFETY: the map is read-only; the file is not expected to change while the model runs.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| anyhow!("{}: cannot memory-map: {e}", path.display()))?;
        let tensors = parse(path, &map, spec).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(WeightsFile {
            path: path.to_path_buf(),
            map: Arc::new(map),
            tensors,
        })
    }

    pub fn tensor(&self, name: &str) -> Result<TensorRef> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("{}: the weights have no tensor {name}", self.path.display()))
    }
}

/// (GGML type id, name, values per block, bytes per block) of the types forge
/// exports (I8: the quant planes of Q8_0 and Q4_0 matrices).
const DTYPES: [(u32, &str, u64, u64); 6] = [
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (8, "Q8_0", 32, 34),
    (24, "I8", 1, 1),
    (30, "BF16", 1, 2),
];

/// A bounds-checked little-endian reader over the header.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.at.checked_add(n))
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            bail!(
                "truncated GGUF file: the header needs more than its {} bytes",
                self.bytes.len()
            );
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| anyhow!("a GGUF string is not UTF-8"))
    }

    /// Skips one metadata value of type `tag`.
    fn skip_value(&mut self, tag: u32, depth: u32) -> Result<()> {
        match tag {
            0 | 1 | 7 => self.take(1).map(drop),
            2 | 3 => self.take(2).map(drop),
            4..=6 => self.take(4).map(drop),
            10..=12 => self.take(8).map(drop),
            8 => self.string().map(drop),
            9 if depth < MAX_ARRAY_DEPTH => {
                let item = self.u32()?;
                let count = self.u64()?;
                (0..count).try_for_each(|_| self.skip_value(item, depth + 1))
            }
            9 => bail!("GGUF arrays nest deeper than {MAX_ARRAY_DEPTH} levels"),
            other => bail!("unknown GGUF metadata type {other}"),
        }
    }
}

/// Parses the header, checks the plan fingerprint and every tensor's range.
fn parse(path: &Path, bytes: &[u8], spec: &WeightsSpec) -> Result<HashMap<String, TensorRef>> {
    if bytes.len() < 4 || &bytes[..4] != b"GGUF" {
        bail!("not a GGUF file (it does not start with `GGUF`)");
    }
    let mut c = Cursor { bytes, at: 4 };
    let version = c.u32()?;
    if version != 2 && version != 3 {
        bail!("unsupported GGUF version {version}");
    }
    let n_tensors = c.u64()?;
    let n_metadata = c.u64()?;
    let mut fingerprint = None;
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..n_metadata {
        let key = c.string()?;
        let tag = c.u32()?;
        match (key.as_str(), tag) {
            (FINGERPRINT_KEY, 8) => fingerprint = Some(c.string()?),
            (ALIGNMENT_KEY, 4) => alignment = u64::from(c.u32()?),
            _ => c.skip_value(tag, 0)?,
        }
    }
    let remedy = format!(
        "re-create them with `forge export-weights {} {}{}`",
        spec.model_hint,
        path.display(),
        spec.export_flags
    );
    match fingerprint {
        Some(f) if f == spec.fingerprint => {}
        Some(f) => bail!(
            "weights were made for another plan (fingerprint {f}, this binary needs {}); {remedy}",
            spec.fingerprint
        ),
        None => bail!("not a forge weights file (it has no {FINGERPRINT_KEY}); {remedy}"),
    }
    if alignment == 0 || !alignment.is_power_of_two() {
        bail!("{ALIGNMENT_KEY} {alignment} is not a power of two");
    }
    let mut infos = Vec::new();
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()?;
        if n_dims > 4 {
            bail!("tensor {name} has {n_dims} dimensions; GGUF allows 4");
        }
        let mut dims = Vec::new();
        for _ in 0..n_dims {
            dims.push(c.u64()?);
        }
        let type_id = c.u32()?;
        let offset = c.u64()?;
        infos.push((name, dims, type_id, offset));
    }
    let data_start = (c.at as u64).div_ceil(alignment) * alignment;
    let mut tensors = HashMap::new();
    for (name, dims, type_id, offset) in infos {
        let Some(&(_, dtype, block, block_bytes)) = DTYPES.iter().find(|d| d.0 == type_id) else {
            bail!("tensor {name} has GGML type {type_id}, which this binary does not read");
        };
        let len = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|n| n % block == 0)
            .and_then(|n| (n / block).checked_mul(block_bytes));
        let Some(len) = len else {
            bail!("tensor {name} dims {dims:?} are not whole {dtype} blocks");
        };
        let start = data_start.checked_add(offset);
        let range = start.and_then(|s| Some(s..s.checked_add(len)?));
        let range = match range {
            Some(r) if r.end <= bytes.len() as u64 => r.start as usize..r.end as usize,
            _ => bail!(
                "truncated weights file: tensor {name} lies past its end ({} bytes)",
                bytes.len()
            ),
        };
        let tensor = TensorRef {
            offset: range.start,
            len: range.len(),
            dtype,
            shape: dims.iter().rev().copied().collect(),
        };
        if tensors.insert(name.clone(), tensor).is_some() {
            bail!("tensor {name} appears twice");
        }
    }
    if !bytes.len().is_multiple_of(FILE_PAGE) {
        bail!(
            "truncated weights file: {} bytes is not a whole number of {FILE_PAGE}-byte pages",
            bytes.len()
        );
    }
    Ok(tensors)
}
