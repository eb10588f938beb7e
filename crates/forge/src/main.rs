//! The `forge` command line. Thin: argument parsing, progress and error
//! reporting; the work is done by the library crates.

mod inspect;

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
    /// Describe a checkpoint: a Hugging Face model directory or a GGUF file.
    Inspect {
        model: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check Metal source files as the Metal compiler would (address spaces, no
    /// double), printing file:line diagnostics.
    CheckMsl {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
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
        Command::CheckMsl { files } => {
            let mut failed = 0;
            for file in &files {
                if let Err(diagnostics) = msl_emu::check_syntax(file) {
                    eprintln!("{diagnostics}");
                    failed += 1;
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
