//! What the weight plan stores in another format than the checkpoint, so
//! `forge compile` can say it once: formats no kernel reads (stored as
//! Q8_0), what `--dtype` re-quantised, and matrices whose rows are not whole
//! blocks of the asked format (stored as f16).

use std::collections::BTreeMap;

use forge_ir::DType;
use serde::Serialize;

/// Why a matrix is stored in another format than its checkpoint's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Reason {
    /// No kernel reads the checkpoint's format.
    NoKernel,
    /// `--dtype` asked for another format.
    Requested,
    /// The rows are not whole blocks of the format it would get.
    PartialBlocks,
}

/// Checkpoint matrices counted by why, from which format and to which.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Conversions {
    counts: BTreeMap<(Reason, DType, DType), u64>,
}

impl Conversions {
    pub fn record(&mut self, reason: Reason, from: DType, to: DType) {
        *self.counts.entry((reason, from, to)).or_insert(0) += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// One line per reason, naming the formats and how many matrices.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for reason in [Reason::NoKernel, Reason::Requested, Reason::PartialBlocks] {
            let into = if reason == Reason::Requested {
                "to"
            } else {
                "as"
            };
            let parts: Vec<String> = self
                .counts
                .iter()
                .filter(|((r, _, _), _)| *r == reason)
                .map(|((_, from, to), n)| {
                    let noun = if *n == 1 { "matrix" } else { "matrices" };
                    format!("{from} ({n} {noun}) {into} {to}")
                })
                .collect();
            if parts.is_empty() {
                continue;
            }
            let list = parts.join(", ");
            notes.push(match reason {
                Reason::NoKernel => format!("no GPU kernel reads these formats; stored {list}"),
                Reason::Requested => format!("--dtype re-quantises {list}"),
                Reason::PartialBlocks => {
                    format!("rows that are not whole blocks of the format stay float: {list}")
                }
            });
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_the_formats_and_counts_once_per_reason() {
        let mut c = Conversions::default();
        assert!(c.notes().is_empty());
        for _ in 0..3 {
            c.record(Reason::NoKernel, DType::Q2_K, DType::Q8_0);
        }
        c.record(Reason::NoKernel, DType::IQ4_NL, DType::Q8_0);
        c.record(Reason::Requested, DType::Q4_1, DType::Q4_0);
        assert_eq!(
            c.notes(),
            [
                "no GPU kernel reads these formats; stored Q2_K (3 matrices) as Q8_0, IQ4_NL (1 matrix) as Q8_0",
                "--dtype re-quantises Q4_1 (1 matrix) to Q4_0",
            ]
        );
    }
}
