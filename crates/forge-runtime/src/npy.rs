//! Writing f32 arrays as NumPy `.npy` files (format version 1.0), so logits
//! load with `numpy.load` for comparison with other implementations.

use anyhow::{ensure, Context, Result};
use std::io::Write;
use std::path::Path;

/// The file's header: magic, version, header length, and the dict padded with
/// spaces to a multiple of 64 bytes overall, ending in a newline.
fn header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut tuple = dims.join(", ");
    if shape.len() == 1 {
        tuple.push(',');
    }
    let mut dict = String::from("{'descr': '<f4', 'fortran_order': False, 'shape': (");
    dict.push_str(&tuple);
    dict.push_str("), }");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes `data` (row-major, `shape`) to `path`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    ensure!(
        shape.iter().product::<usize>() == data.len(),
        "{} values do not fill the shape {shape:?}",
        data.len()
    );
    let mut bytes = header(shape);
    bytes.reserve(data.len() * 4);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut file = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(&bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_describes_the_array() {
        for shape in [vec![3usize, 384], vec![5], vec![1, 49152]] {
            let h = header(&shape);
            assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
            assert_eq!(h.len() % 64, 0, "{shape:?}");
            assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
            let dict = std::str::from_utf8(&h[10..]).unwrap();
            assert!(dict.ends_with('\n'));
            let want = match shape.len() {
                1 => format!("({},)", shape[0]),
                _ => format!("({}, {})", shape[0], shape[1]),
            };
            assert!(
                dict.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': "),
                "{dict}"
            );
            assert!(dict.contains(&want), "{dict}");
        }
    }

    #[test]
    fn data_follows_the_header_little_endian() {
        let path = std::env::temp_dir().join(format!("npy-test-{}.npy", std::process::id()));
        let data = [1.5f32, -2.0, 0.0, f32::MAX, 1e-7, 3.25];
        write_f32(&path, &[2, 3], &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let body = &bytes[header(&[2, 3]).len()..];
        let back: Vec<f32> = body
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, data);
        assert!(write_f32(&path, &[2, 2], &data).is_err());
    }
}
