//! `tokenize`: the ids a text starts the model with, on one line, comma-separated (`2,9259,236764`)
//! — llama.cpp's `llama-tokenize --ids` without the brackets and spaces, in the form `logits
//! --tokens` reads. The BOS (or EOS) the model adds to a prompt is included, as llama-tokenize
//! includes it; no weights are loaded.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use clap::Args;

use super::Project;
use crate::model::CompiledModel;
use crate::text::Tokenizer;

#[derive(Args)]
pub(super) struct TokenizeArgs {
    /// The text to tokenize.
    #[arg(long, allow_hyphen_values = true)]
    text: String,
    /// Leave out the BOS (or EOS) the model adds to a prompt (llama-tokenize's --no-bos).
    #[arg(long)]
    no_bos: bool,
    /// Tokenize text that spells a control token, such as `<|im_start|>`, as plain text
    /// (llama-tokenize's --no-parse-special).
    #[arg(long)]
    no_parse_special: bool,
}

pub(super) fn tokenize<M: CompiledModel>(
    project: &Project,
    args: TokenizeArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let tokenizer = open_tokenizer::<M>(project, "tokenize")?;
    let ids = tokenizer.tokenize(&args.text, !args.no_bos, !args.no_parse_special)?;
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    writeln!(out, "{}", ids.join(","))?;
    Ok(())
}

/// The project's tokenizer, adding the checkpoint's BOS to prompts when it asks for one; `verb`
/// names the subcommand in the error when the checkpoint came without a tokenizer.
pub(super) fn open_tokenizer<M: CompiledModel>(project: &Project, verb: &str) -> Result<Tokenizer> {
    let text = &project.text;
    if !text.has_tokenizer {
        bail!(
            "{verb} needs a tokenizer and the checkpoint {} was compiled from has none; `logits --tokens` takes token ids instead",
            M::INFO.name
        );
    }
    let bos = text.bos_id.filter(|_| text.add_bos);
    Ok(Tokenizer::open(Path::new(project.dir))?.with_hf_bos(bos))
}

/// The ids a prompt rendered by the chat template starts a sequence with: the
/// model's BOS first, but only once when the template writes `bos_token` itself.
pub(super) fn prompt_ids(
    tokenizer: &Tokenizer,
    bos_id: Option<u32>,
    text: &str,
) -> Result<Vec<u32>> {
    let mut ids = tokenizer.tokenize(text, true, true)?;
    if let Some(bos) = bos_id {
        if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
            ids.remove(0);
        }
    }
    Ok(ids)
}
