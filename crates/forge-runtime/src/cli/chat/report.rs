//! The line `chat` writes on stderr at the end of each turn, and reading it
//! back: tests and scripts check from it that a turn reused the cache.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnReport {
    pub turn: usize,
    /// Tokens run this turn: the new text, and first the previous reply's
    /// last token when a limit cut the reply before it ran.
    pub prefilled: usize,
    /// Tokens of earlier turns the cache (and recurrent state) already held.
    pub reused: usize,
    /// Tokens of the reply.
    pub generated: usize,
    /// How the reply ended: `ended by token N`, or the limit that cut it.
    pub ended: String,
}

const PREFIX: &str = "turn ";

impl TurnReport {
    /// Whether the model ended the reply with a stop token (so every reply token ran).
    pub fn stopped_by_token(&self) -> bool {
        self.ended.starts_with("ended by token")
    }

    /// The report of `turn` in `stderr`, if there is one.
    pub fn find(stderr: &str, turn: usize) -> Option<TurnReport> {
        stderr
            .lines()
            .filter_map(TurnReport::parse)
            .find(|r| r.turn == turn)
    }

    /// Reads a line [`fmt::Display`] wrote (anything after the closing parenthesis is ignored).
    pub fn parse(line: &str) -> Option<TurnReport> {
        let rest = line.strip_prefix(PREFIX)?;
        let (turn, rest) = rest.split_once(": prefilled ")?;
        let (prefilled, rest) = rest.split_once(" tokens, reused ")?;
        let (reused, rest) = rest.split_once(" from the cache; ")?;
        let (generated, rest) = rest.split_once(" reply tokens (")?;
        let (ended, _) = rest.split_once(')')?;
        Some(TurnReport {
            turn: turn.parse().ok()?,
            prefilled: prefilled.parse().ok()?,
            reused: reused.parse().ok()?,
            generated: generated.parse().ok()?,
            ended: ended.to_string(),
        })
    }
}

impl fmt::Display for TurnReport {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}: prefilled {} tokens, reused {} from the cache; {} reply tokens ({})",
            self.turn, self.prefilled, self.reused, self.generated, self.ended
        )
    }
}

/// The label `--verbose-prompt` gives the text a turn feeds the model.
pub const PROMPT_LABEL: &str = "prompt";
/// The label `--verbose-prompt` gives the reply the conversation records.
pub const REPLY_LABEL: &str = "reply";

/// The label `--verbose-prompt` gives the ids that end a reply (`[2, 0]`).
pub const STOPS_LABEL: &str = "stop tokens";
/// The label of the ids a turn runs (after its text, under [`PROMPT_LABEL`]).
pub const PROMPT_IDS_LABEL: &str = "prompt ids";
/// The label of the ids of a reply.
pub const REPLY_IDS_LABEL: &str = "reply ids";

/// The stop ids `--verbose-prompt` printed.
pub fn verbose_stop_ids(stderr: &str) -> Option<Vec<u32>> {
    verbose_ids(stderr, STOPS_LABEL).into_iter().next()
}

/// The id lists `--verbose-prompt` printed under `label`, in order.
pub fn verbose_ids(stderr: &str, label: &str) -> Vec<Vec<u32>> {
    verbose_values(stderr, label, |json| serde_json::from_str(json).ok())
}

/// The texts `--verbose-prompt` printed under `label`, in order.
pub fn verbose_texts(stderr: &str, label: &str) -> Vec<String> {
    verbose_values(stderr, label, |json| serde_json::from_str(json).ok())
}

/// The values of the `LABEL: JSON` lines of `stderr`, read by `parse`.
fn verbose_values<T>(stderr: &str, label: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    let prefix = format!("{label}: ");
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_as_written() {
        let report = TurnReport {
            turn: 2,
            prefilled: 15,
            reused: 41,
            generated: 7,
            ended: "ended by token 2".into(),
        };
        let line = format!("{report}; prefill 2.2 tok/s");
        assert_eq!(TurnReport::parse(&line), Some(report.clone()));
        assert!(report.stopped_by_token());
        assert_eq!(
            TurnReport::find(&format!("note\n{line}\n"), 2),
            Some(report)
        );
        assert_eq!(TurnReport::parse("turn 2: something else"), None);
    }
}
