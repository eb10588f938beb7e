//! When a dispatch on Metal's concurrent encoder must wait for earlier ones.
//! Dispatches since the last memory barrier may run at the same time, so a
//! dispatch that binds a buffer one of them bound (and so may read what it
//! writes, or write what it reads) needs a barrier first. Buffers no kernel
//! writes (the mapped weights) never conflict. A dispatch's own bindings
//! carry no hazard among themselves.

/// The mutable buffers bound since the last barrier, by address.
#[derive(Debug, Default)]
pub struct Hazards {
    bound: Vec<usize>,
}

impl Hazards {
    /// Records a dispatch binding the mutable buffers `buffers`; true when a
    /// memory barrier must come before it.
    pub fn barrier_before(&mut self, buffers: &[usize]) -> bool {
        let conflict = buffers.iter().any(|b| self.bound.contains(b));
        if conflict {
            self.bound.clear();
        }
        for &b in buffers {
            if !self.bound.contains(&b) {
                self.bound.push(b);
            }
        }
        conflict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatch_waits_only_for_earlier_ones_sharing_a_buffer() {
        let mut h = Hazards::default();
        // x -> q, then x -> k: independent, both read x... but x is mutable
        // and bound by both, so they are ordered (conservative).
        assert!(!h.barrier_before(&[1, 2]));
        assert!(h.barrier_before(&[1, 3]));
        // Disjoint buffers run concurrently with the dispatch before.
        assert!(!h.barrier_before(&[4, 5]));
        assert!(!h.barrier_before(&[6]));
        // After a barrier only the dispatches since then count.
        assert!(h.barrier_before(&[4]));
        assert!(!h.barrier_before(&[1, 2, 3]));
        // One dispatch binding a buffer twice does not wait for itself.
        assert!(!h.barrier_before(&[7, 7]));
    }
}
