//! The project's `chat_template.jinja`: the checkpoint's own template with
//! its special tokens, or forge's fallback (Gemma's turns for Gemma, ChatML
//! otherwise) with the special tokens' text from the vocabulary.

use std::path::Path;

use forge_codegen::project::chat_template::{ProjectChatTemplate, CHAT_TEMPLATE_FILE};
use forge_codegen::project::render_project;

fn fixture(name: &str) -> forge_ir::Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
        .join("hf");
    forge_frontend::load_model(&path).unwrap()
}

#[test]
fn the_checkpoints_own_template_is_written_as_is() {
    let model = fixture("qwen2");
    let own = model.chat_template.clone().unwrap();
    let project = render_project(&model, &Default::default()).unwrap();
    let file = project
        .files
        .iter()
        .find(|f| f.path == Path::new(CHAT_TEMPLATE_FILE))
        .unwrap();
    assert_eq!(file.contents, own.source);
    let chat = ProjectChatTemplate::for_model(&model);
    assert_eq!(chat.fallback, None);
    assert_eq!(chat.eos_token.as_deref(), Some("<|im_end|>"));
}

#[test]
fn without_a_template_gemma_gets_its_turn_format_and_others_chatml() {
    let mut gemma = fixture("gemma3_text");
    gemma.chat_template = None;
    let chat = ProjectChatTemplate::for_model(&gemma);
    assert_eq!(chat.fallback.as_deref(), Some("Gemma"));
    assert!(chat.source.contains("<start_of_turn>"), "{}", chat.source);
    assert_eq!(chat.bos_token.as_deref(), Some("<bos>"));
    assert_eq!(chat.eos_token.as_deref(), Some("<eos>"));

    let mamba = fixture("mamba");
    assert!(
        mamba.chat_template.is_none(),
        "the mamba fixture has no template"
    );
    let chat = ProjectChatTemplate::for_model(&mamba);
    assert_eq!(chat.fallback.as_deref(), Some("ChatML"));
    assert!(chat.source.contains("<|im_start|>"), "{}", chat.source);
    assert_eq!(chat.bos_token.as_deref(), Some("<|endoftext|>"));
}
