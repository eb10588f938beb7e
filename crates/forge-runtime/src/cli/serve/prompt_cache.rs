//! The prompt cache's store: snapshots of sequences (KV rows and recurrent
//! state) keyed by the tokens they hold, found by longest shared prefix and
//! evicted least-recently-used within a byte budget (`--cache-mb`).

/// Values keyed by token sequences, within `budget` bytes.
pub(super) struct PromptCache<T> {
    budget: usize,
    used: usize,
    /// Ticks at each use, for least-recently-used eviction.
    clock: u64,
    entries: Vec<Entry<T>>,
}

struct Entry<T> {
    tokens: Vec<u32>,
    value: T,
    bytes: usize,
    last_used: u64,
}

impl<T> PromptCache<T> {
    pub(super) fn new(budget: usize) -> PromptCache<T> {
        PromptCache {
            budget,
            used: 0,
            clock: 0,
            entries: Vec::new(),
        }
    }

    /// The entry holding the longest proper prefix of `tokens` (at least one
    /// token must remain to run), marked as used.
    pub(super) fn longest_prefix(&mut self, tokens: &[u32]) -> Option<(&[u32], &T)> {
        self.clock += 1;
        let best = self
            .entries
            .iter_mut()
            .filter(|e| e.tokens.len() < tokens.len() && tokens.starts_with(&e.tokens))
            .max_by_key(|e| e.tokens.len())?;
        best.last_used = self.clock;
        Some((&best.tokens, &best.value))
    }

    pub(super) fn contains(&self, tokens: &[u32]) -> bool {
        self.entries.iter().any(|e| e.tokens == tokens)
    }

    /// Stores `value` (taking `bytes` of the budget) for `tokens`, evicting
    /// the least recently used entries to make room; a value larger than the
    /// whole budget is not kept. Returns whether it was stored.
    pub(super) fn insert(&mut self, tokens: Vec<u32>, value: T, bytes: usize) -> bool {
        let bytes = bytes + tokens.len() * 4;
        if bytes > self.budget {
            return false;
        }
        self.clock += 1;
        if let Some(i) = self.entries.iter().position(|e| e.tokens == tokens) {
            let old = self.entries.swap_remove(i);
            self.used -= old.bytes;
        }
        while self.used + bytes > self.budget {
            let oldest = (0..self.entries.len())
                .min_by_key(|&i| self.entries[i].last_used)
                .expect("entries are using the budget");
            self.used -= self.entries.swap_remove(oldest).bytes;
        }
        self.used += bytes;
        self.entries.push(Entry {
            tokens,
            value,
            bytes,
            last_used: self.clock,
        });
        true
    }

    /// Bytes in use and entries held.
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.used, self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_stored_prefix_is_found_and_a_whole_match_is_not() {
        let mut cache = PromptCache::new(1000);
        cache.insert(vec![1, 2], "short", 0);
        cache.insert(vec![1, 2, 3, 4], "long", 0);
        cache.insert(vec![1, 5], "other", 0);
        assert_eq!(
            cache.longest_prefix(&[1, 2, 3, 4, 9]).map(|e| *e.1),
            Some("long")
        );
        assert_eq!(
            cache.longest_prefix(&[1, 2, 3]).map(|e| *e.1),
            Some("short")
        );
        // [1, 2, 3, 4] itself leaves no token to run.
        assert_eq!(
            cache.longest_prefix(&[1, 2, 3, 4]).map(|e| *e.1),
            Some("short")
        );
        assert_eq!(cache.longest_prefix(&[7, 1, 2]), None);
    }

    #[test]
    fn the_least_recently_used_entries_go_first() {
        // Each entry takes 10 bytes plus 4 per token: 18 here.
        let mut cache = PromptCache::new(40);
        cache.insert(vec![1, 1], 'a', 10);
        cache.insert(vec![2, 2], 'b', 10);
        assert!(cache.longest_prefix(&[1, 1, 0]).is_some()); // `a` is now the newer
        cache.insert(vec![3, 3], 'c', 10);
        assert!(cache.contains(&[1, 1]) && cache.contains(&[3, 3]));
        assert!(!cache.contains(&[2, 2]));
        assert_eq!(cache.usage(), (36, 2));
    }

    #[test]
    fn a_value_larger_than_the_budget_is_not_kept() {
        let mut cache = PromptCache::new(20);
        cache.insert(vec![1], 'a', 4);
        assert!(!cache.insert(vec![2], 'b', 100));
        assert_eq!(cache.usage(), (8, 1));
    }

    #[test]
    fn storing_the_same_tokens_again_replaces_the_entry() {
        let mut cache = PromptCache::new(100);
        cache.insert(vec![1, 2], 'a', 10);
        cache.insert(vec![1, 2], 'b', 20);
        assert_eq!(cache.usage(), (28, 1));
        assert_eq!(cache.longest_prefix(&[1, 2, 3]).map(|e| *e.1), Some('b'));
    }
}
