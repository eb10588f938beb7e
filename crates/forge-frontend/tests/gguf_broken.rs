//! Broken GGUF inputs end in a one-line error naming the file and the
//! problem, never a panic or an allocation sized by an untrusted count.

use std::path::{Path, PathBuf};

use forge_frontend::gguf::{parse_bytes, GgufFile};

const PATH: &str = "dir/broken.gguf";

/// Builds GGUF bytes field by field.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Bytes {
        let mut b = Bytes::default();
        b.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        b
    }
    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).raw(s)
    }
    /// A metadata entry holding a u32.
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for d in dims {
            self.u64(*d);
        }
        self.u32(type_id).u64(offset)
    }
    /// Pads to `align` and appends `n` data bytes.
    fn data(&mut self, align: usize, n: usize) -> &mut Self {
        let padded = self.0.len().next_multiple_of(align);
        self.0.resize(padded + n, 0xAB);
        self
    }
}

/// Parses and returns the error text, checking the one-line, names-the-file promise.
fn error_of(bytes: &[u8]) -> String {
    let err = match parse_bytes(Path::new(PATH), bytes) {
        Ok(h) => panic!("expected an error, parsed {h:?}"),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains('\n'), "error is not one line: {err}");
    assert!(
        err.starts_with(&format!("{PATH}: ")),
        "error does not name the file: {err}"
    );
    err
}

fn assert_error(bytes: &[u8], fragment: &str) {
    let err = error_of(bytes);
    assert!(
        err.contains(fragment),
        "'{err}' does not mention '{fragment}'"
    );
}

fn valid_file() -> Vec<u8> {
    let mut b = Bytes::header(3, 2, 1);
    b.kv_u32("k", 1)
        .tensor("a", &[4], 0, 0)
        .tensor("b", &[32], 8, 32)
        .data(32, 32 + 34);
    b.0
}

#[test]
fn the_hand_built_file_is_valid() {
    let h = parse_bytes(Path::new(PATH), &valid_file()).unwrap();
    assert_eq!(h.tensors.len(), 2);
    assert_eq!(h.tensors[1].n_bytes, 34);
}

#[test]
fn every_truncation_is_an_error() {
    for bytes in [
        valid_file(),
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/gguf/all_types_v3.gguf"),
        )
        .unwrap(),
    ] {
        // The last tensor ends where the file does, so every shorter prefix is broken.
        for len in 0..bytes.len() {
            let err = error_of(&bytes[..len]);
            assert!(
                err.contains("truncated")
                    || err.contains("runs past the end")
                    || err.contains("not a GGUF file")
                    || err.contains("remain"),
                "prefix {len}: {err}"
            );
        }
    }
}

#[test]
fn wrong_magic() {
    let mut bytes = valid_file();
    bytes[..4].copy_from_slice(b"GGML");
    assert_error(&bytes, "not a GGUF file");
    assert_error(b"PK\x03\x04 zip", "not a GGUF file");
}

#[test]
fn unsupported_versions() {
    assert_error(&Bytes::header(1, 0, 0).0, "version 1");
    assert_error(&Bytes::header(4, 0, 0).0, "version 4 is not supported");
    assert_error(&Bytes::header(3u32.swap_bytes(), 0, 0).0, "big-endian");
}

#[test]
fn counts_larger_than_the_file() {
    assert_error(&Bytes::header(3, 0, u64::MAX).0, "metadata count");
    assert_error(&Bytes::header(3, 0, 1 << 40).0, "metadata count");
    assert_error(&Bytes::header(3, u64::MAX, 0).0, "tensor count");
    assert_error(&Bytes::header(3, 1000, 0).0, "tensor count");
}

#[test]
fn array_counts_that_overflow_or_exceed_the_file() {
    for (item_type, count) in [
        (10u32, u64::MAX),
        (10, u64::MAX / 8 + 1),
        (0, 1 << 40),
        (8, 3),
    ] {
        let mut b = Bytes::header(3, 0, 1);
        b.str(b"arr").u32(9).u32(item_type).u64(count).u64(0);
        assert_error(&b.0, "array at offset");
    }
}

#[test]
fn string_length_past_the_end() {
    let mut b = Bytes::header(3, 0, 1);
    b.str(b"key").u32(8).u64(u64::MAX).raw(b"abc");
    assert_error(&b.0, "claims 18446744073709551615 bytes");
    let mut b = Bytes::header(3, 0, 1);
    b.u64(1 << 50).raw(b"key and some more bytes");
    assert_error(&b.0, "metadata entry 0: key");
}

#[test]
fn non_utf8_strings() {
    let mut b = Bytes::header(3, 0, 1);
    b.str(b"bad\xff").u32(4).u32(0);
    assert_error(&b.0, "not valid UTF-8");
    let mut b = Bytes::header(3, 0, 1);
    b.str(b"tokens")
        .u32(9)
        .u32(8)
        .u64(2)
        .str(b"ok")
        .str(b"\xc3\x28");
    assert_error(&b.0, "metadata 'tokens': array item 1: string at offset");
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w\u{e9}", &[4], 0, 0);
    b.0[24 + 8 + 1] = 0xff;
    b.data(32, 16);
    assert_error(
        &b.0,
        "tensor info 0: name: string at offset 24 is not valid UTF-8",
    );
}

#[test]
fn unknown_value_type_and_bad_bool() {
    let mut b = Bytes::header(3, 0, 1);
    b.str(b"k").u32(13).u32(0);
    assert_error(&b.0, "unknown metadata value type 13");
    let mut b = Bytes::header(3, 0, 1);
    b.str(b"k").u32(7).raw(&[2]);
    assert_error(&b.0, "bool at offset");
}

#[test]
fn deeply_nested_arrays() {
    let mut b = Bytes::header(3, 0, 1);
    b.str(b"deep").u32(9);
    for _ in 0..10_000 {
        b.u32(9).u64(1);
    }
    b.u32(0).u64(0);
    assert_error(&b.0, "nested more than");
}

#[test]
fn duplicate_names() {
    let mut b = Bytes::header(3, 0, 2);
    b.kv_u32("same", 1).kv_u32("same", 2);
    assert_error(&b.0, "duplicate metadata key 'same'");
    let mut b = Bytes::header(3, 2, 0);
    b.tensor("w", &[4], 0, 0)
        .tensor("w", &[4], 0, 32)
        .data(32, 48);
    assert_error(&b.0, "duplicate tensor name 'w'");
}

#[test]
fn unknown_dtype() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[4], 99, 0).data(32, 16);
    assert_error(&b.0, "tensor 'w' has unknown GGML type id 99");
}

#[test]
fn shape_that_does_not_fit_the_block_size() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("q", &[33, 2], 8, 0).data(32, 68);
    assert_error(
        &b.0,
        "row length 33 is not a multiple of the Q8_0 block size 32",
    );
}

#[test]
fn dimensions_that_overflow_or_need_terabytes() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("huge", &[u64::MAX, 2], 0, 0).data(32, 16);
    assert_error(&b.0, "overflow u64");
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("huge", &[1 << 62], 0, 0).data(32, 16);
    assert_error(&b.0, "F32 size of dimensions");
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("tb", &[1 << 20, 1 << 18], 0, 0).data(32, 16);
    assert_error(&b.0, "tensor 'tb': data (1099511627776 bytes");
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[1, 1, 1, 1, 1], 0, 0).data(32, 16);
    assert_error(&b.0, "5 dimensions");
}

#[test]
fn tensor_data_out_of_range() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[4], 0, 1 << 20).data(32, 16);
    assert_error(
        &b.0,
        "tensor 'w': data (16 bytes at data offset 1048576) runs past the end",
    );
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[4], 0, u64::MAX - 31).data(32, 16);
    assert_error(&b.0, "runs past the end");
}

#[test]
fn misaligned_and_overlapping_tensors() {
    let mut b = Bytes::header(3, 1, 0);
    b.tensor("w", &[4], 0, 8).data(32, 64);
    assert_error(&b.0, "data offset 8 is not a multiple of the alignment 32");
    let mut b = Bytes::header(3, 2, 0);
    b.tensor("a", &[16], 0, 0)
        .tensor("b", &[4], 0, 32)
        .data(32, 64);
    assert_error(&b.0, "tensors 'a' and 'b' overlap");
}

#[test]
fn bad_alignment_values() {
    let mut b = Bytes::header(3, 0, 1);
    b.kv_u32("general.alignment", 24);
    assert_error(&b.0, "'general.alignment' must be a u32 power of two");
    let mut b = Bytes::header(3, 0, 1);
    b.kv_u32("general.alignment", 0);
    assert_error(&b.0, "power of two");
    let mut b = Bytes::header(3, 0, 1);
    b.str(b"general.alignment").u32(10).u64(64);
    assert_error(&b.0, "found u64");
}

#[test]
fn open_reports_missing_and_broken_files() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf_broken");
    std::fs::create_dir_all(&dir).unwrap();
    let missing: PathBuf = dir.join("missing.gguf");
    let err = GgufFile::open(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&missing.display().to_string()) && err.contains("cannot open"),
        "{err}"
    );

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let err = GgufFile::open(&empty).unwrap_err().to_string();
    assert!(
        err.contains("empty.gguf: not a GGUF file: only 0 bytes long"),
        "{err}"
    );

    let truncated = dir.join("truncated.gguf");
    let bytes = valid_file();
    std::fs::write(&truncated, &bytes[..bytes.len() - 1]).unwrap();
    let err = GgufFile::open(&truncated).unwrap_err().to_string();
    assert!(
        err.contains("truncated.gguf: tensor 'b'") && err.contains("runs past the end"),
        "{err}"
    );
}
