//! `rope_tables::rope_table` against the tables transformers computes for the
//! fixtures with rope scaling (tests/fixtures/rope_tables.json, written by
//! scripts/make_rope_tables.py), reading each fixture's config through
//! forge-frontend from the Hugging Face directory and from its GGUF conversion.

use std::path::{Path, PathBuf};

use forge_codegen::kernels::rope_tables::{rope_table, RopeTable};
use forge_ir::{RopeConfig, RopeScaling};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn reference() -> Value {
    let text =
        std::fs::read_to_string(fixtures().join("rope_tables.json")).expect("rope_tables.json");
    serde_json::from_str(&text).expect("rope_tables.json parses")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// The full-attention rope and, for Gemma 3, the sliding-window one.
fn ropes(path: &Path) -> (RopeConfig, Option<RopeConfig>) {
    let model =
        forge_frontend::load_model(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let attention = model.config.attention.expect("an attention model");
    (attention.rope, attention.rope_local)
}

/// Transformers computes every table in float32; `rope_table` mirrors each
/// operation and matches it bit for bit here, but torch's `pow` and libm's
/// `powf` are not both guaranteed correctly rounded, so one ulp is allowed.
const TABLE_TOLERANCE: f64 = 1.2e-7;

fn assert_table(what: &str, got: &[f32], want: &[f32], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: table length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let rel = ((*g as f64 - *w as f64) / *w as f64).abs();
        assert!(
            rel <= tolerance,
            "{what}: inv_freq[{i}] = {g:e}, transformers {w:e} (relative error {rel:e})"
        );
    }
}

fn check(what: &str, table: &RopeTable, want: &Value, tolerance: f64) {
    assert_table(what, &table.inv_freq, &floats(&want["inv_freq"]), tolerance);
    let factor = want["attention_factor"].as_f64().expect("attention_factor") as f32;
    assert!(
        (table.attention_factor - factor).abs() <= f32::EPSILON * factor,
        "{what}: attention factor {} vs transformers {factor}",
        table.attention_factor
    );
    match (&table.long, want.get("long_inv_freq")) {
        (None, None) => {}
        (Some(long), Some(want_long)) => {
            assert_table(
                &format!("{what} (long)"),
                &long.inv_freq,
                &floats(want_long),
                tolerance,
            );
            assert_eq!(
                Some(long.original_context_length),
                want["original_context_length"].as_u64(),
                "{what}: long-table threshold"
            );
        }
        (got, want) => panic!("{what}: long table {got:?}, transformers {want:?}"),
    }
}

#[test]
fn hf_configs_match_transformers() {
    let reference = reference();
    let tables = reference["fixtures"].as_object().expect("fixtures");
    assert_eq!(tables.len(), 5, "one entry per scaled fixture");
    for (name, want) in tables {
        let (global, local) = ropes(&fixtures().join(name).join("hf"));
        check(
            &format!("{name} hf"),
            &rope_table(&global),
            &want["full_attention"],
            TABLE_TOLERANCE,
        );
        match (local, want.get("sliding_attention")) {
            (Some(local), Some(w)) => check(
                &format!("{name} hf local"),
                &rope_table(&local),
                w,
                TABLE_TOLERANCE,
            ),
            (None, None) => {}
            (l, w) => panic!("{name}: local rope {l:?}, transformers {w:?}"),
        }
    }
}

#[test]
fn scaling_kinds_are_covered() {
    let kinds: Vec<&str> = [
        "llama3",
        "llama_linear_v4cfg",
        "qwen3_yarn",
        "phi3_longrope",
        "gemma3_text",
    ]
    .iter()
    .map(
        |name| match ropes(&fixtures().join(name).join("hf")).0.scaling {
            RopeScaling::None => "none",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Llama3 { .. } => "llama3",
            RopeScaling::Yarn { .. } => "yarn",
            RopeScaling::FrequencyFactors { .. } => "factors",
            RopeScaling::LongRope { .. } => "longrope",
        },
    )
    .collect();
    assert_eq!(kinds, ["llama3", "linear", "yarn", "longrope", "linear"]);
}

/// llama.cpp's converter stores Llama 3 scaling as per-frequency divisors
/// (`rope_freqs.weight`, computed in float64 and stored as float32), so the
/// GGUF table reproduces transformers' to the factors' float32 rounding
/// (one ulp seen) plus the `powf` ulp: 2 ulps.
#[test]
fn gguf_frequency_factors_match_transformers_llama3() {
    let reference = reference();
    let (rope, _) = ropes(&fixtures().join("llama3/gguf/llama3.f32.gguf"));
    assert!(
        matches!(rope.scaling, RopeScaling::FrequencyFactors { .. }),
        "{:?}",
        rope.scaling
    );
    check(
        "llama3 gguf",
        &rope_table(&rope),
        &reference["fixtures"]["llama3"]["full_attention"],
        2.4e-7,
    );
}

#[test]
fn gguf_longrope_matches_transformers_phi3() {
    let reference = reference();
    let (rope, _) = ropes(&fixtures().join("phi3_longrope/gguf/phi3_longrope.f32.gguf"));
    assert!(
        matches!(rope.scaling, RopeScaling::LongRope { .. }),
        "{:?}",
        rope.scaling
    );
    check(
        "phi3_longrope gguf",
        &rope_table(&rope),
        &reference["fixtures"]["phi3_longrope"]["full_attention"],
        TABLE_TOLERANCE,
    );
}
