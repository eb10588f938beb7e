//! hf, compiled by forge: the command line (generate, logits, bench).

mod gpu;
mod model;
mod npy;
mod sampler;
mod text;
mod weights;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use model::{
    Model, Output, Readback, CONTEXT_LENGTH, MODEL_NAME, PENALTY_WINDOW, TOP_CANDIDATES, VOCAB_SIZE,
};
use sampler::{Rng, SamplingParams};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The kernels, compiled when the program starts (by Metal, or by msl-emu elsewhere).
const KERNELS: &str = include_str!("../shaders/kernels.metal");
/// weights.gguf and tokenizer.json are found here wherever the binary runs from.
const PROJECT_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Whether the checkpoint had a tokenizer (tokenizer.json next to Cargo.toml).
const HAS_TOKENIZER: bool = true;
/// Ids that end generation, from the checkpoint's tokenizer and generation config.
const EOS_IDS: &[u32] = &[383, 381];
/// Prepended to the prompt when ADD_BOS says the model was trained that way.
const BOS_ID: Option<u32> = None;
const ADD_BOS: bool = false;
/// Sampling defaults: the checkpoint's generation config; min-p and repeat penalty: llama.cpp's defaults.
const DEFAULT_TEMPERATURE: f32 = 0.7;
const DEFAULT_TOP_K: usize = 20;
const DEFAULT_TOP_P: f32 = 0.8;
const DEFAULT_MIN_P: f32 = 0.05;
const DEFAULT_REPEAT_PENALTY: f32 = 1.0;

/// hf, compiled by forge: generate text, write logits, measure speed.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Continue a prompt, streaming the text to stdout as it is produced.
    Generate(GenerateArgs),
    /// Write the logits of every position of a token list to a .npy file.
    Logits(LogitsArgs),
    /// Measure prefill and decode speed (and, on msl-emu, work per decode token).
    Bench(BenchArgs),
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(long)]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 picks the most likely token every time (greedy).
    #[arg(long, default_value_t = DEFAULT_TEMPERATURE, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample among the k most likely tokens; 0, or more than the GPU returns (model::TOP_CANDIDATES), means all it returns.
    #[arg(long, default_value_t = DEFAULT_TOP_K)]
    top_k: usize,
    /// Nucleus sampling: the smallest set of likely tokens whose probability reaches this.
    #[arg(long, default_value_t = DEFAULT_TOP_P, allow_negative_numbers = true)]
    top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one.
    #[arg(long, default_value_t = DEFAULT_MIN_P, allow_negative_numbers = true)]
    min_p: f32,
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this; 1 = off.
    #[arg(long, default_value_t = DEFAULT_REPEAT_PENALTY, allow_negative_numbers = true)]
    repeat_penalty: f32,
    /// Seed of the sampler (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Weights file (default: weights.gguf in the project directory).
    #[arg(long)]
    weights: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// One batched pass over all tokens.
    Prefill,
    /// One token at a time through the decode path.
    Decode,
}

#[derive(Args)]
struct LogitsArgs {
    /// Comma-separated token ids, e.g. 1,2,3.
    #[arg(long)]
    tokens: String,
    #[arg(long, value_enum, default_value_t = Mode::Prefill)]
    mode: Mode,
    /// Output file: f32 [tokens, vocab].
    #[arg(long)]
    out: PathBuf,
    /// Weights file (default: weights.gguf in the project directory).
    #[arg(long)]
    weights: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 32)]
    gen_tokens: usize,
    /// msl-emu: time uninstrumented kernels instead of counting bytes read and written.
    #[arg(long)]
    no_traffic: bool,
    /// Weights file (default: weights.gguf in the project directory).
    #[arg(long)]
    weights: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout and succeed.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // Usage errors become one line like every other error.
        Err(e) => {
            let text = e.render().to_string();
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
                .collect();
            eprintln!("{} (see --help)", parts.join(" "));
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Generate(args) => generate(args),
        Command::Logits(args) => logits(args),
        Command::Bench(args) => bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_model(weights: Option<PathBuf>, options: gpu::GpuOptions) -> Result<Model> {
    let path = weights.unwrap_or_else(|| Path::new(PROJECT_DIR).join("weights.gguf"));
    if !path.is_file() {
        bail!(
            "{}: no such file (forge compile writes it unless --no-weights was given; `forge export-weights` re-creates it)",
            path.display()
        );
    }
    let gpu = gpu::Gpu::new(KERNELS, options)?;
    Model::load(gpu, &path).with_context(|| format!("loading {}", path.display()))
}

fn generate(args: GenerateArgs) -> Result<()> {
    if !HAS_TOKENIZER {
        bail!("generate needs a tokenizer and the checkpoint {MODEL_NAME} was compiled from has none; `logits --tokens` takes token ids instead");
    }
    let params = SamplingParams {
        temperature: args.temperature,
        // The GPU returns TOP_CANDIDATES candidates: 0 and larger values mean all of them.
        top_k: match args.top_k {
            0 => TOP_CANDIDATES,
            k => k.min(TOP_CANDIDATES),
        },
        top_p: args.top_p,
        min_p: args.min_p,
    };
    params.check()?;
    if !(args.repeat_penalty.is_finite() && args.repeat_penalty > 0.0) {
        bail!(
            "--repeat-penalty must be a number > 0, not {}",
            args.repeat_penalty
        );
    }
    let tokenizer = text::Tokenizer::load(&Path::new(PROJECT_DIR).join("tokenizer.json"))?;
    let mut prompt = tokenizer.encode(&args.prompt)?;
    if let (true, Some(bos)) = (ADD_BOS, BOS_ID) {
        if prompt.first() != Some(&bos) {
            prompt.insert(0, bos);
        }
    }
    if prompt.is_empty() {
        bail!("the prompt is empty and this model starts without a BOS token: there is nothing to continue");
    }
    if prompt.len() > CONTEXT_LENGTH {
        bail!(
            "the prompt is {} tokens; the model's context holds {CONTEXT_LENGTH}",
            prompt.len()
        );
    }
    let mut model = load_model(args.weights, gpu::GpuOptions::default())?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut sampler = Sampler {
        params,
        repeat_penalty: args.repeat_penalty,
        rng: Rng::new(seed),
    };

    let mut history = prompt.clone();
    let start = Instant::now();
    let mut next = sampler.next(&mut model, &prompt, &history)?;
    let prefill_time = start.elapsed();
    let mut decode_time = Duration::ZERO;
    let mut stream = text::TextStream::new(&prompt[prompt.len() - 1..]);
    let mut out = std::io::stdout().lock();
    let mut generated = 0;
    let mut context_full = false;
    while generated < args.max_tokens && !EOS_IDS.contains(&next) {
        generated += 1;
        history.push(next);
        out.write_all(stream.push(&tokenizer, next)?.as_bytes())?;
        out.flush()?;
        if generated == args.max_tokens {
            break;
        }
        if model.position() >= CONTEXT_LENGTH {
            context_full = true;
            break;
        }
        let step = Instant::now();
        next = sampler.next(&mut model, &[next], &history)?;
        decode_time += step.elapsed();
    }
    out.write_all(stream.finish(&tokenizer)?.as_bytes())?;
    writeln!(out)?;
    // The summary goes to stderr: flush first so it never lands mid-line.
    out.flush()?;
    if context_full {
        eprintln!("stopped: the context of {CONTEXT_LENGTH} tokens is full");
    }
    eprintln!(
        "{generated} tokens; prefill {} tokens at {:.1} tok/s, decode {:.1} tok/s; seed {seed}",
        prompt.len(),
        per_second(prompt.len(), prefill_time),
        per_second(generated.saturating_sub(1), decode_time)
    );
    Ok(())
}

/// How each next token is chosen: on the GPU when greedy, else from its candidates.
struct Sampler {
    params: SamplingParams,
    repeat_penalty: f32,
    rng: Rng,
}

impl Sampler {
    /// Runs `tokens` through the model and picks the token that follows them.
    fn next(&mut self, model: &mut Model, tokens: &[u32], history: &[u32]) -> Result<u32> {
        if self.params.temperature == 0.0 && self.repeat_penalty == 1.0 {
            return match model.forward(tokens, Readback::Argmax)? {
                Output::Token(id) => Ok(id),
                other => bail!(
                    "the model returned {} where a token was expected",
                    describe(&other)
                ),
            };
        }
        let recent = if self.repeat_penalty == 1.0 {
            &[][..]
        } else {
            &history[history.len().saturating_sub(PENALTY_WINDOW)..]
        };
        let readback = Readback::Candidates {
            repeat_penalty: self.repeat_penalty,
            recent,
        };
        match model.forward(tokens, readback)? {
            Output::Candidates(candidates) => {
                sampler::sample(&candidates, &self.params, &mut self.rng)
                    .context("the model's candidate logits are all NaN")
            }
            other => bail!(
                "the model returned {} where candidates were expected",
                describe(&other)
            ),
        }
    }
}

fn describe(output: &Output) -> String {
    match output {
        Output::Logits(v) => format!("{} logits", v.len()),
        Output::Token(id) => format!("token {id}"),
        Output::Candidates(c) => format!("{} candidates", c.len()),
    }
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u64) << 32)
}

fn per_second(count: usize, time: Duration) -> f64 {
    count as f64 / time.as_secs_f64().max(1e-9)
}

fn parse_tokens(list: &str) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for item in list.split(',').map(str::trim) {
        let id: u32 = item.parse().map_err(|_| {
            anyhow::anyhow!("--tokens: '{item}' is not a token id (expected e.g. 1,2,3)")
        })?;
        if id as usize >= VOCAB_SIZE {
            bail!(
                "--tokens: id {id} is out of range: the vocabulary has {VOCAB_SIZE} tokens (0..{})",
                VOCAB_SIZE - 1
            );
        }
        ids.push(id);
    }
    Ok(ids)
}

/// The logits an output must hold for `positions` positions.
fn expect_logits(output: Output, positions: usize) -> Result<Vec<f32>> {
    match output {
        Output::Logits(v) if v.len() == positions * VOCAB_SIZE => Ok(v),
        other => bail!(
            "the model returned {} where {positions} x {VOCAB_SIZE} logits were expected",
            describe(&other)
        ),
    }
}

fn logits(args: LogitsArgs) -> Result<()> {
    let tokens = parse_tokens(&args.tokens)?;
    if tokens.len() > CONTEXT_LENGTH {
        bail!(
            "--tokens has {} ids; the model's context holds {CONTEXT_LENGTH}",
            tokens.len()
        );
    }
    let mut model = load_model(args.weights, gpu::GpuOptions::default())?;
    let data = match args.mode {
        Mode::Prefill => expect_logits(model.forward(&tokens, Readback::AllLogits)?, tokens.len())?,
        Mode::Decode => {
            let mut all = Vec::with_capacity(tokens.len() * VOCAB_SIZE);
            for &token in &tokens {
                all.extend(expect_logits(
                    model.forward(&[token], Readback::LastLogits)?,
                    1,
                )?);
            }
            all
        }
    };
    npy::write_f32(&args.out, &[tokens.len(), VOCAB_SIZE], &data)?;
    eprintln!(
        "wrote {} ([{}, {VOCAB_SIZE}] f32)",
        args.out.display(),
        tokens.len()
    );
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    if args.prompt_tokens == 0 || args.gen_tokens == 0 {
        bail!("--prompt-tokens and --gen-tokens must be at least 1");
    }
    if args.prompt_tokens + args.gen_tokens > CONTEXT_LENGTH {
        bail!(
            "--prompt-tokens + --gen-tokens is {}; the model's context holds {CONTEXT_LENGTH}",
            args.prompt_tokens + args.gen_tokens
        );
    }
    let options = gpu::GpuOptions {
        count_traffic: !args.no_traffic,
    };
    let mut model = load_model(args.weights, options)?;
    let counting = options.count_traffic && model.gpu().backend() == "msl-emu";
    println!("model: {MODEL_NAME}; backend: {}", model.gpu().backend());
    if counting {
        println!("note: kernels are instrumented to count memory traffic, which makes them several times slower (--no-traffic times them without)");
    }
    // Arbitrary ids spread over the vocabulary: speed does not depend on which tokens they are.
    let prompt: Vec<u32> = (0..args.prompt_tokens)
        .map(|i| ((i * 7919 + 13) % VOCAB_SIZE) as u32)
        .collect();
    // Warm-up (first command buffers, page faults on the weights), then start from position 0.
    argmax(&mut model, &prompt[..1])?;
    model.reset();
    model.gpu().take_stats();

    let start = Instant::now();
    let mut token = argmax(&mut model, &prompt)?;
    let prefill_time = start.elapsed();
    let prefill_stats = model.gpu().take_stats();
    let start = Instant::now();
    for _ in 0..args.gen_tokens {
        token = argmax(&mut model, &[token])?;
    }
    let decode_time = start.elapsed();
    let decode_stats = model.gpu().take_stats();

    let report = |name: &str, count: usize, time: Duration| {
        println!(
            "{name}: {count} tokens in {:.3} s, {:.2} tok/s",
            time.as_secs_f64(),
            per_second(count, time)
        );
    };
    report("prefill", args.prompt_tokens, prefill_time);
    report("decode", args.gen_tokens, decode_time);
    if let (Some(p), Some(d)) = (prefill_stats, decode_stats) {
        let n = args.gen_tokens as f64;
        println!(
            "prefill total: {} dispatches, {} threads, {} bytes read, {} bytes written",
            p.dispatches, p.threads, p.bytes_read, p.bytes_written
        );
        println!(
            "decode per token: {:.1} dispatches, {:.0} threads, {:.0} bytes read, {:.0} bytes written",
            d.dispatches as f64 / n,
            d.threads as f64 / n,
            d.bytes_read as f64 / n,
            d.bytes_written as f64 / n
        );
        println!(
            "decode per token: {:.0} bytes of device memory (distinct 64-byte lines per dispatch)",
            d.line_bytes_read as f64 / n
        );
        if !counting {
            println!("(bytes are not counted without traffic instrumentation)");
        }
    }
    Ok(())
}

fn argmax(model: &mut Model, tokens: &[u32]) -> Result<u32> {
    match model.forward(tokens, Readback::Argmax)? {
        Output::Token(id) => Ok(id),
        other => bail!(
            "the model returned {} where a token was expected",
            describe(&other)
        ),
    }
}
