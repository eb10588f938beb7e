//! hf, compiled by forge. The command line (generate, chat,
//! logits, bench) is forge-runtime's; this file says what it needs to know about
//! the project, and `model.rs` is the model.

mod model;

use forge_runtime::cli::{ChatInfo, Project, SamplingDefaults, TextInfo};
use forge_runtime::weights::WeightsSpec;

const PROJECT: Project = Project {
    package: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    // weights.gguf and tokenizer.json are found here wherever the binary runs from.
    dir: env!("CARGO_MANIFEST_DIR"),
    // Compiled when the program starts (by Metal, or by msl-emu elsewhere).
    kernels: include_str!("../shaders/kernels.metal"),
    weights: WeightsSpec {
        fingerprint: "614a584ead0cfb53",
        model_hint: "../../tests/fixtures/qwen2_moe/hf",
        export_flags: " --dtype q8_0",
    },
    text: TextInfo {
        has_tokenizer: true,
        bos_id: None,
        add_bos: false,
        eos_ids: &[383, 381],
    },
    // Sampling defaults: llama.cpp's defaults.
    sampling: SamplingDefaults {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.0,
    },
    // The checkpoint's own chat template; edit the file and rebuild to change it.
    chat: ChatInfo {
        template: include_str!("../chat_template.jinja"),
        fallback: None,
        bos_token: None,
        eos_token: Some("<|im_end|>"),
    },
};

fn main() -> std::process::ExitCode {
    forge_runtime::cli::main::<model::Model>(&PROJECT)
}
