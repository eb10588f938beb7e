//! `logits`: the f32 logits of every position of a token list, as `.npy`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};

use super::{load, Project, WeightsArg};
use crate::gpu::GpuOptions;
use crate::model::{CompiledModel, Readback};
use crate::npy;
use crate::session::Output;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// One batched pass over all tokens.
    Prefill,
    /// One token at a time through the decode path.
    Decode,
}

#[derive(Args)]
pub(super) struct LogitsArgs {
    /// Comma-separated token ids, e.g. 1,2,3.
    #[arg(long)]
    tokens: String,
    #[arg(long, value_enum, default_value_t = Mode::Prefill)]
    mode: Mode,
    /// Prefill: tokens per pass (default: the model's prefill chunk), to run
    /// a short list as several passes.
    #[arg(long)]
    pass_tokens: Option<usize>,
    /// Output file: f32 [tokens, vocab].
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    weights: WeightsArg,
}

pub(super) fn logits<M: CompiledModel>(
    project: &Project,
    args: LogitsArgs,
    err: &mut dyn Write,
) -> Result<()> {
    let vocab = M::INFO.vocab_size;
    let tokens = parse_tokens(&args.tokens, vocab)?;
    if tokens.len() > M::INFO.context_length {
        bail!(
            "--tokens has {} ids; the model's context holds {}",
            tokens.len(),
            M::INFO.context_length
        );
    }
    let mut session = load::<M>(project, args.weights.weights, GpuOptions::default())?;
    if let Some(n) = args.pass_tokens {
        session
            .set_pass_tokens(n)
            .map_err(|e| anyhow!("--pass-tokens: {e}"))?;
    }
    let mut expect = |tokens: &[u32], readback| -> Result<Vec<f32>> {
        match session.forward(tokens, readback)? {
            Output::Logits(v) if v.len() == tokens.len() * vocab => Ok(v),
            other => bail!(
                "the model returned {} where {} x {vocab} logits were expected",
                other.describe(),
                tokens.len()
            ),
        }
    };
    let data = match args.mode {
        Mode::Prefill => expect(&tokens, Readback::AllLogits)?,
        Mode::Decode => {
            let mut all = Vec::with_capacity(tokens.len() * vocab);
            for &token in &tokens {
                all.extend(expect(&[token], Readback::LastLogits)?);
            }
            all
        }
    };
    npy::write_f32(&args.out, &[tokens.len(), vocab], &data)?;
    writeln!(
        err,
        "wrote {} ([{}, {vocab}] f32)",
        args.out.display(),
        tokens.len()
    )?;
    Ok(())
}

/// `1,2,3` as ids, each inside the vocabulary.
fn parse_tokens(list: &str, vocab: usize) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for item in list.split(',').map(str::trim) {
        let id: u32 = item
            .parse()
            .map_err(|_| anyhow!("--tokens: '{item}' is not a token id (expected e.g. 1,2,3)"))?;
        if id as usize >= vocab {
            bail!(
                "--tokens: id {id} is out of range: the vocabulary has {vocab} tokens (0..{})",
                vocab - 1
            );
        }
        ids.push(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lists_parse_with_spaces_and_refuse_bad_ids() {
        assert_eq!(parse_tokens("1, 2,3", 10).unwrap(), [1, 2, 3]);
        let err = parse_tokens("1,x", 10).unwrap_err().to_string();
        assert!(err.contains("'x' is not a token id"), "{err}");
        let err = parse_tokens("1,,2", 10).unwrap_err().to_string();
        assert!(err.contains("'' is not a token id"), "{err}");
        let err = parse_tokens("10", 10).unwrap_err().to_string();
        assert!(
            err.contains("out of range") && err.contains("(0..9)"),
            "{err}"
        );
    }
}
