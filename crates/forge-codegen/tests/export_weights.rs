//! `export_weights` on fixture checkpoints: every planned tensor is read back
//! with forge's GGUF reader and compared with the checkpoint's own tensors,
//! transformed and quantised here, independently of the export pipeline.

use std::path::{Path, PathBuf};

use forge_codegen::export::{export_weights, ExportProgress, ExportSummary, WEIGHTS_ALIGNMENT};
use forge_codegen::{PlannedTensor, WeightPlan};
use forge_frontend::gguf::{GgufFile, GgufValue};
use forge_ir::{DType, Model, TensorSpec, TensorTable, TensorTransform};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn load(rel: &str) -> Model {
    forge_frontend::load_model(&fixture(rel)).unwrap_or_else(|e| panic!("{e}"))
}

/// The stored bytes of a tensor, read with plain file I/O.
fn stored_bytes(spec: &TensorSpec) -> Vec<u8> {
    let file = std::fs::read(&spec.source.file).unwrap();
    let start = spec.source.offset as usize;
    file[start..start + spec.source.n_bytes as usize].to_vec()
}

fn dequantized(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() as u64 / dtype.block_bytes() * dtype.block_elements();
    let mut out = vec![0f32; n as usize];
    forge_weights::dequantize(dtype, bytes, &mut out).unwrap();
    out
}

/// llama.cpp's `permute` undone: viewing rows as [heads, 2, half] canonically
/// and [heads, half, 2] as stored, canonical (h, s, j) is stored (h, j, s).
fn unpermute(values: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let cols = values.len() / rows;
    let half = rows / heads / 2;
    let mut out = Vec::with_capacity(values.len());
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..half {
                let stored = (h * half + j) * 2 + s;
                out.extend_from_slice(&values[stored * cols..(stored + 1) * cols]);
            }
        }
    }
    out
}

/// A part's canonical values: the stored values with its transforms applied in order.
fn canonical(spec: &TensorSpec, keep_interleaved_rope: bool) -> Vec<f32> {
    let mut values = dequantized(spec.dtype, &stored_bytes(spec));
    let mut shape = spec.shape.clone();
    if spec.transforms.contains(&TensorTransform::Transpose) {
        shape.reverse();
    }
    for t in &spec.transforms {
        match t {
            TensorTransform::UnpermuteRopeRows { heads } if !keep_interleaved_rope => {
                values = unpermute(&values, shape[0] as usize, *heads as usize)
            }
            TensorTransform::ScaleRows { runs } => {
                let row_len = values.len() / shape[0] as usize;
                let factors = runs
                    .iter()
                    .flat_map(|&(n, f)| std::iter::repeat_n(f, n as usize));
                for (row, f) in values.chunks_exact_mut(row_len).zip(factors) {
                    row.iter_mut().for_each(|v| *v *= f);
                }
            }
            TensorTransform::UnpermuteRopeRows { .. } => {}
            TensorTransform::AddOne => values.iter_mut().for_each(|v| *v += 1.0),
            TensorTransform::NegExp => values.iter_mut().for_each(|v| *v = -v.exp()),
            TensorTransform::Transpose => {
                let (r, c) = (shape[0] as usize, shape[1] as usize);
                let mut t = vec![0f32; r * c];
                for i in 0..r {
                    for j in 0..c {
                        t[j * r + i] = values[i * c + j];
                    }
                }
                values = t;
                shape.reverse();
            }
        }
    }
    values
}

/// The bytes a planned tensor must have: its parts' canonical values, stacked and quantised whole.
fn expected_bytes(model: &Model, planned: &PlannedTensor) -> Vec<u8> {
    let values: Vec<f32> = planned
        .parts
        .iter()
        .flat_map(|p| canonical(model.tensors.get(p).unwrap(), planned.keep_interleaved_rope))
        .collect();
    let mut out = vec![0u8; planned.dtype.bytes_for(values.len() as u64).unwrap() as usize];
    forge_weights::quantize(planned.dtype, &values, &mut out).unwrap();
    out
}

fn planned(model: &Model, name: &str, dtype: DType, parts: &[&str], keep: bool) -> PlannedTensor {
    let specs: Vec<&TensorSpec> = parts
        .iter()
        .map(|p| model.tensors.get(p).unwrap_or_else(|| panic!("no {p}")))
        .collect();
    let mut shape = specs[0].shape.clone();
    shape[0] = specs.iter().map(|s| s.shape[0]).sum();
    PlannedTensor {
        name: name.into(),
        dtype,
        shape,
        parts: parts.iter().map(|p| p.to_string()).collect(),
        keep_interleaved_rope: keep,
    }
}

/// Exports into a fresh directory, checks the file layout, and returns the summary and the file.
fn export(model: &Model, plan: &WeightPlan) -> (tempfile::TempDir, ExportSummary, GgufFile) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weights.gguf");
    let mut events: Vec<(usize, u64, Option<String>)> = Vec::new();
    let summary = export_weights(model, plan, &out, &mut |p: ExportProgress| {
        assert_eq!(p.tensors_total, plan.tensors.len());
        events.push((p.tensors_done, p.bytes_done, p.current.map(String::from)));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let file = GgufFile::open(&out).unwrap_or_else(|e| panic!("{e}"));
    check_layout(plan, &summary, &file, &events);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["weights.gguf"], "only the finished file is left");
    (dir, summary, file)
}

fn check_layout(
    plan: &WeightPlan,
    summary: &ExportSummary,
    file: &GgufFile,
    events: &[(usize, u64, Option<String>)],
) {
    let len = std::fs::metadata(&file.path).unwrap().len();
    assert_eq!(summary.file_bytes, len);
    assert_eq!(len % WEIGHTS_ALIGNMENT, 0, "file padded to 16 KiB");
    assert_eq!(file.version, 3);
    assert_eq!(file.alignment, WEIGHTS_ALIGNMENT);
    let text = |key: &str| file.get(key).and_then(GgufValue::as_str).map(String::from);
    assert_eq!(text("general.architecture").as_deref(), Some("forge"));
    assert_eq!(text("forge.plan_fingerprint"), Some(plan.fingerprint()));
    assert_eq!(summary.fingerprint, plan.fingerprint());
    let expected: Vec<(String, DType, Vec<u64>)> =
        plan.tensors.iter().flat_map(file_entries).collect();
    assert_eq!(file.tensors.len(), expected.len());
    for (info, (name, dtype, shape)) in file.tensors.iter().zip(&expected) {
        assert_eq!(&info.name, name, "plan order");
        assert_eq!(info.dtype, *dtype, "{name}");
        let dims: Vec<u64> = info.dims.iter().rev().copied().collect();
        assert_eq!(&dims, shape, "{name}");
        assert_eq!(info.offset % WEIGHTS_ALIGNMENT, 0, "{} aligned", info.name);
    }
    // One event per tensor, then a final one; bytes only grow and end at the total.
    assert_eq!(events.len(), plan.tensors.len() + 1);
    for (i, (done, _, current)) in events.iter().enumerate() {
        assert_eq!(*done, i);
        assert_eq!(
            current.as_deref(),
            plan.tensors.get(i).map(|t| t.name.as_str())
        );
    }
    assert!(events.windows(2).all(|w| w[0].1 <= w[1].1));
    let data: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
    assert_eq!(events.last().unwrap().1, data);
}

/// The GGUF tensors (name, dtype, shape) a planned tensor is written as:
/// itself, or a block format's planes (`forge_weights::planes::layout`):
/// the quants under its name, each other plane as `<name>.<plane>`, of the
/// plane's element type and elements per row.
fn file_entries(planned: &PlannedTensor) -> Vec<(String, DType, Vec<u64>)> {
    let (rows, cols) = (planned.shape[0], planned.shape[1..].iter().product::<u64>());
    let Some(layout) = forge_weights::planes::layout(planned.dtype) else {
        return vec![(planned.name.clone(), planned.dtype, planned.shape.clone())];
    };
    layout
        .iter()
        .enumerate()
        .map(|(i, plane)| {
            let name = match i {
                0 => planned.name.clone(),
                _ => format!("{}.{}", planned.name, plane.name),
            };
            let per_row = forge_weights::planes::plane_elements(planned.dtype, plane, cols);
            (name, plane.element, vec![rows, per_row])
        })
        .collect()
}

/// The GGML blocks of a block-format tensor, joined back from its planes in `file`.
fn joined(file: &GgufFile, planned: &PlannedTensor) -> Vec<u8> {
    let layout = forge_weights::planes::layout(planned.dtype).expect("a block format");
    let planes = file_entries(planned)
        .iter()
        .take(layout.len())
        .map(|(name, _, _)| file.tensor_data(file.tensor(name).unwrap()).to_vec())
        .collect();
    forge_weights::planes::join(planned.dtype, &forge_weights::planes::Planes { planes }).unwrap()
}

fn check_tensors(model: &Model, plan: &WeightPlan, file: &GgufFile) {
    for planned in &plan.tensors {
        let info = file.tensor(&planned.name).unwrap();
        let want = expected_bytes(model, planned);
        let got = if forge_weights::planes::has_planes(planned.dtype) {
            joined(file, planned)
        } else {
            file.tensor_data(info).to_vec()
        };
        assert!(
            got == want,
            "{} ({}) differs from its parts converted independently",
            planned.name,
            planned.dtype
        );
    }
}

/// Qwen2 (sharded f32 safetensors) with fused q/k/v, fused biases and fused gate/up,
/// in each GPU dtype; vectors stay f32.
#[test]
fn qwen2_every_dtype_with_fused_parts() {
    let model = load("qwen2/hf");
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
    ] {
        let mut plan = WeightPlan::default();
        let l = |s: &str| format!("blk.0.{s}");
        let (q, k, v) = (l("attn_q.weight"), l("attn_k.weight"), l("attn_v.weight"));
        let (qb, kb, vb) = (l("attn_q.bias"), l("attn_k.bias"), l("attn_v.bias"));
        let (gate, up) = (l("ffn_gate.weight"), l("ffn_up.weight"));
        for (name, dt, parts) in [
            (
                "token_embd.weight".to_string(),
                dtype,
                vec!["token_embd.weight".to_string()],
            ),
            (
                l("attn_norm.weight"),
                DType::F32,
                vec![l("attn_norm.weight")],
            ),
            (l("attn_qkv.weight"), dtype, vec![q, k, v]),
            (l("attn_qkv.bias"), DType::F32, vec![qb, kb, vb]),
            (l("ffn_gate_up.weight"), dtype, vec![gate, up]),
            (l("ffn_down.weight"), dtype, vec![l("ffn_down.weight")]),
            (
                "output_norm.weight".to_string(),
                DType::F32,
                vec!["output_norm.weight".to_string()],
            ),
        ] {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            plan.tensors.push(planned(&model, &name, dt, &parts, false));
        }
        let (_dir, summary, file) = export(&model, &plan);
        check_tensors(&model, &plan, &file);
        // The sources are f32: only f32 targets copy raw.
        let parts: usize = plan.tensors.iter().map(|t| t.parts.len()).sum();
        let f32_parts: usize = plan
            .tensors
            .iter()
            .filter(|t| t.dtype == DType::F32)
            .map(|t| t.parts.len())
            .sum();
        assert_eq!(summary.raw_parts, f32_parts, "{dtype}");
        assert_eq!(summary.converted_parts, parts - f32_parts, "{dtype}");
    }
}

/// Q8_0 to Q8_0 with the rope rows restored is a byte copy in the permuted
/// row order: no requantisation, so exact.
#[test]
fn q8_0_rows_are_copied_raw_in_unpermuted_order() {
    let model = load("smollm2/gguf/smollm2.q8_0.gguf");
    let q = model.tensors.get("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dtype, DType::Q8_0);
    let TensorTransform::UnpermuteRopeRows { heads } = q.transforms[0] else {
        panic!(
            "llama GGUF attn_q carries the rope permutation: {:?}",
            q.transforms
        );
    };
    let parts = [
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.0.attn_v.weight",
    ];
    for keep in [false, true] {
        let plan = WeightPlan {
            tensors: vec![planned(
                &model,
                "blk.0.attn_qkv.weight",
                DType::Q8_0,
                &parts,
                keep,
            )],
        };
        let (_dir, summary, file) = export(&model, &plan);
        assert_eq!((summary.raw_parts, summary.converted_parts), (3, 0));
        // The file holds the blocks as quant and scale planes (tensors 0 and 1).
        let planes = forge_weights::planes::Planes {
            planes: vec![
                file.tensor_data(&file.tensors[0]).to_vec(),
                file.tensor_data(&file.tensors[1]).to_vec(),
            ],
        };
        let got = forge_weights::planes::join(DType::Q8_0, &planes).unwrap();
        // Rows are whole Q8_0 blocks: permute them as opaque byte rows, in the
        // order `unpermute` gives a column of row numbers.
        let stored = stored_bytes(q);
        let rows = q.shape[0] as usize;
        let row_bytes = stored.len() / rows;
        let numbers: Vec<f32> = (0..rows).map(|r| r as f32).collect();
        let order = if keep {
            numbers
        } else {
            unpermute(&numbers, rows, heads as usize)
        };
        let mut want = Vec::new();
        for src in order.iter().map(|&r| r as usize) {
            want.extend_from_slice(&stored[src * row_bytes..(src + 1) * row_bytes]);
        }
        assert!(
            got[..want.len()] == want[..],
            "attn_q rows (keep_interleaved_rope = {keep})"
        );
        let mut rest = stored_bytes(model.tensors.get(parts[1]).unwrap());
        rest.extend(stored_bytes(model.tensors.get(parts[2]).unwrap()));
        let got_rest = &got[want.len()..];
        if keep {
            assert!(got_rest == rest.as_slice(), "k and v rows copied as stored");
        } else {
            assert!(got_rest != rest.as_slice(), "k rows are unpermuted too");
        }
    }
}

/// K-quant tensors planned in their own format are copied raw into their
/// planes: joined back, the file's planes are the GGUF's super-blocks bit
/// for bit (Q4_K and Q6_K of a Q4_K_M file, Q5_K of a Q5_K one; embedding,
/// head and projections; q/k rows kept in the file's order).
#[test]
fn k_quant_tensors_are_copied_raw_into_their_planes() {
    for (file_name, names) in [
        (
            "llama_k/gguf/llama_k.q4_k_m.gguf",
            &[
                "token_embd.weight",
                "output.weight",
                "blk.1.attn_v.weight",
                "blk.0.attn_q.weight",
            ][..],
        ),
        (
            "llama_k/gguf/llama_k.q5_k.gguf",
            &["blk.0.ffn_down.weight"][..],
        ),
    ] {
        let model = load(file_name);
        let plan = WeightPlan {
            tensors: names
                .iter()
                .map(|&n| planned(&model, n, model.tensors.get(n).unwrap().dtype, &[n], true))
                .collect(),
        };
        let (_dir, summary, file) = export(&model, &plan);
        assert_eq!(
            (summary.raw_parts, summary.converted_parts),
            (names.len(), 0)
        );
        for planned in &plan.tensors {
            assert!(
                matches!(planned.dtype, DType::Q4_K | DType::Q5_K | DType::Q6_K),
                "{}: {}",
                planned.name,
                planned.dtype
            );
            let stored = stored_bytes(model.tensors.get(&planned.name).unwrap());
            assert!(
                joined(&file, planned) == stored,
                "{} ({})",
                planned.name,
                planned.dtype
            );
        }
    }
}

/// Converting from Q8_0 dequantises each permuted row and quantises it again.
#[test]
fn q8_0_source_converts_to_every_dtype() {
    let model = load("smollm2/gguf/smollm2.q8_0.gguf");
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::Q4_0] {
        let plan = WeightPlan {
            tensors: vec![
                planned(
                    &model,
                    "blk.1.attn_q.weight",
                    dtype,
                    &["blk.1.attn_q.weight"],
                    false,
                ),
                planned(
                    &model,
                    "blk.1.attn_k.weight",
                    dtype,
                    &["blk.1.attn_k.weight"],
                    false,
                ),
                planned(
                    &model,
                    "token_embd.weight",
                    dtype,
                    &["token_embd.weight"],
                    false,
                ),
                planned(
                    &model,
                    "output_norm.weight",
                    DType::F32,
                    &["output_norm.weight"],
                    false,
                ),
            ],
        };
        let (_dir, summary, file) = export(&model, &plan);
        check_tensors(&model, &plan, &file);
        assert_eq!(
            (summary.raw_parts, summary.converted_parts),
            (1, 3),
            "{dtype}"
        );
    }
}

fn exported_f32(model: &Model, name: &str) -> Vec<f32> {
    let plan = WeightPlan {
        tensors: vec![planned(model, name, DType::F32, &[name], false)],
    };
    let (_dir, _, file) = export(model, &plan);
    dequantized(DType::F32, file.tensor_data(&file.tensors[0]))
}

fn hf_f32(model: &Model, name: &str) -> Vec<f32> {
    let spec = model.tensors.get(name).unwrap();
    dequantized(spec.dtype, &stored_bytes(spec))
}

/// The rope unpermutation goes the right way: llama.cpp's f32 conversion of
/// SmolLM2, exported, equals the transformers checkpoint bit for bit.
#[test]
fn unpermuted_rope_rows_equal_the_hf_checkpoint() {
    let gguf = load("smollm2/gguf/smollm2.f32.gguf");
    let hf = load("smollm2/hf");
    for name in ["blk.0.attn_q.weight", "blk.1.attn_k.weight"] {
        let exported = exported_f32(&gguf, name);
        assert!(
            exported == hf_f32(&hf, name),
            "{name} differs from the HF tensor"
        );
        let spec = gguf.tensors.get(name).unwrap();
        let stored = dequantized(spec.dtype, &stored_bytes(spec));
        assert!(
            stored != exported,
            "{name}: the permutation is not the identity"
        );
    }
}

/// Gemma's `1 + w` norms: the export of the HF weights equals llama.cpp's conversion.
#[test]
fn add_one_matches_llama_cpp_gemma_norms() {
    let hf = load("gemma/hf");
    let gguf = load("gemma/gguf/gemma.f32.gguf");
    for name in ["output_norm.weight", "blk.1.attn_norm.weight"] {
        assert!(hf.tensors.get(name).unwrap().transforms == [TensorTransform::AddOne]);
        let exported = exported_f32(&hf, name);
        assert!(exported == hf_f32(&gguf, name), "{name}");
    }
}

/// Mamba's `A = -exp(A_log)`: the export of the bf16 HF weights against llama.cpp's f32 conversion.
#[test]
fn neg_exp_matches_llama_cpp_mamba_a() {
    let hf = load("mamba/hf");
    let gguf = load("mamba/gguf/mamba.f32.gguf");
    let name = "blk.0.ssm_a.weight";
    assert!(hf.tensors.get(name).unwrap().transforms == [TensorTransform::NegExp]);
    let exported = exported_f32(&hf, name);
    let reference = hf_f32(&gguf, name);
    assert_eq!(exported.len(), reference.len());
    for (a, b) in exported.iter().zip(&reference) {
        // exp differs by up to an ulp between torch and Rust's libm.
        assert!((a - b).abs() <= b.abs() * 2.5e-7, "{a} vs {b}");
    }
}

/// A model whose `name` tensor is replaced by the same bytes declared `[in, out]` with transforms.
fn with_transposed(model: &Model, name: &str, extra: &[TensorTransform]) -> Model {
    let tensors: Vec<TensorSpec> = model
        .tensors
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if t.name == name {
                t.shape.reverse();
                t.transforms = [TensorTransform::Transpose]
                    .iter()
                    .chain(extra)
                    .cloned()
                    .collect();
            }
            t
        })
        .collect();
    let mut table = TensorTable::new();
    for t in tensors {
        table.insert(t).unwrap();
    }
    Model {
        tensors: table,
        ..model.clone()
    }
}

/// Transposed storage (no fixture architecture uses it) is materialised and
/// transposed, with later transforms applied after it.
#[test]
fn transposed_sources_are_transposed() {
    let base = load("qwen2/hf");
    let name = "blk.1.ffn_down.weight";
    let rope = TensorTransform::UnpermuteRopeRows { heads: 4 };
    for extra in [vec![], vec![TensorTransform::AddOne], vec![rope]] {
        let model = with_transposed(&base, name, &extra);
        for dtype in [DType::F32, DType::Q8_0] {
            let plan = WeightPlan {
                tensors: vec![planned(&model, name, dtype, &[name], false)],
            };
            let (_dir, summary, file) = export(&model, &plan);
            assert_eq!(summary.converted_parts, 1);
            check_tensors(&model, &plan, &file);
        }
    }
}

fn expect_error(
    model: &Model,
    plan: &WeightPlan,
    out: &Path,
) -> forge_codegen::export::ExportError {
    let err = export_weights(model, plan, out, &mut |_| {}).expect_err("export must fail");
    let text = err.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("{}: ", err.path.display())),
        "{text}"
    );
    err
}

#[test]
fn errors_name_the_file_and_leave_nothing_behind() {
    let model = load("qwen2/hf");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weights.gguf");
    std::fs::write(&out, b"previous").unwrap();
    let good = planned(
        &model,
        "output_norm.weight",
        DType::F32,
        &["output_norm.weight"],
        false,
    );

    let mut missing = good.clone();
    missing.name = "fused.weight".into();
    missing.parts = vec!["blk.7.nothing.weight".into()];
    let err = expect_error(
        &model,
        &WeightPlan {
            tensors: vec![good.clone(), missing],
        },
        &out,
    );
    assert_eq!(err.path, model.source);
    assert!(err.message.contains("blk.7.nothing.weight"), "{err}");

    let mut rows = good.clone();
    rows.shape = vec![65];
    let err = expect_error(
        &model,
        &WeightPlan {
            tensors: vec![rows],
        },
        &out,
    );
    assert!(
        err.message.contains("65") && err.message.contains("64"),
        "{err}"
    );

    let mut blocks = good.clone();
    blocks.dtype = DType::Q8_0;
    let err = expect_error(
        &model,
        &WeightPlan {
            tensors: vec![blocks],
        },
        &out,
    );
    assert!(err.message.contains("Q8_0"), "{err}");

    let twice = WeightPlan {
        tensors: vec![good.clone(), good.clone()],
    };
    assert!(expect_error(&model, &twice, &out).message.contains("twice"));

    // A source range past the end of its file names that file.
    let mut broken = model.clone();
    let mut table = TensorTable::new();
    for t in model.tensors.iter() {
        let mut t = t.clone();
        if t.name == "output_norm.weight" {
            t.source.offset = 1 << 40;
        }
        table.insert(t).unwrap();
    }
    broken.tensors = table;
    let source = model
        .tensors
        .get("output_norm.weight")
        .unwrap()
        .source
        .file
        .clone();
    let err = expect_error(
        &broken,
        &WeightPlan {
            tensors: vec![good.clone()],
        },
        &out,
    );
    assert_eq!(err.path, source);

    let plan = WeightPlan {
        tensors: vec![good],
    };
    let nowhere = dir.path().join("no/such/dir/weights.gguf");
    assert_eq!(expect_error(&model, &plan, &nowhere).path, nowhere);
    assert_eq!(expect_error(&model, &plan, dir.path()).path, dir.path());

    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"previous",
        "failed exports keep the old file"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["weights.gguf"], "no temporary file is left");
    // A successful export replaces the old file.
    export_weights(&model, &plan, &out, &mut |_| {}).unwrap();
    assert!(GgufFile::open(&out).is_ok());
}
