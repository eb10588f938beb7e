//! The generated binary's command line, written once for every model: a
//! project's `main.rs` describes itself in a [`Project`] and calls [`main`].

mod bench;
mod chat;
mod chat_template;
mod generate;
mod logits;
mod sampling;
mod serve;
mod tokenize;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use chat::report::{verbose_ids, verbose_stop_ids, verbose_texts, TurnReport};

use crate::gpu::{Gpu, GpuOptions};
use crate::model::CompiledModel;
use crate::session::Session;
use crate::weights::{WeightsFile, WeightsSpec};

/// Everything about a generated project that is not in its `model.rs`.
#[derive(Clone, Copy, Debug)]
pub struct Project {
    /// The binary's name, for `--help`.
    pub package: &'static str,
    pub version: &'static str,
    /// The project directory: `weights.gguf` and `tokenizer.json` are found
    /// there wherever the binary runs from.
    pub dir: &'static str,
    /// The text of `shaders/kernels.metal`.
    pub kernels: &'static str,
    pub weights: WeightsSpec,
    pub text: TextInfo,
    pub sampling: SamplingDefaults,
    pub chat: ChatInfo,
}

/// How text becomes tokens and where generation ends.
#[derive(Clone, Copy, Debug)]
pub struct TextInfo {
    /// Whether the checkpoint had a tokenizer (`tokenizer.json` in the project).
    pub has_tokenizer: bool,
    /// Prepended to prompts when `add_bos` says the model was trained that way.
    pub bos_id: Option<u32>,
    pub add_bos: bool,
    /// Ids that end generation, from the tokenizer and generation config.
    pub eos_ids: &'static [u32],
}

/// The chat template `chat` and `chat-template` render.
#[derive(Clone, Copy, Debug)]
pub struct ChatInfo {
    /// The Jinja source of the project's `chat_template.jinja`.
    pub template: &'static str,
    /// The format's name when the checkpoint had no template and forge wrote
    /// a fallback (said once on stderr); `None` for the checkpoint's own.
    pub fallback: Option<&'static str>,
    /// The special tokens' text, as the template's `bos_token`/`eos_token`.
    pub bos_token: Option<&'static str>,
    pub eos_token: Option<&'static str>,
}

/// Sampling defaults of `generate`, from the checkpoint or llama.cpp.
#[derive(Clone, Copy, Debug)]
pub struct SamplingDefaults {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
}

/// Generate text, chat, write logits, measure speed.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Continue a prompt, streaming the text to stdout as it is produced.
    Generate(generate::GenerateArgs),
    /// Write the logits of every position of a token list to a .npy file.
    Logits(logits::LogitsArgs),
    /// Measure prefill and decode speed (and, on msl-emu, work per decode token).
    Bench(bench::BenchArgs),
    /// Chat: each line of stdin is a message; replies stream to stdout.
    Chat(chat::ChatArgs),
    /// Print the prompt the model's chat template makes of a conversation (a JSON file).
    ChatTemplate(chat_template::ChatTemplateArgs),
    /// Print the token ids of a text, comma-separated (BOS included when the model adds one).
    Tokenize(tokenize::TokenizeArgs),
    /// Serve the OpenAI API (chat and text completions, streaming, prompt cache) over HTTP.
    Serve(serve::ServeArgs),
}

/// `--weights`, shared by every subcommand that loads the model.
#[derive(Args)]
struct WeightsArg {
    /// Weights file (default: weights.gguf in the project directory).
    #[arg(long)]
    weights: Option<PathBuf>,
}

/// The project's `main`: parses `std::env::args`, runs the subcommand and
/// turns any error into one line on stderr with exit code 1.
pub fn main<M: CompiledModel>(project: &Project) -> ExitCode {
    let code = run::<M>(
        project,
        std::env::args_os(),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// [`main`] with its arguments and streams given: the exit code.
pub fn run<M: CompiledModel>(
    project: &Project,
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let command = match parse::<M>(project, args) {
        Ok(command) => command,
        // Help and version go to stdout and succeed.
        Err(e) if !e.use_stderr() => {
            let _ = write!(out, "{}", e.render());
            return 0;
        }
        // Usage errors become one line like every other error.
        Err(e) => {
            let text = e.render().to_string();
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
                .collect();
            let _ = writeln!(err, "{} (see --help)", parts.join(" "));
            return 1;
        }
    };
    let result = match command {
        Command::Generate(args) => generate::generate::<M>(project, args, out, err),
        Command::Logits(args) => logits::logits::<M>(project, args, err),
        Command::Bench(args) => bench::bench::<M>(project, args, out),
        Command::Chat(args) => chat::chat::<M>(project, args, input, out, err),
        Command::ChatTemplate(args) => chat_template::chat_template(project, args, out, err),
        Command::Tokenize(args) => tokenize::tokenize::<M>(project, args, out),
        Command::Serve(args) => serve::serve::<M>(project, args, err),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = out.flush();
            let _ = writeln!(err, "error: {e:#}");
            1
        }
    }
}

/// The command line with this project's name, version and sampling defaults.
fn parse<M: CompiledModel>(
    project: &Project,
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Command, clap::Error> {
    let s = &project.sampling;
    let mut command = Cli::command()
        .name(project.package)
        .bin_name(project.package)
        .version(project.version)
        .about(format!(
            "{}, compiled by forge: generate text, chat, write logits, measure speed.",
            M::INFO.name
        ));
    for name in sampling::SAMPLING_SUBCOMMANDS {
        command = command.mut_subcommand(name, |g| {
            g.mut_arg("temperature", default_value(s.temperature))
                .mut_arg("top_k", default_value(s.top_k))
                .mut_arg("top_p", default_value(s.top_p))
                .mut_arg("min_p", default_value(s.min_p))
                .mut_arg("repeat_penalty", default_value(s.repeat_penalty))
        });
    }
    let matches = command.try_get_matches_from(args)?;
    Ok(Cli::from_arg_matches(&matches)?.command)
}

/// Gives an argument a default chosen at run time (the project's, not the runtime's).
fn default_value(value: impl ToString) -> impl FnOnce(clap::Arg) -> clap::Arg {
    let value = value.to_string();
    move |arg| arg.required(false).default_value(value)
}

/// Loads the weights (default: the project's `weights.gguf`) into a new session.
fn load<M: CompiledModel>(
    project: &Project,
    weights: Option<PathBuf>,
    options: GpuOptions,
) -> Result<Session<M>> {
    let path = weights.unwrap_or_else(|| Path::new(project.dir).join("weights.gguf"));
    if !path.is_file() {
        bail!(
            "{}: no such file (forge compile writes it unless --no-weights was given; `forge export-weights` re-creates it)",
            path.display()
        );
    }
    let file = WeightsFile::open(&path, &project.weights)?;
    let gpu = Gpu::new(project.kernels, options)?;
    let model = M::load(gpu, &file).with_context(|| format!("loading {}", path.display()))?;
    model.gpu().store_pipelines();
    Ok(Session::new(model))
}

fn per_second(count: usize, time: std::time::Duration) -> f64 {
    count as f64 / time.as_secs_f64().max(1e-9)
}
