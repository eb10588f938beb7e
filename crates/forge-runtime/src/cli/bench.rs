//! `bench`: prefill and decode speed, and on msl-emu the work per decode token.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use super::{load, per_second, Project, WeightsArg};
use crate::gpu::{GpuOptions, KernelStats, Stats};
use crate::model::CompiledModel;

#[derive(Args)]
pub(super) struct BenchArgs {
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 32)]
    gen_tokens: usize,
    /// msl-emu: time uninstrumented kernels instead of counting bytes read and written.
    #[arg(long)]
    no_traffic: bool,
    /// msl-emu: a table of the work per decode token of every kernel (calls,
    /// threadgroups, threads, device bytes, loaded bytes, load efficiency).
    #[arg(long, conflicts_with = "no_traffic")]
    kernels: bool,
    #[command(flatten)]
    weights: WeightsArg,
}

pub(super) fn bench<M: CompiledModel>(
    project: &Project,
    args: BenchArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let info = M::INFO;
    if args.prompt_tokens == 0 || args.gen_tokens == 0 {
        bail!("--prompt-tokens and --gen-tokens must be at least 1");
    }
    if args.prompt_tokens + args.gen_tokens > info.context_length {
        bail!(
            "--prompt-tokens + --gen-tokens is {}; the model's context holds {}",
            args.prompt_tokens + args.gen_tokens,
            info.context_length
        );
    }
    let options = GpuOptions {
        count_traffic: !args.no_traffic,
    };
    let mut session = load::<M>(project, args.weights.weights, options)?;
    let backend = session.model().gpu().backend();
    let counting = options.count_traffic && backend == "msl-emu";
    writeln!(out, "model: {}; backend: {backend}", info.name)?;
    if counting {
        writeln!(out, "note: kernels are instrumented to count memory traffic, which makes them several times slower (--no-traffic times them without)")?;
    }
    // Arbitrary ids spread over the vocabulary: speed does not depend on which tokens they are.
    let prompt: Vec<u32> = (0..args.prompt_tokens)
        .map(|i| ((i * 7919 + 13) % info.vocab_size) as u32)
        .collect();
    // Warm-up (first command buffers, page faults on the weights), then start from position 0.
    session.argmax(&prompt[..1])?;
    session.reset();
    session.model().gpu().take_stats();

    let start = Instant::now();
    let mut token = session.argmax(&prompt)?;
    let prefill_time = start.elapsed();
    let prefill_stats = session.model().gpu().take_stats();
    let start = Instant::now();
    for _ in 0..args.gen_tokens {
        token = session.argmax(&[token])?;
    }
    let decode_time = start.elapsed();
    let decode_kernels = session.model().gpu().take_kernel_stats();
    let decode_stats = decode_kernels.as_ref().map(|k| {
        let mut total = Stats::default();
        k.iter().for_each(|(_, s)| total.add(s));
        total
    });

    let mut report = |name: &str, count: usize, time: Duration| {
        writeln!(
            out,
            "{name}: {count} tokens in {:.3} s, {:.2} tok/s",
            time.as_secs_f64(),
            per_second(count, time)
        )
    };
    report("prefill", args.prompt_tokens, prefill_time)?;
    report("decode", args.gen_tokens, decode_time)?;
    if let (Some(p), Some(d)) = (prefill_stats, decode_stats) {
        let n = args.gen_tokens as f64;
        writeln!(
            out,
            "prefill total: {} dispatches, {} threads, {} bytes read, {} bytes written",
            p.dispatches, p.threads, p.bytes_read, p.bytes_written
        )?;
        writeln!(
            out,
            "decode per token: {:.1} dispatches, {:.0} threads, {:.0} bytes read, {:.0} bytes written",
            d.dispatches as f64 / n,
            d.threads as f64 / n,
            d.bytes_read as f64 / n,
            d.bytes_written as f64 / n
        )?;
        writeln!(
            out,
            "decode per token: {:.0} bytes of device memory (distinct 64-byte lines per dispatch)",
            d.line_bytes_read as f64 / n
        )?;
        writeln!(
            out,
            "decode per token: {:.1} memory barriers on Metal's concurrent encoder",
            d.barriers as f64 / n
        )?;
        if !counting {
            writeln!(
                out,
                "(bytes are not counted without traffic instrumentation)"
            )?;
        }
    }
    if args.kernels {
        match &decode_kernels {
            Some(kernels) if counting => kernel_table(out, kernels, args.gen_tokens)?,
            _ => writeln!(
                out,
                "(--kernels needs msl-emu's counters; {backend} has none)"
            )?,
        }
    }
    Ok(())
}

/// One row per kernel of the work per decode token, most device bytes first.
fn kernel_table(out: &mut dyn Write, kernels: &KernelStats, tokens: usize) -> Result<()> {
    let n = tokens as f64;
    let mut rows: Vec<&(String, Stats)> = kernels.iter().collect();
    rows.sort_by_key(|(_, s)| std::cmp::Reverse(s.line_bytes_read));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(6).max(6);
    writeln!(out, "decode kernels, per token:")?;
    writeln!(
        out,
        "{:<width$} {:>7} {:>9} {:>10} {:>14} {:>14} {:>9}",
        "kernel", "calls", "groups", "threads", "device bytes", "loaded bytes", "load_eff%"
    )?;
    let mut total = Stats::default();
    let row = |out: &mut dyn Write, name: &str, s: &Stats| {
        writeln!(
            out,
            "{name:<width$} {:>7.1} {:>9.0} {:>10.0} {:>14.0} {:>14.0} {:>9.1}",
            s.dispatches as f64 / n,
            s.threadgroups as f64 / n,
            s.threads as f64 / n,
            s.line_bytes_read as f64 / n,
            s.bytes_read as f64 / n,
            s.load_efficiency_percent()
        )
    };
    for (name, s) in rows {
        total.add(s);
        row(out, name, s)?;
    }
    row(out, "total", &total)?;
    Ok(())
}
