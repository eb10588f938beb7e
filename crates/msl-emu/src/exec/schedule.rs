//! Fiber scheduling. Every GPU thread is a fiber; a runnable fiber runs until
//! it finishes or blocks at a sync point.
//!
//! Sync points resolve in two ways that give the same result:
//! - **At the last arrival.** When every live lane of a simdgroup waits at the
//!   same collective call site, the lane arriving last resolves it (the
//!   arrivals' value table becomes the snapshot the lanes read) and runs on
//!   without a switch; the other lanes are queued. Likewise the last live
//!   thread to reach a barrier releases it, and a lane that finishes resolves
//!   what now has all its remaining lanes waiting.
//! - **When nothing can run** (divergence), the scheduler resolves one SIMD
//!   collective per simdgroup: the one with the smallest call-site number among
//!   the lanes waiting there, with exactly those lanes; lanes waiting elsewhere
//!   stay. Call sites are numbered in source order, which reproduces the
//!   reconvergence of structured control flow. If no lane of a threadgroup
//!   waits at a collective, all its live threads are at a barrier and it releases.
//!
//! Both resolve a collective only once all live lanes of the simdgroup are
//! blocked or done, so every participant of the previous collective has read
//! its result before the snapshot changes, and a collective's lanes and values
//! do not depend on which path resolved it. Threads that finished are not
//! live, so partial simdgroups, early exits and divergent collectives resolve
//! with exactly the lanes that take part.
//!
//! **Order.** A blocking lane switches straight to a suspended lane that can
//! run again (they usually wait at the same call site, so the CPU predicts the
//! returns after the switch), else to a new fiber for a thread not started yet.
//! A finishing lane instead starts the next thread on its own stack with a
//! plain call; when its threadgroup has none left, the next threadgroup is
//! loaded into the second slot (threadgroups are independent), so lanes rarely
//! end by switching into a suspended one, whose returns the CPU would mispredict.

use super::{current, GroupRunner, Slot};
use crate::abi::{SimdGroup, SimdView, ThreadArgs, SLOT_BYTES};
use crate::fiber::{self, Context};
use std::ffi::c_void;

pub struct Lane {
    ctx: Context,
    /// The simdgroup this lane belongs to.
    simd: *mut SimdState,
    /// This lane's bit in its simdgroup's masks.
    bit: u32,
    /// The call site of the collective the lane waits at.
    site: u32,
    /// The fiber stack this lane runs on, once started.
    stack: u32,
    /// The threadgroup slot this lane belongs to.
    slot: *mut Slot,
    args: ThreadArgs,
    view: SimdView,
}

impl Lane {
    pub fn new(args: ThreadArgs, view: SimdView, simd: *mut SimdState, slot: *mut Slot) -> Lane {
        Lane {
            ctx: Context::new(),
            simd,
            bit: 1 << view.lane,
            site: 0,
            stack: 0,
            slot,
            args,
            view,
        }
    }

    pub fn slot(&self) -> *mut Slot {
        self.slot
    }

    /// The lane's `thread_index_in_threadgroup`.
    pub fn index(&self) -> u32 {
        self.args.index
    }
}

/// The values one simdgroup's lanes hand to a collective, one slot per lane.
#[repr(C, align(64))]
pub struct Table(pub [[u8; SLOT_BYTES]; 32]);

/// Lanes of one simdgroup that can run, in ascending order.
#[derive(Clone, Copy)]
pub struct Runnable {
    /// The simdgroup's first lane.
    first: *mut Lane,
    mask: u32,
}

impl Default for Runnable {
    fn default() -> Runnable {
        Runnable {
            first: std::ptr::null_mut(),
            mask: 0,
        }
    }
}

/// One simdgroup's lanes at sync points.
pub struct SimdState {
    /// Lanes that have not finished.
    live: u32,
    /// Lanes waiting at a collective.
    waiting: u32,
    /// Lanes waiting at a threadgroup barrier.
    at_barrier: u32,
    /// The call site of the first waiting lane (of all of them unless `mixed`).
    site: u32,
    /// Waiting lanes came from different call sites (divergent collectives).
    mixed: bool,
    /// The table arriving lanes write their values to; the snapshot is the other one.
    incoming: *mut u8,
}

impl SimdState {
    pub fn new(incoming: *mut u8) -> SimdState {
        SimdState {
            live: 0,
            waiting: 0,
            at_barrier: 0,
            site: 0,
            mixed: false,
            incoming,
        }
    }
}

impl GroupRunner {
    pub(super) unsafe fn run_fibers(this: *mut GroupRunner) {
        let stacks = (*this).slots.len() * (*this).n;
        (*this).free_stacks.clear();
        (*this).free_stacks.extend((0..stacks as u32).rev());
        (*this).head = 0;
        (*this).tail = 0;
        (*this).fresh_next = (*this).n;
        for slot in (*this).slots.iter_mut() {
            slot.in_use = false;
        }
        loop {
            // Lanes run, each switching straight to the next, until nothing can
            // run; the last one switches back here.
            let to = if let Some(lane) = Self::pop(this) {
                Self::enter(this, lane)
            } else if let Some(lane) = Self::take_fresh(this) {
                Self::start(this, lane)
            } else if (*this).slots.iter().any(|s| s.in_use) {
                Self::resolve(this);
                continue;
            } else {
                break;
            };
            fiber::switch(&mut (*this).sched, to);
        }
    }

    /// The next thread not started yet, loading the next threadgroup into a
    /// free slot when the current one has none left.
    #[inline(always)]
    unsafe fn take_fresh(this: *mut GroupRunner) -> Option<*mut Lane> {
        let n = (*this).n;
        if (*this).fresh_next == n {
            Self::load_next_group(this)?;
        }
        let slot = Self::slot_ptr(this, (*this).fresh_slot);
        let lane = (*slot).lanes.as_mut_ptr().add((*this).fresh_next);
        (*this).fresh_next += 1;
        Some(lane)
    }

    #[cold]
    unsafe fn load_next_group(this: *mut GroupRunner) -> Option<()> {
        if (*this).error.is_some() {
            return None;
        }
        let free = (*this).slots.iter().position(|s| !s.in_use)?;
        let source = (*this).source?;
        let Some(tgpig) = (*source)() else {
            (*this).source = None;
            return None;
        };
        let n = (*this).n;
        let slot = &mut *Self::slot_ptr(this, free);
        slot.load(tgpig);
        slot.live = n;
        for (sg, s) in slot.simd.iter_mut().enumerate() {
            s.live = u32::MAX >> (32 - (n - sg * 32).min(32));
            s.waiting = 0;
            s.at_barrier = 0;
            s.mixed = false;
        }
        (*this).fresh_slot = free;
        (*this).fresh_next = 0;
        Some(())
    }

    /// Queues the lanes of `mask` in the simdgroup starting at lane `first` (ascending).
    #[inline(always)]
    unsafe fn push(this: *mut GroupRunner, first: *mut Lane, mask: u32) {
        if mask == 0 {
            return;
        }
        let tail = (*this).tail;
        let slot = (*this)
            .queue
            .as_mut_ptr()
            .add(tail & ((*this).queue.len() - 1));
        *slot = Runnable { first, mask };
        (*this).tail = tail + 1;
    }

    /// The next suspended lane that can run again, if any.
    #[inline(always)]
    unsafe fn pop(this: *mut GroupRunner) -> Option<*mut Lane> {
        let head = (*this).head;
        if head == (*this).tail {
            return None;
        }
        let e = (*this)
            .queue
            .as_mut_ptr()
            .add(head & ((*this).queue.len() - 1));
        let mask = (*e).mask;
        let lane = (*e).first.add(mask.trailing_zeros() as usize);
        (*e).mask = mask & (mask - 1);
        if (*e).mask == 0 {
            (*this).head = head + 1;
        }
        Some(lane)
    }

    /// Makes the suspended `lane` current and returns its context.
    #[inline(always)]
    unsafe fn enter(this: *mut GroupRunner, lane: *mut Lane) -> *const Context {
        (*this).cur = lane;
        &(*lane).ctx
    }

    /// Makes a thread not started yet current on a new fiber with a free stack
    /// and returns its context. Must not run on the stack it hands out.
    #[cold]
    unsafe fn start(this: *mut GroupRunner, lane: *mut Lane) -> *const Context {
        let stack = (*this).free_stacks.pop().expect("a stack per live lane");
        (*lane).stack = stack;
        let top = (*this)
            .stacks
            .as_ref()
            .expect("fiber mode has stacks")
            .top(stack as usize);
        (*lane).ctx.init(top, fiber_main, this as *mut c_void);
        Self::enter(this, lane)
    }

    /// Suspends the current lane (it keeps its stack) and runs the next one.
    #[inline(always)]
    unsafe fn block(this: *mut GroupRunner, lane: *mut Lane) {
        let to = if let Some(next) = Self::pop(this) {
            Self::enter(this, next)
        } else if let Some(next) = Self::take_fresh(this) {
            Self::start(this, next)
        } else {
            &(*this).sched
        };
        fiber::switch(&mut (*lane).ctx, to);
    }

    /// Resolves the collective all waiting lanes of `s` (at one call site) are
    /// at: their table becomes the snapshot. All lanes but `running` are queued.
    #[inline(always)]
    unsafe fn resolve_all_waiting(
        this: *mut GroupRunner,
        s: *mut SimdState,
        first: *mut Lane,
        running: u32,
    ) {
        let mask = (*s).waiting;
        (*s).waiting = 0;
        let snap = (*first).view.g;
        std::mem::swap(&mut (*snap).values, &mut (*s).incoming);
        (*snap).active = mask;
        (*snap).memo_ready = 0;
        (*this).sync_points += mask.count_ones() as u64;
        Self::push(this, first, mask & !running);
    }

    /// Called when no fiber can run: see the module comment for the rules.
    unsafe fn resolve(this: *mut GroupRunner) {
        for k in 0..(*this).slots.len() {
            let slot = Self::slot_ptr(this, k);
            if (*slot).in_use && !Self::resolve_divergent(this, slot) {
                // Every live thread of the group is at a barrier.
                Self::release_barrier(this, slot, std::ptr::null_mut());
            }
        }
    }

    /// Resolves one collective per simdgroup of `slot` with waiting lanes;
    /// whether there was any.
    unsafe fn resolve_divergent(this: *mut GroupRunner, slot: *mut Slot) -> bool {
        let mut resolved = false;
        for sg in 0..(*slot).simd.len() {
            let s: *mut SimdState = (*slot).simd.as_mut_ptr().add(sg);
            if (*s).waiting == 0 {
                continue;
            }
            let first = (*slot).lanes.as_mut_ptr().add(sg * 32);
            let site_of = |l: usize| (*first.add(l)).site;
            // The earliest call site among the waiting lanes resolves first.
            let mask = if (*s).mixed {
                let site = bits((*s).waiting).map(site_of).min().unwrap_or(u32::MAX);
                bits((*s).waiting)
                    .filter(|&l| site_of(l) == site)
                    .fold(0u32, |m, l| m | 1 << l)
            } else {
                (*s).waiting
            };
            // Lanes waiting elsewhere keep their values in the arrivals' table.
            let snap: *mut SimdGroup = (*slot).snaps.as_mut_ptr().add(sg);
            for l in bits(mask) {
                std::ptr::copy_nonoverlapping(
                    (*s).incoming.add(l * SLOT_BYTES),
                    (*snap).values.add(l * SLOT_BYTES),
                    SLOT_BYTES,
                );
            }
            (*snap).active = mask;
            (*snap).memo_ready = 0;
            (*this).sync_points += mask.count_ones() as u64;
            Self::push(this, first, mask);
            (*s).waiting &= !mask;
            let mut rest = bits((*s).waiting).map(site_of);
            (*s).mixed = match rest.next() {
                Some(first_site) => {
                    (*s).site = first_site;
                    rest.any(|x| x != first_site)
                }
                None => false,
            };
            resolved = true;
        }
        resolved
    }

    /// Queues the threads of `slot` at its barrier, except `running`, which goes on.
    unsafe fn release_barrier(this: *mut GroupRunner, slot: *mut Slot, running: *mut Lane) {
        (*this).sync_points += (*slot).at_barrier as u64;
        (*slot).at_barrier = 0;
        for sg in 0..(*slot).simd.len() {
            let s = (*slot).simd.as_mut_ptr().add(sg);
            let mut mask = (*s).at_barrier;
            if !running.is_null() && (*running).simd == s {
                mask &= !(*running).bit;
            }
            (*s).at_barrier = 0;
            Self::push(this, (*slot).lanes.as_mut_ptr().add(sg * 32), mask);
        }
    }

    /// Bookkeeping for a lane that returned from the kernel: what waited only
    /// for it resolves, and its group may be done.
    #[inline(always)]
    unsafe fn finish(this: *mut GroupRunner, lane: *mut Lane) {
        let s = (*lane).simd;
        (*s).live &= !(*lane).bit;
        if (*s).waiting != 0 && (*s).waiting == (*s).live && !(*s).mixed {
            Self::resolve_all_waiting(this, s, lane.sub((*lane).view.lane as usize), 0);
        }
        let slot = (*lane).slot;
        (*slot).live -= 1;
        if (*slot).live == 0 {
            (*slot).in_use = false;
        } else if (*slot).at_barrier == (*slot).live {
            Self::release_barrier(this, slot, std::ptr::null_mut());
        }
    }
}

/// A fiber runs threads on its stack: the one it was started for, then, as
/// long as a thread not started yet remains (in this threadgroup or the next),
/// the next one as a plain call. When none remains, this stack is freed and the
/// fiber ends by switching to a suspended lane (or the scheduler).
extern "C" fn fiber_main(arg: *mut c_void) -> ! {
    let this = arg as *mut GroupRunner;
    unsafe {
        loop {
            let lane = (*this).cur;
            ((*this).entry)(&(*lane).args);
            GroupRunner::finish(this, lane);
            let stack = (*lane).stack;
            if let Some(next) = GroupRunner::take_fresh(this) {
                (*next).stack = stack;
                (*this).cur = next;
                continue;
            }
            (*this).free_stacks.push(stack);
            let to = match GroupRunner::pop(this) {
                Some(next) => GroupRunner::enter(this, next),
                None => &(*this).sched,
            };
            fiber::switch(&mut (*this).dead, to);
            break;
        }
    }
    // A finished fiber is never resumed.
    std::process::abort()
}

/// The indices of the set bits of a mask, ascending.
fn bits(mut m: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if m == 0 {
            return None;
        }
        let l = m.trailing_zeros() as usize;
        m &= m - 1;
        Some(l)
    })
}

pub extern "C" fn rt_barrier() {
    let this = current();
    if this.is_null() {
        return;
    }
    unsafe {
        if !(*this).fibers {
            // Not a fiber: the group has one thread, so the barrier has nobody to wait for.
            (*this).sync_points += 1;
            return;
        }
        // Arrivals are counted when the barrier releases.
        let lane = (*this).cur;
        let slot = (*lane).slot;
        (*(*lane).simd).at_barrier |= (*lane).bit;
        (*slot).at_barrier += 1;
        if (*slot).at_barrier == (*slot).live {
            // The last live thread to arrive releases the barrier and goes on.
            GroupRunner::release_barrier(this, slot, lane);
        } else {
            GroupRunner::block(this, lane);
        }
    }
}

/// A lane arrives at the SIMD collective `site` with the value at `value`
/// (`SLOT_BYTES` readable bytes, of which the first `size` matter) and gets
/// the view of the resolved collective.
pub extern "C" fn rt_simd_exchange(value: *const u8, size: u32, site: u32) -> *const SimdView {
    let this = current();
    if this.is_null() {
        return std::ptr::null();
    }
    unsafe {
        if !(*this).fibers {
            return plain_exchange(this, value, size);
        }
        // Arrivals are counted when the collective resolves.
        let lane = (*this).cur;
        let s = (*lane).simd;
        // Whole slots: the shim passes a slot-sized buffer, so no per-size copy.
        std::ptr::copy_nonoverlapping(
            value,
            (*s).incoming.add((*lane).view.lane as usize * SLOT_BYTES),
            SLOT_BYTES,
        );
        (*lane).site = site;
        let waiting = (*s).waiting;
        if waiting == 0 {
            (*s).site = site;
        } else if (*s).site != site {
            (*s).mixed = true;
        }
        (*s).waiting = waiting | (*lane).bit;
        if (*s).waiting == (*s).live && !(*s).mixed {
            // Every live lane waits here: this lane resolves it and goes on without a switch.
            let first = lane.sub((*lane).view.lane as usize);
            GroupRunner::resolve_all_waiting(this, s, first, (*lane).bit);
        } else {
            GroupRunner::block(this, lane);
        }
        &(*lane).view
    }
}

/// A one-thread group (run without fibers): the lane is alone in its simdgroup.
#[cold]
unsafe fn plain_exchange(this: *mut GroupRunner, value: *const u8, size: u32) -> *const SimdView {
    (*this).sync_points += 1;
    let slot = &mut *GroupRunner::slot_ptr(this, 0);
    let snap: *mut SimdGroup = slot.snaps.as_mut_ptr();
    std::ptr::copy_nonoverlapping(value, (*snap).values, (size as usize).min(SLOT_BYTES));
    (*snap).memo_ready = 0;
    (*snap).active = 1;
    &slot.plain_view
}
