//! Broken safetensors inputs end in a one-line error naming the file and the
//! problem, never a panic.

use std::path::{Path, PathBuf};

use forge_frontend::safetensors::{parse_header, SafetensorsSet};

const PATH: &str = "dir/broken.safetensors";

/// A file with the given header JSON followed by `data_len` data bytes.
fn file(json: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    bytes.resize(bytes.len() + data_len, 0x5A);
    bytes
}

fn error_of(bytes: &[u8]) -> String {
    let err = match parse_header(Path::new(PATH), bytes) {
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

const VALID: &str = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}}"#;

#[test]
fn the_hand_built_file_is_valid() {
    let h = parse_header(Path::new(PATH), &file(VALID, 22)).unwrap();
    assert_eq!(h.tensors.len(), 2);
    assert_eq!(h.tensors[1].offset, 8 + VALID.len() as u64 + 16);
    assert_eq!(h.metadata, vec![("format".into(), "pt".into())]);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = file(VALID, 22);
    for len in 0..bytes.len() {
        error_of(&bytes[..len]);
    }
}

#[test]
fn header_length_problems() {
    assert_error(b"\x05\x00", "only 2 bytes long");
    assert_error(&file(VALID, 22)[..40], "runs past the end of the file");
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert_error(&huge, "over the 100000000-byte limit");
    let mut past = 1000u64.to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    assert_error(&past, "header length 1000 runs past the end");
}

#[test]
fn wrong_magic_and_bad_json() {
    assert_error(
        b"GGUF\x03\x00\x00\x00\x00\x00\x00\x00",
        "not a safetensors file",
    );
    assert_error(&file("[1,2]", 0), "does not start with '{'");
    assert_error(&file("{\"a\":", 0), "invalid header JSON");
    assert_error(&file("{\"a\":3}", 0), "invalid header JSON");
    let mut bad_utf8 = file(VALID, 22);
    bad_utf8[10] = 0xff;
    assert_error(&bad_utf8, "invalid header JSON");
}

#[test]
fn duplicate_tensor_names() {
    let json = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    assert_error(&file(json, 8), "duplicate key 'a'");
}

#[test]
fn unknown_and_unsupported_dtypes() {
    let json = r#"{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}"#;
    assert_error(&file(json, 4), "tensor 'a': unsupported dtype 'Q9'");
    let json = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#;
    assert_error(&file(json, 4), "unsupported dtype 'U8'");
    let json = r#"{"a":{"dtype":7,"shape":[4],"data_offsets":[0,4]}}"#;
    assert_error(&file(json, 4), "\"dtype\" is not a string");
}

#[test]
fn shape_that_does_not_match_the_byte_size() {
    let json = r#"{"a":{"dtype":"F16","shape":[3,3],"data_offsets":[0,16]}}"#;
    assert_error(
        &file(json, 16),
        "tensor 'a': shape [3, 3] of F16 needs 18 bytes, but data_offsets [0, 16] hold 16",
    );
    let json = r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#;
    assert_error(
        &file(json, 4),
        "\"shape\" is not a list of non-negative integers",
    );
}

#[test]
fn dimensions_that_overflow_or_need_terabytes() {
    let json = r#"{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,4]}}"#;
    assert_error(&file(json, 4), "overflows u64");
    let json =
        r#"{"a":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,4398046511104]}}"#;
    assert_error(&file(json, 4), "outside the 4-byte data section");
}

#[test]
fn data_offsets_out_of_range() {
    let json = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[100,104]}}"#;
    assert_error(
        &file(json, 8),
        "data_offsets [100, 104] are outside the 8-byte data section",
    );
    let json = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#;
    assert_error(&file(json, 8), "data_offsets [8, 4] end before they begin");
    let json = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#;
    assert_error(&file(json, 8), "not a pair");
    let json = r#"{"a":{"dtype":"F32","shape":[1]}}"#;
    assert_error(&file(json, 8), "missing \"data_offsets\"");
}

#[test]
fn overlapping_tensors_and_bad_metadata() {
    let json = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    assert_error(&file(json, 8), "tensors 'a' and 'b' overlap");
    let json = r#"{"__metadata__":{"format":1}}"#;
    assert_error(
        &file(json, 0),
        "__metadata__ value of 'format' is not a string",
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("safetensors_broken")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn file_and_directory_problems() {
    let dir = scratch("files");
    let missing = dir.join("missing.safetensors");
    let err = SafetensorsSet::open_files(std::slice::from_ref(&missing))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&missing.display().to_string()) && err.contains("cannot open"),
        "{err}"
    );

    let err = SafetensorsSet::open_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("no model.safetensors"), "{err}");
    let err = SafetensorsSet::open_dir(&dir.join("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read directory"), "{err}");

    // The same tensor in two files of one set.
    let one = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    std::fs::write(dir.join("a.safetensors"), file(one, 4)).unwrap();
    std::fs::write(dir.join("b.safetensors"), file(one, 4)).unwrap();
    let err = SafetensorsSet::open_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("b.safetensors: tensor 'w' is also in") && err.contains("a.safetensors"),
        "{err}"
    );

    let empty = dir.join("model.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let err = SafetensorsSet::open_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors: not a safetensors file"),
        "{err}"
    );
}
