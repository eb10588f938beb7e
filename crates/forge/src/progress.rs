//! The progress bar of weight exports (indicatif), drawn on stderr only when
//! it is a terminal, so logs and pipes get no control characters.

use std::time::Duration;

use forge_codegen::export::ExportProgress;
use indicatif::{ProgressDrawTarget, ProgressStyle};

/// `weights [######..................]  25% 5.0/20.0 MB 3/10 blk.0.x`, cut to
/// the terminal's width (`wide_msg`).
const TEMPLATE: &str = "{prefix} [{bar:24}] {percent:>3}% {bytes_mb} {wide_msg}";
/// Redraws at most this often: enough to look live, rare enough to cost nothing.
const REDRAWS_PER_SECOND: u8 = 10;

pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    /// A bar on stderr, hidden unless stderr is a terminal.
    pub fn new(label: &str) -> ProgressBar {
        ProgressBar::with_target(
            label,
            ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND),
        )
    }

    fn with_target(label: &str, target: ProgressDrawTarget) -> ProgressBar {
        let style = ProgressStyle::with_template(TEMPLATE)
            .expect("the template is valid")
            .progress_chars("#.")
            .with_key(
                "bytes_mb",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let mb = |bytes: u64| bytes as f64 / 1e6;
                    let total = state.len().unwrap_or(0);
                    let _ = write!(w, "{:.1}/{:.1} MB", mb(state.pos()), mb(total));
                },
            );
        let bar = indicatif::ProgressBar::with_draw_target(None, target)
            .with_style(style)
            .with_prefix(label.to_string());
        ProgressBar { bar }
    }

    pub fn update(&mut self, progress: &ExportProgress) {
        self.bar.set_length(progress.bytes_total);
        self.bar.set_position(progress.bytes_done);
        let message = message(progress, self.bar.elapsed());
        match progress.current {
            Some(_) => self.bar.set_message(message),
            None => self.bar.finish_with_message(message),
        }
    }

    /// Leaves the bar's last state on screen, so later output starts on a fresh line.
    pub fn finish(&mut self) {
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

/// `3/10 blk.0.x` while exporting, `10/10 in 1.5 s` at the end.
fn message(p: &ExportProgress, elapsed: Duration) -> String {
    let count = format!("{}/{}", p.tensors_done, p.tensors_total);
    match p.current {
        Some(name) => format!("{count} {name}"),
        None => format!("{count} in {:.1} s", elapsed.as_secs_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;

    fn at(done: u64, total: u64, current: Option<&str>) -> ExportProgress<'_> {
        ExportProgress {
            tensors_done: 3,
            tensors_total: 10,
            bytes_done: done,
            bytes_total: total,
            current,
        }
    }

    /// The bar as an 80-column terminal shows it after `updates`.
    fn drawn(updates: &[ExportProgress]) -> String {
        let term = InMemoryTerm::new(4, 80);
        let mut bar = ProgressBar::with_target(
            "weights",
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        );
        for p in updates {
            bar.update(p);
        }
        bar.finish();
        term.contents()
    }

    #[test]
    fn bar_fills_with_bytes() {
        let line = drawn(&[at(5_000_000, 20_000_000, Some("blk.0.x"))]);
        assert_eq!(
            line,
            "weights [######..................]  25% 5.0/20.0 MB 3/10 blk.0.x"
        );
        let done = drawn(&[at(20_000_000, 20_000_000, None)]);
        assert!(
            done.starts_with(&format!(
                "weights [{}] 100% 20.0/20.0 MB 3/10 in ",
                "#".repeat(24)
            )),
            "{done}"
        );
        assert!(done.ends_with(" s"), "{done}");
    }

    #[test]
    fn long_names_are_cut_to_the_terminal_width() {
        let name = "é".repeat(200);
        let line = drawn(&[at(1, 2, Some(&name))]);
        assert!(line.chars().count() <= 80, "{line}");
        assert!(
            line.starts_with("weights [") && line.contains('é'),
            "{line}"
        );
    }

    #[test]
    fn the_finished_message_gives_the_time() {
        let m = message(&at(2, 2, None), Duration::from_millis(1500));
        assert_eq!(m, "3/10 in 1.5 s");
    }
}
