//! End-to-end: `forge compile` each architecture fixture, build the generated
//! project (through msl-emu on this host), run its `logits` mode in both
//! paths and compare with the transformers references committed under
//! `tests/fixtures/<name>/reference`; then check the greedy continuation,
//! the strict Metal syntax of the kernels, that the project type-checks
//! for aarch64-apple-darwin (its Metal host code), and that `chat-template`
//! renders the fixture's reference conversation as transformers did.

mod generated;
mod support;

use std::path::PathBuf;

use generated::{
    argmax, build, case_dir, check_macos, check_msl, check_rustfmt, compile, max_abs_diff, mean_kl,
    read_npy, run, Npy,
};
use support::repo_root;

/// How a case's logits are judged (DESIGN.md, "References and tolerances").
#[derive(Clone, Copy)]
enum Tolerance {
    /// f32 weights and KV cache against the f32 reference: the kernels sum in
    /// another order than PyTorch, so differences are float rounding,
    /// ≤ 1e-3 of the largest logit.
    F32,
    /// f16/bf16 weights (and an f16 KV cache) against the f32 reference:
    /// 8 (bf16) or 11 (f16) mantissa bits put every weight within 2^-8
    /// relative, so logits stay within 2e-2 of the largest logit.
    Half,
    /// Q8_0/Q4_0 weights against transformers run on the same dequantised
    /// weights (`reference/<dtype>/`): the remaining difference is the f16
    /// KV cache and summation order, so a mean KL below 1e-3 nats and the
    /// same greedy tokens up to the first step whose top-2 margin in the
    /// reference is under 0.01 (`stable_tokens`, computed by
    /// scripts/make_quant_references.py): an f16 cache alone moves logits by
    /// ~1e-3, so closer calls may legitimately flip.
    Quantized(&'static str),
}

struct Case {
    name: &'static str,
    fixture: &'static str,
    /// Path under the fixture: `hf` or `gguf/<file>`.
    input: &'static str,
    flags: &'static [&'static str],
    tolerance: Tolerance,
}

struct Reference {
    prompt: Vec<u32>,
    greedy: Vec<u32>,
    /// Leading greedy tokens that must match exactly.
    stable: usize,
    logits: Npy,
}

fn reference(case: &Case) -> Reference {
    let dir = repo_root()
        .join("tests/fixtures")
        .join(case.fixture)
        .join("reference");
    let dir = match case.tolerance {
        Tolerance::Quantized(dtype) => dir.join(dtype),
        _ => dir,
    };
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let greedy = ids(&json["greedy"]["ids"]);
    Reference {
        prompt: ids(&json["prompt"]["ids"]),
        stable: json["greedy"]["stable_tokens"]
            .as_u64()
            .map_or(greedy.len(), |s| s as usize),
        greedy,
        logits: read_npy(&dir.join("prompt_logits.npy")),
    }
}

fn ids_arg(ids: &[u32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Tokens per pass of the `passes` mode: 7 splits the 15-token prompts into
/// 7 + 7 + 1 (the last a decode step) and prompt + continuation into five
/// passes, boundaries that are not multiples of the SSD chunks (4, 5) either.
const PASS_TOKENS: &str = "7";

/// `mode` is `prefill` (one pass), `decode` (a token at a time) or `passes`
/// (prefill in passes of [`PASS_TOKENS`], so state crosses pass boundaries).
fn logits(binary: &std::path::Path, dir: &std::path::Path, ids: &[u32], mode: &str) -> Npy {
    let out = dir.join(format!("{mode}.npy"));
    let ids = ids_arg(ids);
    let mut args = vec!["logits", "--tokens", &ids, "--out", out.to_str().unwrap()];
    match mode {
        "passes" => args.extend(["--mode", "prefill", "--pass-tokens", PASS_TOKENS]),
        _ => args.extend(["--mode", mode]),
    }
    run(binary, &args);
    read_npy(&out)
}

fn judge(case: &Case, ours: &Npy, reference: &Npy, mode: &str) {
    let (diff, scale) = max_abs_diff(ours, reference);
    match case.tolerance {
        Tolerance::F32 => assert!(
            diff <= 1e-3 * scale,
            "{} ({mode}): max |Δlogit| {diff} > 1e-3 × {scale}",
            case.name
        ),
        Tolerance::Half => assert!(
            diff <= 2e-2 * scale,
            "{} ({mode}): max |Δlogit| {diff} > 2e-2 × {scale}",
            case.name
        ),
        Tolerance::Quantized(_) => {
            let kl = mean_kl(ours, reference);
            assert!(
                kl < 1e-3,
                "{} ({mode}): mean KL {kl} ≥ 1e-3 (max |Δ| {diff})",
                case.name
            );
        }
    }
    eprintln!(
        "{} ({mode}): max |Δlogit| {diff:.3e} of max |logit| {scale:.3e}",
        case.name
    );
}

/// Greedy decoding picks the argmax at each step, so if the argmax of every
/// position of prompt + continuation equals the reference's next token, the
/// 16-token greedy continuation is the reference's.
fn check_greedy(
    case: &Case,
    binary: &std::path::Path,
    dir: &std::path::Path,
    r: &Reference,
    mode: &str,
) {
    let mut ids = r.prompt.clone();
    ids.extend_from_slice(&r.greedy[..r.greedy.len() - 1]);
    let all = logits(binary, dir, &ids, mode);
    let got: Vec<u32> = (r.prompt.len() - 1..ids.len())
        .map(|row| argmax(&all.data[row * all.cols..(row + 1) * all.cols]) as u32)
        .collect();
    assert_eq!(
        got[..r.stable],
        r.greedy[..r.stable],
        "{} ({mode}): greedy continuation differs",
        case.name
    );
}

/// `chat-template` renders the conversation make_fixtures.py rendered with
/// transformers into the fixture's reference.json, byte for byte (text: no
/// tolerance), so the project carries the checkpoint's template and tokens.
fn check_chat_template(case: &Case, binary: &std::path::Path, dir: &std::path::Path) {
    let path = repo_root()
        .join("tests/fixtures")
        .join(case.fixture)
        .join("reference/reference.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let Some(chat) = json.get("chat") else {
        return;
    };
    let messages = dir.join("chat_messages.json");
    std::fs::write(&messages, chat["messages"].to_string()).unwrap();
    let mut args = vec!["chat-template", "--messages", messages.to_str().unwrap()];
    if chat["add_generation_prompt"] != true {
        args.push("--no-generation-prompt");
    }
    assert_eq!(
        run(binary, &args),
        chat["text"].as_str().unwrap(),
        "{}: chat-template differs from transformers",
        case.name
    );
}

fn run_case(case: Case) {
    let dir = case_dir(case.name);
    let project = dir.join("project");
    let model: PathBuf = repo_root()
        .join("tests/fixtures")
        .join(case.fixture)
        .join(case.input);
    compile(&model, &project, case.name, case.flags);
    check_msl(&project);
    check_rustfmt(&project);
    let binary = build(&project);
    check_macos(&project);
    check_chat_template(&case, &binary, &dir);
    let r = reference(&case);
    for mode in ["prefill", "decode", "passes"] {
        let ours = logits(&binary, &dir, &r.prompt, mode);
        judge(&case, &ours, &r.logits, mode);
        check_greedy(&case, &binary, &dir, &r, mode);
    }
}

macro_rules! cases {
    ($($name:ident: $fixture:literal, $input:literal, [$($flag:literal),*], $tol:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_case(Case {
                    name: stringify!($name),
                    fixture: $fixture,
                    input: $input,
                    flags: &[$($flag),*],
                    tolerance: $tol,
                });
            }
        )*
    };
}

cases! {
    llama2_hf_f32: "llama2", "hf", [], Tolerance::F32;
    llama2_gguf_f32_interleaved_rope: "llama2", "gguf/llama2.f32.gguf", [], Tolerance::F32;
    llama3_hf_f32: "llama3", "hf", [], Tolerance::F32;
    llama_linear_rope_hf_f32: "llama_linear_v4cfg", "hf", [], Tolerance::F32;
    smollm2_hf_f32: "smollm2", "hf", [], Tolerance::F32;
    smollm2_gguf_q8_0: "smollm2", "gguf/smollm2.q8_0.gguf", [], Tolerance::Quantized("q8_0");
    smollm2_hf_q4_0: "smollm2", "hf", ["--dtype", "q4_0"], Tolerance::Quantized("q4_0");
    qwen2_hf_f32: "qwen2", "hf", [], Tolerance::F32;
    qwen2_hf_q8_0: "qwen2", "hf", ["--dtype", "q8_0"], Tolerance::Quantized("q8_0");
    qwen2_gguf_f16: "qwen2", "gguf/qwen2.f16.gguf", [], Tolerance::Half;
    qwen3_hf_f16: "qwen3", "hf", [], Tolerance::Half;
    qwen3_yarn_hf_f32: "qwen3_yarn", "hf", [], Tolerance::F32;
    mistral_hf_f32: "mistral", "hf", [], Tolerance::F32;
    gemma_hf_f32: "gemma", "hf", [], Tolerance::F32;
    gemma_hf_bf16: "gemma", "hf", ["--dtype", "bf16"], Tolerance::Half;
    gemma2_hf_f32_softcaps_sandwich_norms: "gemma2", "hf", [], Tolerance::F32;
    gemma3_hf_bf16_local_global_rope: "gemma3_text", "hf", [], Tolerance::Half;
    phi3_hf_f32: "phi3", "hf", [], Tolerance::F32;
    phi3_longrope_hf_bf16: "phi3_longrope", "hf", [], Tolerance::Half;
    // Widths that are not multiples of 32, of 8 or of 4 (issue 9, "any width").
    llama_odd_hf_f32: "llama_odd", "hf", [], Tolerance::F32;
    llama_odd_gguf_f32: "llama_odd", "gguf/llama_odd.f32.gguf", [], Tolerance::F32;
    qwen2_odd_hf_f32: "qwen2_odd", "hf", [], Tolerance::F32;
    mistral_odd_hf_f32: "mistral_odd", "hf", [], Tolerance::F32;
    // Two of shape_sweep.rs's random shapes (its cases 16 and 25).
    sweep_case16_hf_f32: "sweep_case16", "hf", [], Tolerance::F32;
    sweep_case25_hf_f32: "sweep_case25", "hf", [], Tolerance::F32;
    // State-space models (issue 10): conv widths 3, 4 and 6, hidden 40 and
    // 72, one and two groups, head dims 16 and 24, SSD chunks 4 and 5.
    mamba_hf_bf16: "mamba", "hf", [], Tolerance::Half;
    mamba_gguf_f32: "mamba", "gguf/mamba.f32.gguf", [], Tolerance::F32;
    mamba_odd_hf_f32: "mamba_odd", "hf", [], Tolerance::F32;
    mamba_odd_gguf_f32: "mamba_odd", "gguf/mamba_odd.f32.gguf", [], Tolerance::F32;
    mamba_hf_q8_0: "mamba", "hf", ["--dtype", "q8_0"], Tolerance::Quantized("q8_0");
    mamba2_hf_f32: "mamba2", "hf", [], Tolerance::F32;
    mamba2_gguf_f32: "mamba2", "gguf/mamba2.f32.gguf", [], Tolerance::F32;
    mamba2_odd_hf_f32: "mamba2_odd", "hf", [], Tolerance::F32;
    mamba2_odd_gguf_f32: "mamba2_odd", "gguf/mamba2_odd.f32.gguf", [], Tolerance::F32;
    mamba2_hf_q4_0: "mamba2", "hf", ["--dtype", "q4_0"], Tolerance::Quantized("q4_0");
    // Hybrids (issue 11): short convolutions, Mamba-2 and MLP-only layers
    // beside attention, side by side (Falcon-H1), rope partial or absent,
    // µP multipliers; hidden 40 and 48, SSD chunks 4 and 5.
    lfm2_hf_f32: "lfm2", "hf", [], Tolerance::F32;
    lfm2_nobias_hf_f32: "lfm2_nobias", "hf", [], Tolerance::F32;
    lfm2_nobias_gguf_f32: "lfm2_nobias", "gguf/lfm2_nobias.f32.gguf", [], Tolerance::F32;
    bamba_hf_f32: "bamba", "hf", [], Tolerance::F32;
    bamba_gguf_f32_partial_rotary: "bamba", "gguf/bamba.f32.gguf", [], Tolerance::F32;
    granite4h_hf_f32: "granite4h", "hf", [], Tolerance::F32;
    granite4h_gguf_f32: "granite4h", "gguf/granite4h.f32.gguf", [], Tolerance::F32;
    nemotron_h_hf_f32: "nemotron_h", "hf", [], Tolerance::F32;
    nemotron_h_gguf_f32: "nemotron_h", "gguf/nemotron_h.f32.gguf", [], Tolerance::F32;
    falcon_h1_hf_f32: "falcon_h1", "hf", [], Tolerance::F32;
    falcon_h1_gguf_f32: "falcon_h1", "gguf/falcon_h1.f32.gguf", [], Tolerance::F32;
    lfm2_hf_f16: "lfm2", "hf", ["--dtype", "f16"], Tolerance::Half;
    bamba_hf_bf16: "bamba", "hf", ["--dtype", "bf16"], Tolerance::Half;
    // lfm2_q's matrices are whole Q8_0/Q4_0 blocks (hidden 64); the others'
    // rows are not, so `--dtype q8_0` keeps them f16 beside the hybrid layers.
    lfm2_q_hf_q8_0: "lfm2_q", "hf", ["--dtype", "q8_0"], Tolerance::Quantized("q8_0");
    lfm2_q_hf_q4_0: "lfm2_q", "hf", ["--dtype", "q4_0"], Tolerance::Quantized("q4_0");
    lfm2_q_gguf_f32: "lfm2_q", "gguf/lfm2_q.f32.gguf", [], Tolerance::F32;
    lfm2_hf_q8_0_f16_rows: "lfm2", "hf", ["--dtype", "q8_0"], Tolerance::Quantized("q8_0");
    falcon_h1_hf_q8_0_f16_rows: "falcon_h1", "hf", ["--dtype", "q8_0"], Tolerance::Quantized("q8_0");
    // Mixtures of experts: routed on the GPU, decode reading only the chosen
    // experts, prefill grouped by expert.
    mixtral_hf_f32: "mixtral", "hf", [], Tolerance::F32;
    mixtral_gguf_f32: "mixtral", "gguf/mixtral.f32.gguf", [], Tolerance::F32;
    mixtral_fused_hf_f32: "mixtral_fused", "hf", [], Tolerance::F32;
    // f16 weights move router logits by ~1e-3; this fixture's top-k margins
    // over the prompt are at least 0.046 (reference.json `moe`), so the routing
    // is the reference's. (mixtral's layer 0 has a 7e-4 margin: its choice
    // flips under half-precision weights, as it would in transformers.)
    mixtral_fused_hf_f16: "mixtral_fused", "hf", ["--dtype", "f16"], Tolerance::Half;
    qwen2_moe_hf_f32: "qwen2_moe", "hf", [], Tolerance::F32;
    qwen2_moe_gguf_f32: "qwen2_moe", "gguf/qwen2_moe.f32.gguf", [], Tolerance::F32;
    qwen2_moe_dense_hf_f32: "qwen2_moe_dense", "hf", [], Tolerance::F32;
    qwen3_moe_hf_f32: "qwen3_moe", "hf", [], Tolerance::F32;
    qwen3_moe_gguf_f32: "qwen3_moe", "gguf/qwen3_moe.f32.gguf", [], Tolerance::F32;
    granite4h_moe_hf_f32: "granite4h_moe", "hf", [], Tolerance::F32;
    granite4h_moe_gguf_f32: "granite4h_moe", "gguf/granite4h_moe.f32.gguf", [], Tolerance::F32;
    // Jamba: NoPE attention, Mamba-1 with RMSNorms over dt, B and C (fused
    // into the selective scan), experts every other layer, not renormalised.
    jamba_hf_f32: "jamba", "hf", [], Tolerance::F32;
    // Routers stay f32; half-precision weights move router logits by ~1e-3
    // and this fixture's top-k margins over the prompt are at least 0.063
    // (reference.json `moe`), so the routing is the reference's.
    jamba_hf_f16: "jamba", "hf", ["--dtype", "f16"], Tolerance::Half;
    // Quantised experts against transformers on the same quantised weights
    // (scripts/make_quant_references.py; routers stay f32 in both).
    qwen3_moe_hf_q8_0: "qwen3_moe", "hf", ["--dtype", "q8_0"], Tolerance::Quantized("q8_0");
    qwen3_moe_hf_q4_0: "qwen3_moe", "hf", ["--dtype", "q4_0"], Tolerance::Quantized("q4_0");
    qwen2_moe_hf_q8_0: "qwen2_moe", "hf", ["--dtype", "q8_0"], Tolerance::Quantized("q8_0");
    // K-quants as llama.cpp writes them (scripts/make_k_quant_ggufs.py),
    // compiled with default options so every tensor keeps its format, against
    // transformers on the same file's dequantised weights.
    llama_k_gguf_q4_k: "llama_k", "gguf/llama_k.q4_k.gguf", [], Tolerance::Quantized("q4_k");
    llama_k_gguf_q5_k: "llama_k", "gguf/llama_k.q5_k.gguf", [], Tolerance::Quantized("q5_k");
    llama_k_gguf_q6_k: "llama_k", "gguf/llama_k.q6_k.gguf", [], Tolerance::Quantized("q6_k");
    // llama.cpp's Q4_K_M mix: Q6_K head, blk.1 attn_v and ffn_down among Q4_K.
    llama_k_gguf_q4_k_m: "llama_k", "gguf/llama_k.q4_k_m.gguf", [], Tolerance::Quantized("q4_k_m");
    // llama.cpp's Q4_1, Q5_0 and Q5_1 mixes (every matrix and the token
    // embedding in that format, the head Q6_K), compiled with default options.
    llama_k_gguf_q4_1: "llama_k", "gguf/llama_k.q4_1.gguf", [], Tolerance::Quantized("q4_1");
    llama_k_gguf_q5_0: "llama_k", "gguf/llama_k.q5_0.gguf", [], Tolerance::Quantized("q5_0");
    llama_k_gguf_q5_1: "llama_k", "gguf/llama_k.q5_1.gguf", [], Tolerance::Quantized("q5_1");
    // --dtype into the legacy formats: biased q/k/v projections, and experts.
    qwen2_hf_q5_1: "qwen2", "hf", ["--dtype", "q5_1"], Tolerance::Quantized("q5_1");
    qwen3_moe_hf_q5_0: "qwen3_moe", "hf", ["--dtype", "q5_0"], Tolerance::Quantized("q5_0");
    qwen3_moe_hf_q4_1: "qwen3_moe", "hf", ["--dtype", "q4_1"], Tolerance::Quantized("q4_1");
}

/// An architecture forge does not know fails with one line naming the
/// checkpoint's config and the architecture, and leaves no output behind.
#[test]
fn unsupported_architecture_fails_cleanly() {
    let dir = case_dir("unsupported_architecture");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let source = repo_root().join("tests/fixtures/llama3/hf");
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(source.join(file), model.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(source.join("config.json")).unwrap();
    let config = config
        .replace("LlamaForCausalLM", "FlamingoForCausalLM")
        .replace("\"llama\"", "\"flamingo\"");
    std::fs::write(model.join("config.json"), config).unwrap();
    let out = dir.join("project");
    let (code, _, stderr) =
        support::forge(&["compile", model.to_str().unwrap(), out.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("config.json") && stderr.contains("flamingo"),
        "{stderr}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "temporary files left in {}",
        dir.display()
    );
}

/// Compiling into an existing directory is refused rather than mixing two projects.
#[test]
fn existing_output_directory_is_refused() {
    let dir = case_dir("existing_output");
    let model = repo_root().join("tests/fixtures/llama3/hf");
    let (code, _, stderr) = support::forge(&[
        "compile",
        model.to_str().unwrap(),
        dir.to_str().unwrap(),
        "--no-weights",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");
}
