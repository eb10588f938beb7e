//! Running one threadgroup. Without sync points the threads run as plain calls
//! one after another. With sync points every thread is a fiber and a scheduler
//! runs each runnable fiber until it finishes or blocks; when nothing can run,
//! it resolves one SIMD collective per simdgroup (the earliest call site among
//! the lanes waiting there; lanes waiting elsewhere are not part of it), or, if
//! no lane waits at a collective, releases the barrier all live threads are at.
//! Threads that finished are not live, so partial simdgroups, early exits and
//! divergent collectives resolve with exactly the lanes that take part.

use crate::abi::{Common, EntryFn, SimdGroup, SimdView, ThreadArgs, SLOT_BYTES};
use crate::fiber::{self, Context, Stacks, MAX_FIBERS};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

/// Threadgroup memory the kernel may declare statically (Metal's limit is 32 KiB in total).
pub const TG_STATIC_BYTES: usize = 32 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Not started: it has no stack yet.
    Fresh,
    Runnable,
    Barrier,
    Collective,
    Done,
}

struct Lane {
    ctx: Context,
    /// The fiber stack this lane runs on, once started.
    stack: u32,
    args: ThreadArgs,
    state: State,
    site: u32,
    slot: [u8; SLOT_BYTES],
    view: SimdView,
}

/// Lanes of one simdgroup waiting at SIMD collectives.
#[derive(Clone, Copy, Default)]
struct Waiting {
    mask: u32,
    /// The call site of the first arrival (of all arrivals unless `mixed`).
    site: u32,
    /// Arrivals came from different call sites (divergent collectives).
    mixed: bool,
}

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

/// Runs threadgroups on one worker thread; reused for all groups it takes.
pub struct GroupRunner {
    entry: EntryFn,
    fibers: bool,
    n: usize,
    tptg: [u32; 3],
    common: Box<Common>,
    arena: Arena,
    dynamic_bytes: usize,
    cursor: usize,
    sites: Vec<usize>,
    touched: Vec<usize>,
    overflow: Vec<Vec<u128>>,
    lanes: Vec<Lane>,
    snaps: Vec<SimdGroup>,
    stacks: Option<Stacks>,
    /// The view handed out when a one-thread group (run without fibers) meets a collective.
    plain_view: SimdView,
    sched: Context,
    /// Where a finished fiber's registers go: it is never resumed.
    dead: Context,
    /// Stacks no lane occupies, most recently freed last (its lines are still cached).
    free_stacks: Vec<u32>,
    cur: usize,
    done: usize,
    /// Lanes to resume in this pass, in order; a blocking lane switches straight to the next.
    run_list: Vec<u32>,
    run_pos: usize,
    waiting: Vec<Waiting>,
    /// Lanes waiting at a barrier, in arrival order.
    at_barrier: Vec<u32>,
    pub sync_points: u64,
    pub error: Option<String>,
}

impl GroupRunner {
    pub fn new(plan: &GroupPlan) -> Result<GroupRunner, String> {
        let n = plan.tptg.iter().map(|&v| v as usize).product::<usize>();
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
        assert!(n <= MAX_FIBERS);
        let mut snaps: Vec<SimdGroup> = (0..n.div_ceil(32).max(1))
            .map(|_| SimdGroup {
                values: [[0; SLOT_BYTES]; 32],
                memo: [0; SLOT_BYTES],
                memo_ready: 0,
                active: 0,
            })
            .collect();
        let groups = snaps.as_mut_ptr();
        let mut lanes = Vec::new();
        if fibers {
            lanes.reserve_exact(n);
            for i in 0..n {
                let tx = plan.tptg[0] as usize;
                let ty = plan.tptg[1] as usize;
                let tid = [
                    (i % tx) as u32,
                    ((i / tx) % ty) as u32,
                    (i / (tx * ty)) as u32,
                ];
                lanes.push(Lane {
                    ctx: Context::new(),
                    stack: 0,
                    args: ThreadArgs {
                        c: std::ptr::null(),
                        tid,
                        index: i as u32,
                    },
                    state: State::Done,
                    site: 0,
                    slot: [0; SLOT_BYTES],
                    view: SimdView {
                        g: unsafe { groups.add(i / 32) },
                        lane: (i % 32) as u32,
                        pad: 0,
                    },
                });
            }
        }
        let arena = Arena::new(plan.tg_dynamic_bytes + TG_STATIC_BYTES);
        let mut common = Box::new(plan.common);
        for &(index, offset) in &plan.tg_offsets {
            common.tg[index] = unsafe { arena.ptr.add(offset) };
        }
        Ok(GroupRunner {
            entry: plan.entry,
            fibers,
            n,
            tptg: plan.tptg,
            common,
            arena,
            dynamic_bytes: plan.tg_dynamic_bytes,
            cursor: plan.tg_dynamic_bytes,
            sites: Vec::new(),
            touched: Vec::new(),
            overflow: Vec::new(),
            lanes,
            snaps,
            stacks,
            plain_view: SimdView {
                g: groups,
                lane: 0,
                pad: 0,
            },
            sched: Context::new(),
            dead: Context::new(),
            free_stacks: Vec::with_capacity(n),
            cur: 0,
            done: 0,
            run_list: Vec::with_capacity(n),
            run_pos: 0,
            waiting: vec![Waiting::default(); n.div_ceil(32).max(1)],
            at_barrier: Vec::with_capacity(n),
            sync_points: 0,
            error: None,
        })
    }

    fn fail(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
        }
    }

    /// Runs the threadgroup at `tgpig`.
    pub fn run_group(&mut self, tgpig: [u32; 3]) {
        self.common.tgpig = tgpig;
        // Reads of threadgroup memory nobody wrote show up as NaN (or all-ones integers).
        unsafe { std::ptr::write_bytes(self.arena.ptr, 0xFF, self.dynamic_bytes) };
        self.cursor = self.dynamic_bytes;
        for s in self.touched.drain(..) {
            self.sites[s] = usize::MAX;
        }
        self.overflow.clear();
        let this: *mut GroupRunner = self;
        CURRENT.with(|c| c.set(this));
        unsafe {
            if self.fibers {
                Self::run_fibers(this);
            } else {
                Self::run_plain(this);
            }
        }
        CURRENT.with(|c| c.set(std::ptr::null_mut()));
    }

    unsafe fn run_plain(this: *mut GroupRunner) {
        let [tx, ty, tz] = (*this).tptg;
        let mut args = ThreadArgs {
            c: &*(*this).common,
            tid: [0; 3],
            index: 0,
        };
        let entry = (*this).entry;
        for z in 0..tz {
            for y in 0..ty {
                for x in 0..tx {
                    args.tid = [x, y, z];
                    (*this).cur = args.index as usize;
                    entry(&args);
                    args.index += 1;
                }
            }
        }
    }

    unsafe fn run_fibers(this: *mut GroupRunner) {
        let n = (*this).n;
        let common: *const Common = &*(*this).common;
        let lanes = (*this).lanes.as_mut_ptr();
        (*this).run_list.clear();
        (*this).free_stacks.clear();
        let at_barrier = &mut (*this).at_barrier;
        at_barrier.clear();
        for i in 0..n {
            let lane = lanes.add(i);
            (*lane).args.c = common;
            (*lane).state = State::Fresh;
            (*this).run_list.push(i as u32);
            (*this).free_stacks.push((n - 1 - i) as u32);
        }
        (*this).done = 0;
        while (*this).done < n {
            // One pass: every runnable lane runs until it blocks or ends, each
            // switching directly to the next; the last one switches back here.
            (*this).run_pos = 0;
            let to = Self::enter(this, *(*this).run_list.as_ptr() as usize);
            fiber::switch(&mut (*this).sched, to);
            if (*this).done < n {
                Self::resolve(this);
            }
        }
    }

    /// Makes lane `i` current and returns the context that runs it; a fresh
    /// lane gets a free stack and a new fiber. Must not run on the stack it hands out.
    #[inline(always)]
    unsafe fn enter(this: *mut GroupRunner, i: usize) -> *const Context {
        (*this).cur = i;
        let lane = (*this).lanes.as_mut_ptr().add(i);
        if (*lane).state == State::Fresh {
            let free = &mut (*this).free_stacks;
            let stack = free.pop().expect("a stack per live lane");
            (*lane).stack = stack;
            let top = (*this)
                .stacks
                .as_ref()
                .expect("fiber mode has stacks")
                .top(stack as usize);
            (*lane).ctx.init(top, fiber_main, this as *mut c_void);
        }
        &(*lane).ctx
    }

    fn run_list_len(&self) -> usize {
        self.run_list.len()
    }

    /// The next lane of this pass, if any.
    #[inline(always)]
    unsafe fn next_lane(this: *mut GroupRunner) -> Option<usize> {
        let pos = (*this).run_pos + 1;
        (*this).run_pos = pos;
        if pos < (*this).run_list_len() {
            Some(*(*this).run_list.as_ptr().add(pos) as usize)
        } else {
            None
        }
    }

    /// Called when no fiber can run: see the module comment for the rules.
    unsafe fn resolve(this: *mut GroupRunner) {
        let lanes = (*this).lanes.as_mut_ptr();
        let run_list: *mut Vec<u32> = &mut (*this).run_list;
        (*run_list).clear();
        let mut resolved = false;
        let nsg = (*this).waiting.len();
        for sg in 0..nsg {
            let w: *mut Waiting = (*this).waiting.as_mut_ptr().add(sg);
            if (*w).mask == 0 {
                continue;
            }
            let lo = sg * 32;
            // The earliest call site among the waiting lanes resolves first.
            let mask = if (*w).mixed {
                let site = bits(&(*w).mask)
                    .map(|l| (*lanes.add(lo + l)).site)
                    .min()
                    .unwrap_or(u32::MAX);
                bits(&(*w).mask)
                    .filter(|&l| (*lanes.add(lo + l)).site == site)
                    .fold(0u32, |m, l| m | 1 << l)
            } else {
                (*w).mask
            };
            let snap: *mut SimdGroup = (*this).snaps.as_mut_ptr().add(sg);
            for l in bits(&mask) {
                (*snap).values[l] = (*lanes.add(lo + l)).slot;
                (*lanes.add(lo + l)).state = State::Runnable;
                (*run_list).push((lo + l) as u32);
            }
            (*snap).memo_ready = 0;
            (*snap).active = mask;
            (*w).mask &= !mask;
            if (*w).mask != 0 {
                // Divergent lanes stay waiting at their own (later) call sites.
                let rest: Vec<u32> = bits(&(*w).mask)
                    .map(|l| (*lanes.add(lo + l)).site)
                    .collect();
                (*w).site = rest[0];
                (*w).mixed = rest.iter().any(|&x| x != rest[0]);
            } else {
                (*w).mixed = false;
            }
            resolved = true;
        }
        if !resolved {
            // Every live thread is at a barrier.
            let at_barrier: *mut Vec<u32> = &mut (*this).at_barrier;
            std::ptr::swap(run_list, at_barrier);
            for &i in (*run_list).iter() {
                (*lanes.add(i as usize)).state = State::Runnable;
            }
        }
    }

    /// Suspends the current lane (it keeps its stack) and runs the next one.
    #[inline(always)]
    unsafe fn block(this: *mut GroupRunner, lane: *mut Lane, state: State) {
        (*lane).state = state;
        let to = match Self::next_lane(this) {
            Some(i) => Self::enter(this, i),
            None => &(*this).sched,
        };
        fiber::switch(&mut (*lane).ctx, to);
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

/// A fiber runs lanes on its stack: the lane it was started for, then, as long
/// as each lane ends without blocking and the next lane is fresh, the next one as
/// a plain call. Kernels whose threads never meet a sync point at run time thus
/// reuse one cached stack. When the next lane already has a stack, this stack is
/// freed and the fiber ends.
extern "C" fn fiber_main(arg: *mut c_void) -> ! {
    let this = arg as *mut GroupRunner;
    unsafe {
        loop {
            let lane = (*this).lanes.as_mut_ptr().add((*this).cur);
            (*lane).state = State::Runnable;
            ((*this).entry)(&(*lane).args);
            (*lane).state = State::Done;
            (*this).done += 1;
            let stack = (*lane).stack;
            let next = GroupRunner::next_lane(this);
            if let Some(i) = next {
                let next_lane = (*this).lanes.as_mut_ptr().add(i);
                if (*next_lane).state == State::Fresh {
                    (*this).cur = i;
                    (*next_lane).stack = stack;
                    continue;
                }
            }
            let free = &mut (*this).free_stacks;
            free.push(stack);
            let to = match next {
                Some(i) => GroupRunner::enter(this, i),
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
fn bits(mask: &u32) -> impl Iterator<Item = usize> {
    let mut m = *mask;
    std::iter::from_fn(move || {
        if m == 0 {
            return None;
        }
        let l = m.trailing_zeros() as usize;
        m &= m - 1;
        Some(l)
    })
}

/// Copies a collective's value into a slot; the common sizes avoid a memcpy call.
#[inline(always)]
unsafe fn copy_value(value: *const u8, slot: *mut u8, size: usize) {
    match size {
        4 => (slot as *mut u32).write_unaligned((value as *const u32).read_unaligned()),
        8 => (slot as *mut u64).write_unaligned((value as *const u64).read_unaligned()),
        16 => (slot as *mut u128).write_unaligned((value as *const u128).read_unaligned()),
        0 => {}
        _ => std::ptr::copy_nonoverlapping(value, slot, size),
    }
}

#[inline(always)]
fn current() -> *mut GroupRunner {
    CURRENT.with(|c| c.get())
}

pub extern "C" fn rt_barrier() {
    let this = current();
    if this.is_null() {
        return;
    }
    unsafe {
        (*this).sync_points += 1;
        if (*this).fibers {
            let cur = (*this).cur;
            let at_barrier = &mut (*this).at_barrier;
            at_barrier.push(cur as u32);
            GroupRunner::block(this, (*this).lanes.as_mut_ptr().add(cur), State::Barrier);
        }
        // Not a fiber: the group has one thread, so the barrier has nobody to wait for.
    }
}

pub extern "C" fn rt_simd_exchange(value: *const u8, size: u32, site: u32) -> *const SimdView {
    let this = current();
    if this.is_null() {
        return std::ptr::null();
    }
    unsafe {
        (*this).sync_points += 1;
        let size = (size as usize).min(SLOT_BYTES);
        if (*this).fibers {
            let cur = (*this).cur;
            let lane = (*this).lanes.as_mut_ptr().add(cur);
            copy_value(value, (*lane).slot.as_mut_ptr(), size);
            (*lane).site = site;
            let w: *mut Waiting = (*this).waiting.as_mut_ptr().add(cur >> 5);
            if (*w).mask == 0 {
                (*w).site = site;
            } else if (*w).site != site {
                (*w).mixed = true;
            }
            (*w).mask |= 1 << (cur & 31);
            GroupRunner::block(this, lane, State::Collective);
            &(*lane).view
        } else {
            // A one-thread group: the lane is alone in its simdgroup.
            let snap: *mut SimdGroup = (*this).snaps.as_mut_ptr();
            copy_value(value, (*snap).values[0].as_mut_ptr(), size);
            (*snap).memo_ready = 0;
            (*snap).active = 1;
            &(*this).plain_view
        }
    }
}

pub extern "C" fn rt_tg_alloc(site: u32, size: u64, align: u64) -> *mut u8 {
    let this = current();
    if this.is_null() {
        return std::ptr::null_mut();
    }
    unsafe {
        let r = &mut *this;
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
            r.fail(format!(
                "threadgroup memory exceeds the 32 KiB Metal allows ({} bytes bound + {} declared)",
                r.dynamic_bytes,
                off + size - r.dynamic_bytes
            ));
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
