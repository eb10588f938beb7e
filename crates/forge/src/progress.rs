//! A one-line progress bar for weight exports, drawn on stderr only when it
//! is a terminal, so logs and pipes get no control characters.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use forge_codegen::export::ExportProgress;

/// Redraws at most this often: enough to look live, rare enough to cost nothing.
const REDRAW: Duration = Duration::from_millis(100);
/// Cells of the bar itself.
const BAR_CELLS: usize = 24;
/// The whole line stays within a classic 80-column terminal.
const LINE_WIDTH: usize = 79;

pub struct ProgressBar {
    label: String,
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
}

impl ProgressBar {
    pub fn new(label: &str) -> ProgressBar {
        ProgressBar {
            label: label.to_string(),
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
        }
    }

    pub fn update(&mut self, progress: &ExportProgress) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let finished = progress.current.is_none();
        if !finished && self.last_draw.is_some_and(|t| now - t < REDRAW) {
            return;
        }
        self.last_draw = Some(now);
        let line = render(&self.label, progress, now - self.started);
        // Carriage return and erase-to-end-of-line redraw the same row.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// Ends the bar's line so later output starts on a fresh one.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprintln!();
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// `label [#####.....]  42% 12.3/29.0 MB 5/13 name`, cut to [`LINE_WIDTH`].
pub fn render(label: &str, p: &ExportProgress, elapsed: Duration) -> String {
    let fraction = if p.bytes_total == 0 {
        1.0
    } else {
        p.bytes_done as f64 / p.bytes_total as f64
    };
    let filled = ((fraction * BAR_CELLS as f64) as usize).min(BAR_CELLS);
    let bar = format!("{}{}", "#".repeat(filled), ".".repeat(BAR_CELLS - filled));
    let mut line = format!(
        "{label} [{bar}] {:>3}% {}/{} MB {}/{}",
        (fraction * 100.0) as u32,
        megabytes(p.bytes_done),
        megabytes(p.bytes_total),
        p.tensors_done,
        p.tensors_total
    );
    match p.current {
        Some(name) => {
            line.push(' ');
            line.push_str(name);
        }
        None => line.push_str(&format!(" in {:.1} s", elapsed.as_secs_f64())),
    }
    match line.char_indices().nth(LINE_WIDTH) {
        Some((cut, _)) => line[..cut].to_string(),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(done: u64, total: u64, current: Option<&str>) -> ExportProgress<'_> {
        ExportProgress {
            tensors_done: 3,
            tensors_total: 10,
            bytes_done: done,
            bytes_total: total,
            current,
        }
    }

    #[test]
    fn bar_fills_with_bytes() {
        let line = render(
            "weights",
            &at(5_000_000, 20_000_000, Some("blk.0.x")),
            Duration::ZERO,
        );
        assert_eq!(
            line,
            "weights [######..................]  25% 5.0/20.0 MB 3/10 blk.0.x"
        );
        let done = render(
            "weights",
            &at(20_000_000, 20_000_000, None),
            Duration::from_millis(1500),
        );
        assert!(
            done.contains(&format!("[{}] 100%", "#".repeat(BAR_CELLS))),
            "{done}"
        );
        assert!(done.ends_with(" in 1.5 s"), "{done}");
        let empty = render("weights", &at(0, 0, None), Duration::ZERO);
        assert!(empty.contains("100%"), "{empty}");
    }

    #[test]
    fn long_names_are_cut_to_the_line_width() {
        let name = "é".repeat(200);
        let line = render("weights", &at(1, 2, Some(&name)), Duration::ZERO);
        assert_eq!(line.chars().count(), LINE_WIDTH);
    }
}
