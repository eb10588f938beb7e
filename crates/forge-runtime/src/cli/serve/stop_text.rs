//! OpenAI's `stop` strings on streamed text: generation ends where one
//! first appears (it is not part of the reply), and text that could be the
//! start of one is held back until the next piece settles it, so a client
//! never receives part of a stop string.

/// The stop strings of one request and the text held back so far.
pub(super) struct StopText {
    stops: Vec<String>,
    held: String,
}

/// What a piece of generated text releases.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Released {
    /// Text the client may see now.
    pub text: String,
    /// Whether a stop string was reached (nothing after it is released).
    pub stopped: bool,
}

impl StopText {
    /// `stops` are non-empty strings.
    pub(super) fn new(stops: Vec<String>) -> StopText {
        StopText {
            stops,
            held: String::new(),
        }
    }

    /// Adds `piece` and releases what can no longer turn into a stop string.
    pub(super) fn push(&mut self, piece: &str) -> Released {
        self.held.push_str(piece);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Released {
                text,
                stopped: true,
            };
        }
        let keep = self.partial_stop_len();
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Released {
            text,
            stopped: false,
        }
    }

    /// The text still held when generation ends for another reason.
    pub(super) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Bytes at the end of the held text that begin some stop string.
    fn partial_stop_len(&self) -> usize {
        let len = self.held.len();
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        (1..longest.min(len + 1))
            .rev()
            .find(|&k| {
                self.held.is_char_boundary(len - k)
                    && self
                        .stops
                        .iter()
                        .any(|s| s.starts_with(&self.held[len - k..]))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut s = StopText::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for piece in pieces {
            let r = s.push(piece);
            out.push(r.text);
            if r.stopped {
                return (out, true, String::new());
            }
        }
        (out, false, s.finish())
    }

    #[test]
    fn a_stop_string_split_over_pieces_is_held_back_and_cut() {
        let (out, stopped, _) = stream(&["\nUser:"], &["Hello", "\nUs", "er: more"]);
        assert_eq!(out, ["Hello", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn a_false_start_is_released_when_the_next_piece_settles_it() {
        let (out, stopped, rest) = stream(&["END"], &["a E", "N", "x", "E"]);
        assert_eq!(out, ["a ", "", "ENx", ""]);
        assert!(!stopped);
        assert_eq!(rest, "E");
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let (out, stopped, _) = stream(&["cd", "b"], &["abcd"]);
        assert_eq!(out, ["a"]);
        assert!(stopped);
    }

    #[test]
    fn multi_byte_text_is_never_split() {
        // "é" is two bytes; the stop begins with the same first byte as no other text.
        let (out, stopped, rest) = stream(&["éa"], &["xé", "é", "b"]);
        assert_eq!(out, ["x", "é", "éb"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn without_stops_everything_passes_at_once() {
        let (out, stopped, rest) = stream(&[], &["a", "b"]);
        assert_eq!(out, ["a", "b"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }
}
