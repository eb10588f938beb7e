//! The pair-merging loop llama.cpp's SentencePiece and BPE sessions share: start from single
//! characters and repeatedly merge the best adjacent pair (the leftmost among equals), a merged
//! pair offering new pairs with its neighbours, until no pair can merge.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A piece of the text: `len` bytes from `start` (0 once merged into its left neighbour).
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A queued merge of symbol `left` with the one after it into `len` bytes.
struct Candidate<P> {
    priority: P,
    left: usize,
    right: usize,
    len: usize,
}

impl<P: Ord> Ord for Candidate<P> {
    /// The best merge is the greatest: higher priority, then the lower position.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl<P: Ord> PartialOrd for Candidate<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<P: Ord> PartialEq for Candidate<P> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<P: Ord> Eq for Candidate<P> {}

/// The pieces `text` merges into. `priority(left, right, both)` says how good merging two
/// adjacent pieces is, `None` when they do not merge.
pub(super) fn merge<P: Ord>(
    text: &str,
    priority: impl Fn(&str, &str, &str) -> Option<P>,
) -> Vec<&str> {
    let mut symbols: Vec<Symbol> = Vec::new();
    for (start, c) in text.char_indices() {
        let index = symbols.len();
        let end = start + c.len_utf8();
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: index.checked_sub(1),
            next: (end < text.len()).then_some(index + 1),
        });
    }
    let candidate = |symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
        let (left, right) = (left?, right?);
        let (l, r) = (&symbols[left], &symbols[right]);
        let priority = priority(
            &text[l.start..l.start + l.len],
            &text[r.start..r.start + r.len],
            &text[l.start..r.start + r.len],
        )?;
        Some(Candidate {
            priority,
            left,
            right,
            len: l.len + r.len,
        })
    };
    let mut queue = BinaryHeap::new();
    for i in 1..symbols.len() {
        queue.extend(candidate(&symbols, Some(i - 1), Some(i)));
    }
    while let Some(best) = queue.pop() {
        let (left, right) = (&symbols[best.left], &symbols[best.right]);
        // Starts never move, so a pair is stale exactly when its symbols' lengths changed.
        if left.len == 0 || right.len == 0 || left.len + right.len != best.len {
            continue;
        }
        let next = right.next;
        symbols[best.left].len = best.len;
        symbols[best.left].next = next;
        symbols[best.right].len = 0;
        if let Some(next) = next {
            symbols[next].prev = Some(best.left);
        }
        let prev = symbols[best.left].prev;
        queue.extend(candidate(&symbols, prev, Some(best.left)));
        queue.extend(candidate(&symbols, Some(best.left), next));
    }
    symbols
        .iter()
        .filter(|s| s.len > 0)
        .map(|s| &text[s.start..s.start + s.len])
        .collect()
}
