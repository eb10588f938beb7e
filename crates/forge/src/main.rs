//! The `forge` command line. Thin: argument parsing, progress and error
//! reporting; the work is done by the library crates.

mod compile;
mod export_weights;
mod inspect;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "forge",
    version,
    about = "Compile a language model checkpoint into a Metal inference project"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a checkpoint into a standalone Cargo project (kernels, host
    /// code and weights.gguf) in OUT_DIR, which must not exist yet.
    Compile {
        model: PathBuf,
        out_dir: PathBuf,
        /// Weight dtype of every matrix on the GPU: f32, f16, bf16, q8_0, q4_0,
        /// q4_1, q5_0, q5_1, q4_k, q5_k or q6_k (default: each tensor keeps
        /// its own; formats no kernel reads become q8_0, said on stderr).
        #[arg(long)]
        dtype: Option<String>,
        /// KV-cache dtype: f16 or f32 (default: f32 for f32 weights, else f16).
        #[arg(long)]
        kv_dtype: Option<String>,
        /// Positions the KV cache holds (default: the model's, at most 4096).
        #[arg(long)]
        context: Option<u64>,
        /// Cargo package and binary name (default: from the model's name).
        #[arg(long)]
        name: Option<String>,
        /// Write the project without weights.gguf (make it later with `forge export-weights`).
        #[arg(long)]
        no_weights: bool,
    },
    /// Describe a checkpoint: a Hugging Face model directory or a GGUF file.
    Inspect {
        model: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the weights file a project compiled with the same --dtype reads
    /// (GGUF, 16 KiB-aligned, in the project's layout).
    ExportWeights {
        model: PathBuf,
        out_file: PathBuf,
        /// Weight dtype of the matrices, as for `compile` (default: each
        /// tensor's own when the GPU reads it, else q8_0).
        #[arg(long)]
        dtype: Option<String>,
    },
    /// Check Metal source files as the Metal compiler would (address spaces, no
    /// double, threadgroup memory and thread limits), printing file:line
    /// diagnostics, and report each kernel's threadgroup memory and thread limit.
    CheckMsl {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Compile {
            model,
            out_dir,
            dtype,
            kv_dtype,
            context,
            name,
            no_weights,
        } => {
            let options = forge_codegen::plan::CompileOptions {
                dtype: compile::parse_dtype("--dtype", dtype.as_deref())?,
                kv_dtype: compile::parse_dtype("--kv-dtype", kv_dtype.as_deref())?,
                context,
                name,
            };
            compile::compile(&model, &out_dir, &options, !no_weights)
        }
        Command::Inspect { model, json } => {
            let model = forge_frontend::load_model(&model).map_err(|e| e.to_string())?;
            let summary = inspect::summarize(&model);
            if json {
                let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                println!("{}", inspect::render_text(&summary));
            }
            Ok(())
        }
        Command::ExportWeights {
            model,
            out_file,
            dtype,
        } => export_weights::export_weights(&model, &out_file, dtype.as_deref()),
        Command::CheckMsl { files } => {
            let mut failed = 0;
            for file in &files {
                match check_msl(file) {
                    Ok(report) => print!("{report}"),
                    Err(diagnostics) => {
                        eprintln!("{diagnostics}");
                        failed += 1;
                    }
                }
            }
            match failed {
                0 => Ok(()),
                n => Err(format!(
                    "{n} of {} Metal files failed the check",
                    files.len()
                )),
            }
        }
    }
}

/// The strict check of one file, then what each kernel asks of a threadgroup
/// (msl-emu compiles it, refusing a kernel over Metal's limits at its line).
fn check_msl(file: &std::path::Path) -> Result<String, String> {
    msl_emu::check_syntax(file).map_err(|d| d.to_string())?;
    let library = msl_emu::Library::from_file(file, &msl_emu::CompileOptions::default())
        .map_err(|e| e.to_string())?;
    let mut report = format!("{}: passes the strict check\n", file.display());
    for name in library.function_names() {
        let pipeline = library
            .pipeline(&name, &msl_emu::FunctionConstants::default())
            .map_err(|e| e.to_string())?;
        report += &format!(
            "  {name}: {} bytes of threadgroup memory declared, at most {} threads per threadgroup\n",
            pipeline.static_threadgroup_memory(),
            pipeline.max_total_threads_per_threadgroup()
        );
    }
    Ok(report)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
