//! The coalescing counter of `count_traffic` builds. A GPU serves the loads
//! a simdgroup's lanes make together at one load site in whole 64-byte
//! lines: the bytes the lanes ask for ÷ the bytes of the lines they touch is
//! how much of that traffic the kernel uses. Lanes run one after another
//! here, so each lane numbers its executions of every load site (the k-th
//! execution of a site by the lanes of one simdgroup is one GPU load), and
//! the accesses of each (simdgroup, site, k) are folded when the threadgroup
//! is done with them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Sums over the folded loads of a dispatch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadTotals {
    /// Bytes the lanes asked for; a byte several lanes of one load ask for counts once.
    pub requested: u64,
    /// 64 × the distinct lines each load touched.
    pub line_bytes: u64,
}

impl LoadTotals {
    pub fn add(&mut self, other: LoadTotals) {
        self.requested += other.requested;
        self.line_bytes += other.line_bytes;
    }
}

/// One GPU load: the lanes of a simdgroup at one load site, the k-th time.
type LoadKey = (u32, usize, u32);
/// Each lane's (address, size) of one load.
type Accesses = Vec<(usize, u32)>;

/// One threadgroup's device-memory loads not folded yet.
#[derive(Default)]
pub struct Coalescing {
    /// Per thread of the group: its executions so far of each load site.
    executions: Vec<HashMap<usize, u32, Fast>>,
    /// (simdgroup, load site, execution) -> (address, size) of each lane's access.
    loads: HashMap<LoadKey, Accesses, Fast>,
    /// What folding has summed so far.
    pub totals: LoadTotals,
}

impl Coalescing {
    /// Thread `thread` of the group loaded `size` bytes at `addr` from the load site `pc`.
    pub fn record(&mut self, thread: u32, pc: usize, addr: usize, size: u32) {
        let t = thread as usize;
        if t >= self.executions.len() {
            self.executions.resize_with(t + 1, HashMap::default);
        }
        let k = self.executions[t].entry(pc).or_insert(0);
        let key = (thread / 32, pc, *k);
        *k += 1;
        self.loads.entry(key).or_default().push((addr, size));
    }

    /// Adds every recorded load to `totals` and forgets them (the group is done).
    pub fn fold(&mut self) {
        for (_, mut accesses) in self.loads.drain() {
            accesses.sort_unstable();
            let (mut covered_to, mut lines, mut last_line) = (0usize, 0u64, usize::MAX);
            for (addr, size) in accesses {
                let end = addr + size as usize;
                if end > covered_to {
                    self.totals.requested += (end - addr.max(covered_to)) as u64;
                    covered_to = end;
                }
                for line in addr >> 6..=(end - 1) >> 6 {
                    // Accesses are sorted by address, so a line repeats only right after itself.
                    if line != last_line {
                        lines += 1;
                        last_line = line;
                    }
                }
            }
            self.totals.line_bytes += 64 * lines;
        }
        for e in &mut self.executions {
            e.clear();
        }
    }
}

/// A multiply-rotate hash (as rustc's FxHash): the keys are small integers
/// and addresses, hashed on the hot path of every counted load.
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

type Fast = BuildHasherDefault<FastHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_lanes_fill_their_lines_and_strided_lanes_waste_them() {
        let mut c = Coalescing::default();
        // 32 lanes load 4 consecutive bytes each from one site: 128 bytes, two lines.
        for lane in 0..32 {
            c.record(lane, 0x100, 0x1000 + 4 * lane as usize, 4);
        }
        c.fold();
        assert_eq!(
            c.totals,
            LoadTotals {
                requested: 128,
                line_bytes: 128
            }
        );
        // A 34-byte stride (one Q8_0 block per lane): 128 bytes over 17 lines.
        let mut c = Coalescing::default();
        for lane in 0..32 {
            c.record(lane, 0x100, 0x1000 + 34 * lane as usize, 4);
        }
        c.fold();
        assert_eq!(
            c.totals,
            LoadTotals {
                requested: 128,
                line_bytes: 64 * 17
            }
        );
    }

    #[test]
    fn a_broadcast_counts_once_and_executions_of_a_site_are_separate_loads() {
        let mut c = Coalescing::default();
        for lane in 0..32 {
            // Every lane reads the same 4 bytes, twice at the same site.
            c.record(lane, 0x200, 0x2000, 4);
            c.record(lane, 0x200, 0x2040, 4);
        }
        c.fold();
        assert_eq!(
            c.totals,
            LoadTotals {
                requested: 8,
                line_bytes: 128
            }
        );
        // Two simdgroups are two loads even at the same address.
        let mut c = Coalescing::default();
        c.record(0, 0x300, 0x3000, 16);
        c.record(32, 0x300, 0x3000, 16);
        c.fold();
        assert_eq!(
            c.totals,
            LoadTotals {
                requested: 32,
                line_bytes: 128
            }
        );
    }
}
