//! forge-weights' block formats against gguf-py, llama.cpp's own Python
//! implementation of them (`gguf.quants`), on the real SmolLM2-135M tensors
//! and on random blocks of every format.
//!
//! `scripts/gguf_py_reference.py` writes the reference into
//! `$FORGE_CACHE/quant-reference` (default `.cache/`); these tests run it
//! (it returns at once when up to date) and fail loudly when python3, numpy
//! or gguf-py is missing. Dequantisation must be bitwise equal: gguf-py
//! computes in f32 with the same operations in the same order as ggml's C
//! reference (scale products first, then `dl * q - ml`), which is what ours
//! does, so there is no rounding slack to allow for.

use forge_ir::DType;
use forge_weights::quant::{dequantize, dequantize_rows, quantize_rows};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

// The reference hashes little-endian f32 bytes; we hash our values in memory.
#[cfg(not(target_endian = "little"))]
compile_error!("these tests hash f32 values in memory and assume a little-endian host");

struct Reference {
    dir: PathBuf,
    model: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Fetches the model and builds the gguf-py reference, once per test binary.
fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let root = repo_root();
        let cache = std::env::var_os("FORGE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".cache"));
        let cache = root.join(cache);
        run(
            Command::new("bash")
                .arg(root.join("scripts/fetch_smollm2.sh"))
                .env("FORGE_CACHE", &cache),
            "scripts/fetch_smollm2.sh",
        );
        let model = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        let dir = cache.join("quant-reference");
        run(
            Command::new("python3")
                .arg(root.join("scripts/gguf_py_reference.py"))
                .arg("reference")
                .arg("--model")
                .arg(&model)
                .arg("--out")
                .arg(&dir),
            "python3 scripts/gguf_py_reference.py (needs numpy and gguf: pip install -r scripts/requirements-test.txt)",
        );
        Reference { dir, model }
    })
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_f32(path: &Path) -> Vec<f32> {
    read(path)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dtype(name: &str) -> DType {
    DType::parse(name).unwrap_or_else(|| panic!("reference names unknown dtype {name}"))
}

/// First index where two f32 slices differ bitwise, with both values.
fn first_difference(ours: &[f32], theirs: &[f32]) -> Option<(usize, f32, f32)> {
    if ours.len() != theirs.len() {
        return Some((ours.len().min(theirs.len()), f32::NAN, f32::NAN));
    }
    ours.iter()
        .zip(theirs)
        .position(|(a, b)| a.to_bits() != b.to_bits())
        .map(|i| (i, ours[i], theirs[i]))
}

#[test]
fn every_smollm2_tensor_dequantises_bitwise_like_gguf_py() {
    let r = reference();
    let manifest = read_json(&r.dir.join("smollm2.json"));
    let file = read(&r.model);
    let tensors = manifest["tensors"].as_array().expect("tensors array");
    // The SmolLM2-135M GGUF has 272 tensors; fewer would mean a short manifest.
    assert_eq!(tensors.len(), 272, "tensor count in smollm2.json");
    let mut failures = Vec::new();
    let mut values = 0usize;
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let dt = dtype(t["type"].as_str().unwrap());
        let offset = t["offset"].as_u64().unwrap() as usize;
        let n_bytes = t["n_bytes"].as_u64().unwrap() as usize;
        let n = t["n_elements"].as_u64().unwrap() as usize;
        let row_len = t["shape"][0].as_u64().unwrap() as usize;
        let bytes = &file[offset..offset + n_bytes];
        let mut out = vec![0.0f32; n];
        if let Err(e) = dequantize_rows(dt, bytes, row_len, &mut out) {
            failures.push(format!("{name} ({dt}): {e}"));
            continue;
        }
        values += n;
        let hash = format!(
            "{:x}",
            Sha256::digest(bytemuck::cast_slice::<f32, u8>(&out))
        );
        if hash != t["sha256"].as_str().unwrap() {
            let sample = t["samples"].as_array().unwrap().iter().find_map(|s| {
                let i = s[0].as_u64().unwrap() as usize;
                let bits = s[1].as_u64().unwrap() as u32;
                (out[i].to_bits() != bits).then(|| {
                    format!(
                        "value {i}: ours {} gguf-py {}",
                        out[i],
                        f32::from_bits(bits)
                    )
                })
            });
            failures.push(format!(
                "{name} ({dt}): sha256 differs; {}",
                sample.unwrap_or_else(|| "the sampled values agree".into())
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} tensors differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(values, 134_515_008, "values compared");
}

/// Every format we dequantise, on random blocks gguf-py dequantised.
const RANDOM_BLOCK_TYPES: [&str; 12] = [
    "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
];

#[test]
fn random_blocks_of_every_format_dequantise_bitwise_like_gguf_py() {
    let r = reference();
    for name in RANDOM_BLOCK_TYPES {
        let dt = dtype(name);
        let bytes = read(&r.dir.join(format!("dequant/{name}.bin")));
        let theirs = read_f32(&r.dir.join(format!("dequant/{name}.f32")));
        assert!(!theirs.is_empty(), "{name}: empty reference");
        let mut ours = vec![0.0f32; theirs.len()];
        dequantize(dt, &bytes, &mut ours).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some((i, a, b)) = first_difference(&ours, &theirs) {
            panic!(
                "{name}: value {i} (block {}): ours {a} gguf-py {b}",
                i as u64 / dt.block_elements()
            );
        }
    }
}

/// The quantiser inputs: (name, row length, values).
fn quant_inputs(r: &Reference) -> Vec<(&'static str, usize, Vec<f32>)> {
    ["synthetic", "token_embd", "ffn_down", "attn_q_noisy"]
        .into_iter()
        .map(|name| {
            let shape = std::fs::read_to_string(r.dir.join(format!("quant/{name}.shape"))).unwrap();
            let row_len: usize = shape.split_whitespace().nth(1).unwrap().parse().unwrap();
            (
                name,
                row_len,
                read_f32(&r.dir.join(format!("quant/{name}.f32"))),
            )
        })
        .collect()
}

fn quantized(dt: DType, x: &[f32], row_len: usize) -> Vec<u8> {
    let mut out = vec![0u8; dt.bytes_for(x.len() as u64).unwrap() as usize];
    quantize_rows(dt, x, row_len, &mut out).unwrap_or_else(|e| panic!("{dt}: {e}"));
    out
}

#[test]
fn quantised_bytes_equal_gguf_py_where_it_quantises() {
    let r = reference();
    for (input, row_len, x) in quant_inputs(r) {
        for name in ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"] {
            let dt = dtype(name);
            let theirs = read(&r.dir.join(format!("quant/{input}.{name}.bin")));
            let ours = quantized(dt, &x, row_len);
            assert_eq!(ours.len(), theirs.len(), "{input} {name}: byte length");
            if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
                let block = i / dt.block_bytes() as usize;
                let span =
                    block * dt.block_bytes() as usize..(block + 1) * dt.block_bytes() as usize;
                panic!(
                    "{input} {name}: byte {i} (block {block}) differs\nours    {:02x?}\ngguf-py {:02x?}",
                    &ours[span.clone()],
                    &theirs[span]
                );
            }
        }
    }
}

fn relative_rms(x: &[f32], y: &[f32]) -> f64 {
    let err: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let norm: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
    (err / norm).sqrt()
}

/// gguf-py's dequantisation of `(type, bytes)` jobs, in one python run.
fn gguf_py_dequantize(jobs: &[(&str, &[u8])]) -> Vec<Vec<f32>> {
    let dir = std::env::temp_dir().join(format!("forge-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("scripts/gguf_py_reference.py"))
        .arg("dequantize");
    let mut outputs = Vec::new();
    for (i, (name, bytes)) in jobs.iter().enumerate() {
        let (input, output) = (dir.join(format!("{i}.bin")), dir.join(format!("{i}.f32")));
        std::fs::write(&input, bytes).unwrap();
        cmd.arg(name).arg(&input).arg(&output);
        outputs.push(output);
    }
    run(&mut cmd, "python3 scripts/gguf_py_reference.py dequantize");
    let values = outputs.iter().map(|p| read_f32(p)).collect();
    std::fs::remove_dir_all(&dir).ok();
    values
}

/// Q4_K and Q6_K, which gguf-py cannot produce: gguf-py must read our blocks
/// back to exactly our values, and the error must beat the simpler formats
/// of similar size.
#[test]
fn k_quant_blocks_we_write_read_back_identically_in_gguf_py() {
    let r = reference();
    // ffn_down is skipped: it is dequantised Q4_1, so Q4_1 reproduces it
    // exactly and the comparison would say nothing about Q4_K.
    let inputs: Vec<_> = quant_inputs(r)
        .into_iter()
        .filter(|(name, _, _)| *name != "ffn_down")
        .collect();
    let mut blocks = Vec::new();
    for (input, _, x) in &inputs {
        // K-quant super-blocks are 256 wide and SmolLM2's rows are 576, so
        // these flat tensors are cut into rows of 2304 (= 9 * 256 = 4 * 576).
        let row_len = if x.len() % 2304 == 0 { 2304 } else { 256 };
        for name in ["Q4_K", "Q6_K"] {
            blocks.push((*input, name, quantized(dtype(name), x, row_len)));
        }
    }
    let jobs: Vec<(&str, &[u8])> = blocks.iter().map(|(_, n, b)| (*n, b.as_slice())).collect();
    let theirs = gguf_py_dequantize(&jobs);
    let mut ours_by_input = std::collections::HashMap::new();
    for ((input, name, bytes), theirs) in blocks.iter().zip(theirs) {
        let mut ours = vec![0.0f32; bytes.len() / dtype(name).block_bytes() as usize * 256];
        dequantize(dtype(name), bytes, &mut ours).unwrap();
        if let Some((i, a, b)) = first_difference(&ours, &theirs) {
            panic!("{input} {name}: value {i}: ours {a} gguf-py {b}");
        }
        ours_by_input.insert((*input, *name), ours);
    }
    let mut report = Vec::new();
    for (input, row_len, x) in &inputs {
        let mut rms = std::collections::BTreeMap::new();
        for name in ["Q4_K", "Q6_K"] {
            rms.insert(name, relative_rms(x, &ours_by_input[&(*input, name)]));
        }
        for name in ["Q4_0", "Q4_1", "Q5_1", "Q8_0"] {
            let dt = dtype(name);
            let mut y = vec![0.0f32; x.len()];
            dequantize(dt, &quantized(dt, x, *row_len), &mut y).unwrap();
            rms.insert(name, relative_rms(x, &y));
        }
        report.push(format!("{input}: {rms:.4?}"));
        // Absolute bounds, a margin above the measured values (printed
        // below), which sit near a uniform quantiser's step / sqrt(12).
        assert!(rms["Q4_K"] < 0.12, "{input}: Q4_K relative rms {rms:?}");
        assert!(rms["Q6_K"] < 0.03, "{input}: Q6_K relative rms {rms:?}");
        // attn_q_noisy is dequantised Q4_1 plus small noise, still close to
        // Q4_1's grid, so ranking formats on it would favour Q4_1.
        if *input == "attn_q_noisy" {
            continue;
        }
        // Q4_K spends 4.5 bits per value, Q4_0 4.5 and Q4_1 5; its searched
        // scales and mins must buy a lower error than both.
        assert!(rms["Q4_K"] < rms["Q4_0"], "{input}: Q4_K {rms:?}");
        assert!(rms["Q4_K"] < rms["Q4_1"], "{input}: Q4_K {rms:?}");
        // Q6_K (6.56 bits) must beat Q5_1 (6 bits).
        assert!(rms["Q6_K"] < rms["Q5_1"], "{input}: Q6_K {rms:?}");
        // ... and lose to Q8_0 (8.5 bits), except on token_embd, which is
        // dequantised Q8_0 and so exactly on Q8_0's grid.
        if *input != "token_embd" {
            assert!(rms["Q6_K"] > rms["Q8_0"], "{input}: Q6_K {rms:?}");
        }
    }
    eprintln!("relative rms error per format:\n{}", report.join("\n"));
}

#[test]
fn block_size_table_matches_gguf_py() {
    let r = reference();
    let sizes = read_json(&r.dir.join("sizes.json"));
    let mut mismatches = Vec::new();
    let mut unknown = Vec::new();
    for (name, v) in sizes.as_object().unwrap() {
        let (id, block, bytes) = (
            v[0].as_u64().unwrap(),
            v[1].as_u64().unwrap(),
            v[2].as_u64().unwrap(),
        );
        match DType::parse(name) {
            Some(dt) => {
                let ours = (
                    u64::from(dt.ggml_type_id()),
                    dt.block_elements(),
                    dt.block_bytes(),
                );
                if ours != (id, block, bytes) {
                    mismatches.push(format!(
                        "{name}: forge-ir {ours:?}, gguf-py {:?}",
                        (id, block, bytes)
                    ));
                }
            }
            None => unknown.push(name.clone()),
        }
    }
    eprintln!("gguf-py types forge-ir does not know: {unknown:?}");
    // gguf-py 0.19 still sizes Q8_1 as two f32 + 32 bytes; ggml's block_q8_1
    // has been two f16 + 32 bytes = 36 (ggml-common.h static_assert), and
    // forge-ir follows ggml. Any other difference is a bug on one side.
    assert_eq!(
        mismatches,
        ["Q8_1: forge-ir (9, 32, 36), gguf-py (9, 32, 40)"],
        "block size table differences"
    );
}

/// Throughput numbers for the report, not assertions about time:
/// `cargo test --release -p forge-weights --test quant_gguf_py -- --ignored --nocapture`.
/// It does check the results it times, so a broken fast path still fails.
#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn benchmark_dequantise_smollm2_and_quantise_the_embedding() {
    use std::time::Instant;
    let r = reference();
    let manifest = read_json(&r.dir.join("smollm2.json"));
    let file = read(&r.model);
    let tensors = manifest["tensors"].as_array().unwrap();
    let spans: Vec<(DType, usize, &[u8], usize)> = tensors
        .iter()
        .map(|t| {
            let offset = t["offset"].as_u64().unwrap() as usize;
            let n_bytes = t["n_bytes"].as_u64().unwrap() as usize;
            (
                dtype(t["type"].as_str().unwrap()),
                t["shape"][0].as_u64().unwrap() as usize,
                &file[offset..offset + n_bytes],
                t["n_elements"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let mut outs: Vec<Vec<f32>> = spans.iter().map(|s| vec![0.0f32; s.3]).collect();
    let start = Instant::now();
    for ((dt, row_len, bytes, _), out) in spans.iter().zip(&mut outs) {
        dequantize_rows(*dt, bytes, *row_len, out).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n: usize = spans.iter().map(|s| s.3).sum();
    eprintln!(
        "dequantize_rows, all {} SmolLM2 tensors: {n} values in {:.3} s = {:.0} M values/s ({} rayon threads)",
        spans.len(),
        secs,
        n as f64 / secs / 1e6,
        rayon::current_num_threads()
    );
    for ((_, _, _, _), (out, t)) in spans.iter().zip(outs.iter().zip(tensors)) {
        let hash = format!("{:x}", Sha256::digest(bytemuck::cast_slice::<f32, u8>(out)));
        assert_eq!(hash, t["sha256"].as_str().unwrap(), "{}", t["name"]);
    }

    // The real 49152 x 576 token embedding; K-quants need 256-wide rows, so
    // they take it as rows of 2304 (4 embedding rows each).
    let embd = &outs[tensors
        .iter()
        .position(|t| t["name"] == "token_embd.weight")
        .unwrap()];
    assert_eq!(embd.len(), 49152 * 576);
    for (name, row_len, bound) in [
        ("Q8_0", 576, 1e-9),
        ("Q4_0", 576, 0.12),
        ("Q4_K", 2304, 0.09),
        ("Q6_K", 2304, 0.025),
    ] {
        let dt = dtype(name);
        let mut bytes = vec![0u8; dt.bytes_for(embd.len() as u64).unwrap() as usize];
        let start = Instant::now();
        quantize_rows(dt, embd, row_len, &mut bytes).unwrap();
        let secs = start.elapsed().as_secs_f64();
        let mut y = vec![0.0f32; embd.len()];
        dequantize_rows(dt, &bytes, row_len, &mut y).unwrap();
        let rms = relative_rms(embd, &y);
        eprintln!(
            "quantize_rows {name}, 49152 x 576 token embedding: {secs:.3} s = {:.0} M values/s, relative rms error {rms:.4}",
            embd.len() as f64 / secs / 1e6
        );
        // Q8_0 re-quantises values already on its grid: the d it derives is
        // the same, so the round trip is exact up to f16 rounding of d.
        assert!(rms < bound, "{name}: relative rms {rms} >= {bound}");
    }
}
