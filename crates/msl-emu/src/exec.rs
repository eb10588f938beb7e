//! Running threadgroups on one worker. Without sync points the threads run as
//! plain calls one after another; with sync points every thread is a fiber
//! scheduled by `schedule` (see there for how barriers and SIMD collectives
//! resolve and how consecutive threadgroups overlap).

mod coalescing;
mod schedule;

use crate::abi::{Common, EntryFn, SimdGroup, SimdView, ThreadArgs, SLOT_BYTES};
use crate::fiber::{Context, Stacks, MAX_FIBERS};
use coalescing::Coalescing;
pub use coalescing::LoadTotals;
use schedule::{Lane, Runnable, SimdState, Table};
use std::cell::Cell;
use std::ffi::{c_char, CStr};
use std::sync::Mutex;

pub use schedule::{rt_barrier, rt_simd_exchange};

/// Threadgroup memory the kernel may declare statically (Metal's limit is 32 KiB in total).
pub const TG_STATIC_BYTES: usize = 32 * 1024;

/// Fiber stacks are expensive to map, so they are kept for the next dispatch.
static STACK_POOL: Mutex<Vec<Stacks>> = Mutex::new(Vec::new());

thread_local! {
    static CURRENT: Cell<*mut GroupRunner> = const { Cell::new(std::ptr::null_mut()) };
}

/// Threadgroup memory: 64-byte aligned, refilled with 0xFF (NaN for every float type) per group.
struct Arena {
    ptr: *mut u8,
    len: usize,
}

impl Arena {
    fn new(len: usize) -> Arena {
        let layout = std::alloc::Layout::from_size_align(len.max(64), 64).expect("arena size");
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Arena { ptr, len }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len.max(64), 64).expect("arena size");
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

/// What is the same for every threadgroup of a dispatch.
pub struct GroupPlan {
    pub entry: EntryFn,
    pub fibers: bool,
    pub tptg: [u32; 3],
    pub common: Common,
    /// Offsets of the `[[threadgroup(n)]]` bindings in the arena.
    pub tg_offsets: Vec<(usize, usize)>,
    pub tg_dynamic_bytes: usize,
}

/// The threadgroups a worker runs, handed out one at a time.
pub type GroupSource<'a> = dyn FnMut() -> Option<[u32; 3]> + 'a;

/// Everything that belongs to one threadgroup in flight: its arguments,
/// threadgroup memory, lanes and their sync state.
struct Slot {
    common: Common,
    arena: Arena,
    dynamic_bytes: usize,
    cursor: usize,
    sites: Vec<usize>,
    touched: Vec<usize>,
    overflow: Vec<Vec<u128>>,
    lanes: Vec<Lane>,
    /// Per simdgroup: the resolved collective its lanes read (ABI struct).
    snaps: Vec<SimdGroup>,
    /// Per simdgroup: who waits where, and the table arrivals write to.
    simd: Vec<SimdState>,
    /// Owns two value tables per simdgroup: the snapshot `snaps` points to and the arrivals' one.
    _tables: Vec<Table>,
    /// The view handed out when a one-thread group (run without fibers) meets a collective.
    plain_view: SimdView,
    /// Threads of the group that have not finished (including ones not started).
    live: usize,
    /// Threads waiting at a threadgroup barrier.
    at_barrier: usize,
    /// Holds a group that has not finished.
    in_use: bool,
    /// The group's device-memory loads (count_traffic builds).
    coalescing: Coalescing,
}

impl Slot {
    /// A slot for `n` threads, without lanes yet: they point back into the
    /// slot, so they are added once it is in its final place.
    fn new(plan: &GroupPlan, n: usize) -> Slot {
        let nsg = n.div_ceil(32).max(1);
        let mut tables: Vec<Table> = (0..2 * nsg).map(|_| Table([[0; SLOT_BYTES]; 32])).collect();
        let mut snaps: Vec<SimdGroup> = (0..nsg)
            .map(|sg| SimdGroup {
                values: tables[2 * sg].0.as_mut_ptr() as *mut u8,
                active: 0,
                memo_ready: 0,
                memo: [0; SLOT_BYTES],
            })
            .collect();
        let simd: Vec<SimdState> = (0..nsg)
            .map(|sg| SimdState::new(tables[2 * sg + 1].0.as_mut_ptr() as *mut u8))
            .collect();
        let arena = Arena::new(plan.tg_dynamic_bytes + TG_STATIC_BYTES);
        let mut common = plan.common;
        for &(index, offset) in &plan.tg_offsets {
            common.tg[index] = unsafe { arena.ptr.add(offset) };
        }
        let plain_view = SimdView {
            g: snaps.as_mut_ptr(),
            lane: 0,
            pad: 0,
        };
        Slot {
            common,
            arena,
            dynamic_bytes: plan.tg_dynamic_bytes,
            cursor: plan.tg_dynamic_bytes,
            sites: Vec::new(),
            touched: Vec::new(),
            overflow: Vec::new(),
            lanes: Vec::new(),
            snaps,
            simd,
            _tables: tables,
            plain_view,
            live: 0,
            at_barrier: 0,
            in_use: false,
            coalescing: Coalescing::default(),
        }
    }

    /// Adds one lane per thread for the fibers; the slot must not move afterwards.
    fn add_lanes(&mut self, tptg: [u32; 3]) {
        let [tx, ty, tz] = tptg.map(|v| v as usize);
        let n = tx * ty * tz;
        let s: *mut Slot = self;
        self.lanes.reserve_exact(n);
        for i in 0..n {
            let args = ThreadArgs {
                c: &self.common,
                tid: [
                    (i % tx) as u32,
                    ((i / tx) % ty) as u32,
                    (i / (tx * ty)) as u32,
                ],
                index: i as u32,
            };
            let view = SimdView {
                g: unsafe { self.snaps.as_mut_ptr().add(i / 32) },
                lane: (i % 32) as u32,
                pad: 0,
            };
            let simd = unsafe { self.simd.as_mut_ptr().add(i / 32) };
            self.lanes.push(Lane::new(args, view, simd, s));
        }
    }

    /// Makes the slot hold the threadgroup at `tgpig`, none of its threads started.
    fn load(&mut self, tgpig: [u32; 3]) {
        // The previous group is done: its loads are complete.
        self.coalescing.fold();
        self.common.tgpig = tgpig;
        // Reads of threadgroup memory nobody wrote show up as NaN (or all-ones integers).
        unsafe { std::ptr::write_bytes(self.arena.ptr, 0xFF, self.dynamic_bytes) };
        self.cursor = self.dynamic_bytes;
        for s in self.touched.drain(..) {
            self.sites[s] = usize::MAX;
        }
        self.overflow.clear();
        self.at_barrier = 0;
        self.in_use = true;
    }
}

/// Runs threadgroups on one worker thread; reused for all groups it takes.
pub struct GroupRunner {
    entry: EntryFn,
    fibers: bool,
    n: usize,
    tptg: [u32; 3],
    /// Threadgroups in flight: two with fibers (so a finishing lane can start
    /// the next group's), unless that needs more fibers than there are stacks.
    slots: Vec<Slot>,
    stacks: Option<Stacks>,
    sched: Context,
    /// Where a finished fiber's registers go: it is never resumed.
    dead: Context,
    /// Stacks no lane occupies, most recently freed last (its lines are still cached).
    free_stacks: Vec<u32>,
    /// The lane running now (fiber mode).
    cur: *mut Lane,
    /// Suspended lanes that can run again, as (simdgroup, lane mask) entries:
    /// a ring of a power-of-two size at least the lanes in flight; a lane is in
    /// at most one entry.
    queue: Vec<Runnable>,
    head: usize,
    tail: usize,
    /// The slot whose threads are being started, and its next thread.
    fresh_slot: usize,
    fresh_next: usize,
    /// Where the groups come from while `run_groups` runs.
    source: Option<*mut GroupSource<'static>>,
    /// The thread running now (plain mode; fibers know their lane).
    plain_index: u32,
    pub sync_points: u64,
    pub error: Option<String>,
}

impl GroupRunner {
    pub fn new(plan: &GroupPlan) -> Result<GroupRunner, String> {
        let n = plan.tptg.iter().map(|&v| v as usize).product::<usize>();
        assert!(n <= MAX_FIBERS);
        let fibers = plan.fibers && n > 1;
        let stacks = if fibers {
            let pooled = STACK_POOL.lock().map(|mut p| p.pop()).unwrap_or(None);
            Some(match pooled {
                Some(s) => s,
                None => Stacks::new()?,
            })
        } else {
            None
        };
        let in_flight = if fibers && 2 * n <= MAX_FIBERS { 2 } else { 1 };
        let mut slots: Vec<Slot> = (0..in_flight).map(|_| Slot::new(plan, n)).collect();
        if fibers {
            // The vector is never resized, so the slots stay where their lanes point.
            for slot in &mut slots {
                slot.add_lanes(plan.tptg);
            }
        }
        Ok(GroupRunner {
            entry: plan.entry,
            fibers,
            n,
            tptg: plan.tptg,
            slots,
            stacks,
            sched: Context::new(),
            dead: Context::new(),
            free_stacks: Vec::with_capacity(in_flight * n),
            cur: std::ptr::null_mut(),
            queue: vec![Runnable::default(); (in_flight * n).next_power_of_two()],
            head: 0,
            tail: 0,
            fresh_slot: 0,
            fresh_next: n,
            source: None,
            plain_index: 0,
            sync_points: 0,
            error: None,
        })
    }

    /// The device-memory loads of every group this runner ran, folded.
    pub fn load_totals(&mut self) -> LoadTotals {
        let mut totals = LoadTotals::default();
        for slot in &mut self.slots {
            slot.coalescing.fold();
            totals.add(std::mem::take(&mut slot.coalescing.totals));
        }
        totals
    }

    fn fail(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
        }
    }

    /// Runs the threadgroups `next` hands out until it has none or a kernel failed.
    pub fn run_groups(&mut self, next: &mut GroupSource<'_>) {
        let this: *mut GroupRunner = self;
        CURRENT.with(|c| c.set(this));
        unsafe {
            if self.fibers {
                // Only used while this call runs (the fibers end before it returns).
                let next: *mut GroupSource<'_> = next;
                self.source = Some(std::mem::transmute::<
                    *mut GroupSource<'_>,
                    *mut GroupSource<'static>,
                >(next));
                Self::run_fibers(this);
                self.source = None;
            } else {
                while self.error.is_none() {
                    let Some(tgpig) = next() else { break };
                    self.slots[0].load(tgpig);
                    Self::run_plain(this);
                }
            }
        }
        CURRENT.with(|c| c.set(std::ptr::null_mut()));
    }

    unsafe fn run_plain(this: *mut GroupRunner) {
        let [tx, ty, tz] = (*this).tptg;
        let mut args = ThreadArgs {
            c: &(*Self::slot_ptr(this, 0)).common,
            tid: [0; 3],
            index: 0,
        };
        let entry = (*this).entry;
        for z in 0..tz {
            for y in 0..ty {
                for x in 0..tx {
                    args.tid = [x, y, z];
                    (*this).plain_index = args.index;
                    entry(&args);
                    args.index += 1;
                }
            }
        }
    }

    /// Slot `k`, as a raw pointer since lanes point into it.
    unsafe fn slot_ptr(this: *mut GroupRunner, k: usize) -> *mut Slot {
        let slots = &mut (*this).slots;
        &mut slots[k]
    }

    /// The slot of the code running now.
    unsafe fn current_slot(this: *mut GroupRunner) -> *mut Slot {
        if (*this).fibers {
            (*(*this).cur).slot()
        } else {
            Self::slot_ptr(this, 0)
        }
    }
}

impl Drop for GroupRunner {
    fn drop(&mut self) {
        if let Some(s) = self.stacks.take() {
            if let Ok(mut pool) = STACK_POOL.lock() {
                pool.push(s);
            }
        }
    }
}

#[inline(always)]
fn current() -> *mut GroupRunner {
    CURRENT.with(|c| c.get())
}

pub extern "C" fn rt_tg_alloc(site: u32, size: u64, align: u64) -> *mut u8 {
    let this = current();
    if this.is_null() {
        return std::ptr::null_mut();
    }
    unsafe {
        let r = &mut *GroupRunner::current_slot(this);
        let s = site as usize;
        if s < r.sites.len() && r.sites[s] != usize::MAX {
            return r.arena.ptr.add(r.sites[s]);
        }
        if s >= r.sites.len() {
            r.sites.resize(s + 1, usize::MAX);
        }
        let align = (align as usize).max(1);
        let off = r.cursor.div_ceil(align) * align;
        let size = size as usize;
        if off + size > r.arena.len {
            let message = format!(
                "threadgroup memory exceeds the 32 KiB Metal allows ({} bytes bound + {} declared)",
                r.dynamic_bytes,
                off + size - r.dynamic_bytes
            );
            (*this).fail(message);
            let mut spare = vec![0u128; size.div_ceil(16).max(1)];
            let p = spare.as_mut_ptr() as *mut u8;
            r.overflow.push(spare);
            return p;
        }
        std::ptr::write_bytes(r.arena.ptr.add(off), 0xFF, size);
        r.cursor = off + size;
        r.sites[s] = off;
        r.touched.push(s);
        r.arena.ptr.add(off)
    }
}

/// The count_traffic build's load callback: the running thread loaded `size`
/// bytes at `addr` of a bound device buffer, at load site `pc`.
pub extern "C" fn rt_record_load(pc: usize, addr: usize, size: u32) {
    let this = current();
    if this.is_null() {
        return;
    }
    unsafe {
        let (slot, thread) = if (*this).fibers {
            let lane = (*this).cur;
            ((*lane).slot(), (*lane).index())
        } else {
            (GroupRunner::slot_ptr(this, 0), (*this).plain_index)
        };
        (*slot).coalescing.record(thread, pc, addr, size);
    }
}

pub extern "C" fn rt_fail(message: *const c_char) {
    let this = current();
    if this.is_null() || message.is_null() {
        return;
    }
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    unsafe { (*this).fail(text) };
}
