//! `WeightsFile` on hand-built GGUF files: tensors found at their byte
//! ranges, and every kind of bad file refused with one line that names the
//! file (wrong magic, truncated anywhere, another plan, not forge's, types
//! and shapes it cannot read).

mod support;

use std::path::{Path, PathBuf};

use forge_runtime::weights::{WeightsFile, WeightsSpec};
use support::gguf::{gguf, Meta, Tensor, GGML_F32, GGML_Q8_0};
use support::scratch;

const SPEC: WeightsSpec = WeightsSpec {
    fingerprint: "plan-a",
    model_hint: "models/x",
    export_flags: " --dtype q8_0",
};

/// Two tensors: an f32 [3] vector and a Q8_0 [2, 64] matrix (4 blocks).
fn good_file() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let v: Vec<u8> = [1.0f32, 2.0, 3.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let m: Vec<u8> = (0..4 * 34).map(|i| i as u8).collect();
    let file = gguf(
        &[
            ("general.name", Meta::Str("x")),
            ("general.alignment", Meta::U32(32)),
            ("forge.plan_fingerprint", Meta::Str("plan-a")),
        ],
        &[
            Tensor {
                name: "v",
                dims: &[3],
                type_id: GGML_F32,
                data: &v,
            },
            Tensor {
                name: "m",
                dims: &[64, 2],
                type_id: GGML_Q8_0,
                data: &m,
            },
        ],
        32,
    );
    (file, v, m)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The error for `path`, checked to be one line starting with the path.
fn error(path: &Path) -> String {
    let e = match WeightsFile::open(path, &SPEC) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => format!("{e:#}"),
    };
    assert!(!e.contains('\n'), "{e}");
    assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
    e
}

#[test]
fn tensors_are_found_at_their_byte_ranges() {
    let dir = scratch("weights-good");
    let (bytes, v, m) = good_file();
    let path = write(&dir, "w.gguf", &bytes);
    let file = WeightsFile::open(&path, &SPEC).unwrap();
    let t = file.tensor("v").unwrap();
    assert_eq!(
        (t.dtype, t.shape.as_slice(), t.len),
        ("F32", &[3u64][..], 12)
    );
    assert_eq!(&file.map[t.offset..t.offset + t.len], v.as_slice());
    let t = file.tensor("m").unwrap();
    assert_eq!(
        (t.dtype, t.shape.as_slice(), t.len),
        ("Q8_0", &[2u64, 64][..], 136)
    );
    assert_eq!(t.offset % 32, 0, "aligned as general.alignment says");
    assert_eq!(&file.map[t.offset..t.offset + t.len], m.as_slice());
    let e = format!("{:#}", file.tensor("nope").unwrap_err());
    assert_eq!(
        e,
        format!("{}: the weights have no tensor nope", path.display())
    );
}

#[test]
fn wrong_magic_version_and_missing_files() {
    let dir = scratch("weights-magic");
    let e = error(&write(&dir, "notes.txt", b"not weights at all"));
    assert!(
        e.ends_with("not a GGUF file (it does not start with `GGUF`)"),
        "{e}"
    );
    let (mut bytes, _, _) = good_file();
    bytes[4] = 7;
    assert!(error(&write(&dir, "v7.gguf", &bytes)).contains("unsupported GGUF version 7"));
    let e = error(&dir.join("absent.gguf"));
    assert!(e.contains("cannot open"), "{e}");
}

#[test]
fn a_file_cut_anywhere_is_truncated() {
    let dir = scratch("weights-truncated");
    let (bytes, _, _) = good_file();
    // Every cut inside the header and data, and one before the final page padding.
    let data_end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    for cut in (4..data_end).step_by(7).chain([data_end, bytes.len() - 1]) {
        let e = error(&write(&dir, "cut.gguf", &bytes[..cut]));
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
}

#[test]
fn another_plan_or_no_plan_names_the_export_command() {
    let dir = scratch("weights-plan");
    let other = gguf(&[("forge.plan_fingerprint", Meta::Str("plan-b"))], &[], 32);
    let path = write(&dir, "other.gguf", &other);
    assert_eq!(
        error(&path),
        format!(
            "{p}: weights were made for another plan (fingerprint plan-b, this binary needs plan-a); \
             re-create them with `forge export-weights models/x {p} --dtype q8_0`",
            p = path.display()
        )
    );
    let foreign = gguf(&[("general.name", Meta::Str("llama"))], &[], 32);
    let e = error(&write(&dir, "foreign.gguf", &foreign));
    assert!(
        e.contains("not a forge weights file (it has no forge.plan_fingerprint)"),
        "{e}"
    );
    assert!(e.contains("forge export-weights models/x"), "{e}");
}

#[test]
fn types_shapes_and_layouts_it_cannot_read() {
    let dir = scratch("weights-layout");
    let plan = ("forge.plan_fingerprint", Meta::Str("plan-a"));
    let one = |name: &'static str, dims: &'static [u64], type_id: u32| Tensor {
        name,
        dims,
        type_id,
        data: &[0; 64],
    };
    let q4k = gguf(&[plan], &[one("k", &[256], 12)], 32);
    let e = error(&write(&dir, "q4k.gguf", &q4k));
    assert!(
        e.contains("tensor k has GGML type 12, which this binary does not read"),
        "{e}"
    );
    let plan = ("forge.plan_fingerprint", Meta::Str("plan-a"));
    let ragged = gguf(&[plan], &[one("q", &[33], GGML_Q8_0)], 32);
    let e = error(&write(&dir, "ragged.gguf", &ragged));
    assert!(
        e.contains("tensor q dims [33] are not whole Q8_0 blocks"),
        "{e}"
    );
    let plan = ("forge.plan_fingerprint", Meta::Str("plan-a"));
    let twice = gguf(
        &[plan],
        &[one("a", &[4], GGML_F32), one("a", &[4], GGML_F32)],
        32,
    );
    assert!(error(&write(&dir, "twice.gguf", &twice)).contains("tensor a appears twice"));
    let plan = ("forge.plan_fingerprint", Meta::Str("plan-a"));
    let odd = gguf(&[plan, ("general.alignment", Meta::U32(48))], &[], 48);
    assert!(error(&write(&dir, "odd.gguf", &odd))
        .contains("general.alignment 48 is not a power of two"));
}
