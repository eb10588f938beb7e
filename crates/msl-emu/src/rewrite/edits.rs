//! Text edits on the preprocessed source. Every edit keeps the number of
//! newlines of the text it replaces, so line markers stay valid and compiler
//! diagnostics keep pointing at the original lines.

pub struct Edits {
    list: Vec<(usize, usize, usize, String)>,
    removed: Vec<(usize, usize)>,
}

impl Edits {
    pub fn new() -> Edits {
        Edits {
            list: Vec::new(),
            removed: Vec::new(),
        }
    }

    pub fn replace(&mut self, start: usize, end: usize, text: impl Into<String>) {
        let seq = self.list.len();
        self.list.push((start, end, seq, text.into()));
    }

    pub fn insert(&mut self, at: usize, text: impl Into<String>) {
        self.replace(at, at, text);
    }

    /// Replaces a whole region; other edits inside it are dropped.
    pub fn replace_region(&mut self, start: usize, end: usize, text: impl Into<String>) {
        self.removed.push((start, end));
        self.replace(start, end, text);
    }

    pub fn apply(mut self, text: &str) -> String {
        let removed = std::mem::take(&mut self.removed);
        let inside_removed = |s: usize, e: usize| {
            removed
                .iter()
                .any(|&(rs, re)| rs <= s && e <= re && !(rs == s && re == e))
        };
        self.list.retain(|&(s, e, _, _)| !inside_removed(s, e));
        self.list.sort_by_key(|&(s, e, seq, _)| (s, e, seq));
        let mut out = String::with_capacity(text.len() + text.len() / 4);
        let mut cursor = 0;
        for (s, e, _, rep) in &self.list {
            if *s < cursor {
                continue; // overlapping edit: the first one wins
            }
            out.push_str(&text[cursor..*s]);
            out.push_str(rep);
            let lost = text[*s..*e]
                .matches('\n')
                .count()
                .saturating_sub(rep.matches('\n').count());
            for _ in 0..lost {
                out.push('\n');
            }
            cursor = *e;
        }
        out.push_str(&text[cursor..]);
        out
    }
}

/// Collapses runs of whitespace to one space (so a copied type stays on one line).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_line_count_and_drop_edits_in_removed_regions() {
        let text = "a b\nc d\ne";
        let mut e = Edits::new();
        e.replace(0, 1, "X");
        e.replace_region(2, 7, "R");
        e.replace(4, 5, "never");
        e.insert(9, "!");
        assert_eq!(e.apply(text), "X R\n\ne!");
    }
}
