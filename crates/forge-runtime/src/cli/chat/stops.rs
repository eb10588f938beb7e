//! The tokens that end an assistant's turn: the checkpoint's end-of-sequence
//! ids, the special token the template writes after a reply, and the
//! end-of-turn markers llama.cpp recognises by their text (it marks them
//! end-of-generation whatever the GGUF's `eos_token_id` says, e.g. ChatML's
//! `<|im_end|>` and Gemma's `<end_of_turn>`).

use crate::chat_template::{ChatInputs, ChatTemplate};
use crate::text::{Decode, Tokenizer};

/// Texts of end-of-turn tokens, as llama.cpp's vocabulary loader lists them.
const END_OF_TURN_TEXTS: &[&str] = &[
    "<|im_end|>",
    "<end_of_turn>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<｜end▁of▁sentence｜>",
];

/// Every id that ends a reply, in a fixed order without repeats.
pub(in crate::cli) fn stop_ids(
    eos_ids: &[u32],
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
) -> Vec<u32> {
    let mut ids: Vec<u32> = Vec::new();
    let mut add = |id: u32| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    eos_ids.iter().copied().for_each(&mut add);
    if let Some(id) = template_end_of_turn(template, tokenizer) {
        add(id);
    }
    END_OF_TURN_TEXTS
        .iter()
        .filter_map(|text| special_token(tokenizer, text))
        .for_each(add);
    ids
}

/// The id of `text` when it is one special token: a single id that decodes
/// to nothing (special tokens are left out of decoded text).
fn special_token(tokenizer: &Tokenizer, text: &str) -> Option<u32> {
    match tokenizer.tokenize(text, false, true).ok()?.as_slice() {
        [id] if tokenizer.decode(&[*id]).ok()?.is_empty() => Some(*id),
        _ => None,
    }
}

/// The first special token the template writes after an assistant's reply.
fn template_end_of_turn(template: &ChatTemplate, tokenizer: &Tokenizer) -> Option<u32> {
    const REPLY: &str = "forge-probe-reply";
    let probe = ChatInputs::from_messages([("user", "forge-probe-question"), ("assistant", REPLY)]);
    let rendered = template.render(&probe, false).ok()?;
    let tail = &rendered[rendered.rfind(REPLY)? + REPLY.len()..];
    let ids = tokenizer.tokenize(tail, false, true).ok()?;
    ids.into_iter()
        .find(|&id| tokenizer.decode(&[id]).is_ok_and(|t| t.is_empty()))
}
