//! dispatch_threadgroups: checks the bindings against the kernel's parameters,
//! lays out threadgroup memory, spreads the threadgroups over the worker pool
//! and sums up the counters.
//!
//! Counters: `threadgroups` and `threads` are what the grid launched;
//! `sync_points` counts every arrival of a thread at a barrier or a SIMD
//! collective (so one simd_sum by 32 lanes is 32); per-buffer bytes (only in a
//! `count_traffic` build) are the sizes of all loads and stores the compiled
//! kernel executed whose address falls inside the bound range, repeats
//! included, plus atomics. Accesses the optimiser removed or merged are counted
//! as executed (e.g. a 16-byte vector load is 16 bytes).

use crate::abi::{
    Common, Traffic, TrafficRange, MAX_BINDINGS, PARAM_BUFFER, PARAM_BUFFER_REF, PARAM_THREADGROUP,
};
use crate::buffer::Buffer;
use crate::error::Error;
use crate::exec::{GroupPlan, GroupRunner, LoadTotals};
use crate::fiber::MAX_FIBERS;
use crate::library::Pipeline;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// What a kernel parameter index is bound to, like Metal's setBuffer, setBytes
/// and setThreadgroupMemoryLength.
pub enum Binding<'a> {
    Buffer {
        index: u32,
        buffer: &'a Buffer,
        offset: usize,
    },
    Bytes {
        index: u32,
        data: &'a [u8],
    },
    Threadgroup {
        index: u32,
        len: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size3 {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

impl Size3 {
    pub fn new(x: u32, y: u32, z: u32) -> Size3 {
        Size3 { x, y, z }
    }

    fn count(&self) -> u64 {
        self.x as u64 * self.y as u64 * self.z as u64
    }
}

impl From<u32> for Size3 {
    fn from(x: u32) -> Size3 {
        Size3::new(x, 1, 1)
    }
}

impl From<(u32, u32)> for Size3 {
    fn from((x, y): (u32, u32)) -> Size3 {
        Size3::new(x, y, 1)
    }
}

impl From<(u32, u32, u32)> for Size3 {
    fn from((x, y, z): (u32, u32, u32)) -> Size3 {
        Size3::new(x, y, z)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BufferTraffic {
    pub index: u32,
    /// Every executed load, repeats included.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Distinct 64-byte lines read during the dispatch, times 64: what a GPU
    /// whose caches hold the re-read data fetches from device memory.
    pub line_bytes_read: u64,
}

/// How well the dispatch's device-memory loads coalesce (count_traffic
/// builds): each load a simdgroup's lanes make together at one load site
/// (the k-th execution of the site by each lane) is served in whole 64-byte
/// lines. setBytes data is not device memory and is left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadCoalescing {
    /// Bytes the lanes asked for; a byte several lanes of one load ask for
    /// (a broadcast) counts once.
    pub requested_bytes: u64,
    /// 64 × the distinct lines each load touched.
    pub line_bytes: u64,
}

impl LoadCoalescing {
    /// requested ÷ line bytes, in percent (100 when nothing was loaded).
    pub fn efficiency_percent(&self) -> f64 {
        if self.line_bytes == 0 {
            100.0
        } else {
            100.0 * self.requested_bytes as f64 / self.line_bytes as f64
        }
    }

    pub fn add(&mut self, other: LoadCoalescing) {
        self.requested_bytes += other.requested_bytes;
        self.line_bytes += other.line_bytes;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatchStats {
    pub threadgroups: u64,
    pub threads: u64,
    pub sync_points: u64,
    pub buffers: Vec<BufferTraffic>,
    /// Zero unless the library was built with `count_traffic: true`.
    pub coalescing: LoadCoalescing,
}

fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::env::var("MSL_EMU_WORKERS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .stack_size(16 << 20)
            .thread_name(|i| format!("msl-emu-{i}"))
            .build()
            .expect("cannot start the msl-emu worker threads")
    })
}

static MAX_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Limits how many worker threads a dispatch uses (0 = all). With 1, dispatches
/// run on the calling thread.
pub fn set_max_workers(n: usize) {
    MAX_WORKERS.store(n, Ordering::Relaxed);
}

/// The number of workers a dispatch may use: $MSL_EMU_WORKERS, else the available parallelism.
pub fn max_workers() -> usize {
    let limit = MAX_WORKERS.load(Ordering::Relaxed);
    let n = pool().current_num_threads();
    if limit == 0 {
        n
    } else {
        limit.min(n)
    }
}

struct SharedPlan {
    plan: GroupPlan,
    grid: Size3,
    next: AtomicU64,
    chunk: u64,
    ranges: Vec<(u32, TrafficRange)>,
    set_traffic: Option<unsafe extern "C" fn(*mut Traffic)>,
}

// The plan holds raw pointers into buffers the caller keeps alive until the dispatch returns.
unsafe impl Sync for SharedPlan {}

struct WorkerResult {
    sync_points: u64,
    traffic: Vec<TrafficRange>,
    loads: LoadTotals,
    error: Option<String>,
}

fn run_worker(shared: &SharedPlan) -> WorkerResult {
    let mut runner = match GroupRunner::new(&shared.plan) {
        Ok(r) => r,
        Err(e) => {
            return WorkerResult {
                sync_points: 0,
                traffic: Vec::new(),
                loads: LoadTotals::default(),
                error: Some(e),
            }
        }
    };
    let mut traffic = Box::new(Traffic {
        count: shared.ranges.len() as u32,
        pad: 0,
        r: [TrafficRange::default(); 2 * MAX_BINDINGS],
    });
    for (i, (_, r)) in shared.ranges.iter().enumerate() {
        traffic.r[i] = *r;
    }
    if let Some(set) = shared.set_traffic {
        unsafe { set(&mut *traffic) };
    }
    let g = shared.grid;
    let total = g.count();
    // Chunks of group ids taken from the shared counter, handed out one at a time.
    let (mut id, mut end) = (0u64, 0u64);
    runner.run_groups(&mut || {
        if id == end {
            id = shared.next.fetch_add(shared.chunk, Ordering::Relaxed);
            if id >= total {
                end = id;
                return None;
            }
            end = (id + shared.chunk).min(total);
        }
        let x = (id % g.x as u64) as u32;
        let y = ((id / g.x as u64) % g.y as u64) as u32;
        let z = (id / (g.x as u64 * g.y as u64)) as u32;
        id += 1;
        Some([x, y, z])
    });
    if let Some(set) = shared.set_traffic {
        unsafe { set(std::ptr::null_mut()) };
    }
    WorkerResult {
        sync_points: runner.sync_points,
        traffic: traffic.r[..shared.ranges.len()].to_vec(),
        loads: runner.load_totals(),
        error: runner.error.take(),
    }
}

/// Bytes Metal's `setBytes` takes at most: larger constant data belongs in a buffer.
pub const MAX_BYTES_ARGUMENT: usize = 4096;

/// Runs `grid` threadgroups of `threads_per_threadgroup` threads each.
pub fn dispatch_threadgroups(
    pipeline: &Pipeline,
    grid: Size3,
    threads_per_threadgroup: Size3,
    bindings: &[Binding],
) -> Result<DispatchStats, Error> {
    let kernel = pipeline.kernel();
    let name = pipeline.name();
    let tptg = threads_per_threadgroup;
    let threads_per_group = tptg.count();
    if threads_per_group == 0 || threads_per_group > MAX_FIBERS as u64 {
        return Err(Error::msg(format!(
            "kernel '{name}': {}x{}x{} threads per threadgroup; Metal allows 1 to {MAX_FIBERS}",
            tptg.x, tptg.y, tptg.z
        )));
    }
    if threads_per_group > u64::from(kernel.max_threads) {
        return Err(Error::msg(format!(
            "kernel '{name}': {threads_per_group} threads per threadgroup exceed its \
             [[max_total_threads_per_threadgroup({})]]",
            kernel.max_threads
        )));
    }
    let mut common = Common {
        buffers: [std::ptr::null_mut(); MAX_BINDINGS],
        tg: [std::ptr::null_mut(); MAX_BINDINGS],
        tgpig: [0; 3],
        tptg: [tptg.x, tptg.y, tptg.z],
        tgpg: [grid.x, grid.y, grid.z],
        pad: 0,
    };
    let mut available: [Option<usize>; MAX_BINDINGS] = [None; MAX_BINDINGS];
    let mut tg_len: [Option<usize>; MAX_BINDINGS] = [None; MAX_BINDINGS];
    let mut bytes_copies: Vec<Vec<u128>> = Vec::new();
    let mut ranges = Vec::new();
    let check_index = |index: u32| -> Result<usize, Error> {
        if (index as usize) < MAX_BINDINGS {
            Ok(index as usize)
        } else {
            Err(Error::msg(format!(
                "kernel '{name}': binding index {index} is out of range (0..{MAX_BINDINGS})"
            )))
        }
    };
    for b in bindings {
        match *b {
            Binding::Buffer {
                index,
                buffer,
                offset,
            } => {
                let i = check_index(index)?;
                if offset > buffer.len() {
                    return Err(Error::msg(format!(
                        "kernel '{name}': buffer {index} offset {offset} is past its end ({} bytes)",
                        buffer.len()
                    )));
                }
                let p = unsafe { buffer.contents().add(offset) };
                common.buffers[i] = p;
                available[i] = Some(buffer.len() - offset);
                let begin = p as usize;
                ranges.push((
                    index,
                    TrafficRange {
                        begin,
                        end: begin + buffer.len() - offset,
                        coalesce: 1,
                        ..TrafficRange::default()
                    },
                ));
            }
            Binding::Bytes { index, data } => {
                let i = check_index(index)?;
                if data.len() > MAX_BYTES_ARGUMENT {
                    return Err(Error::msg(format!(
                        "kernel '{name}': {} bytes passed with setBytes at index {index}; \
                         Metal allows {MAX_BYTES_ARGUMENT} (bind a buffer instead)",
                        data.len()
                    )));
                }
                let mut copy = vec![0u128; data.len().div_ceil(16).max(1)];
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        data.as_ptr(),
                        copy.as_mut_ptr() as *mut u8,
                        data.len(),
                    )
                };
                let p = copy.as_mut_ptr() as *mut u8;
                bytes_copies.push(copy);
                common.buffers[i] = p;
                available[i] = Some(data.len());
                let begin = p as usize;
                ranges.push((
                    index,
                    TrafficRange {
                        begin,
                        end: begin + data.len(),
                        ..TrafficRange::default()
                    },
                ));
            }
            Binding::Threadgroup { index, len } => {
                let i = check_index(index)?;
                tg_len[i] = Some(len);
            }
        }
    }
    for p in &kernel.params {
        let i = p.index as usize;
        let offset = bindings.iter().find_map(|b| match *b {
            Binding::Buffer { index, offset, .. } if index as usize == i => Some(offset),
            _ => None,
        });
        let is_buffer = matches!(p.kind, PARAM_BUFFER | PARAM_BUFFER_REF);
        if let Some(offset) = offset.filter(|&o| is_buffer && !(o as u64).is_multiple_of(p.align)) {
            return Err(Error::msg(format!(
                "kernel '{name}': buffer {i} (parameter '{}') is bound at offset {offset}, \
                 not a multiple of the {}-byte alignment Metal requires for it",
                p.name, p.align
            )));
        }
        match p.kind {
            PARAM_BUFFER | PARAM_BUFFER_REF => match available[i] {
                None if !p.optional => {
                    return Err(Error::msg(format!(
                        "kernel '{name}': nothing is bound at buffer index {i} (parameter '{}')",
                        p.name
                    )))
                }
                Some(avail) if p.kind == PARAM_BUFFER_REF && (avail as u64) < p.size => {
                    return Err(Error::msg(format!(
                        "kernel '{name}': buffer {i} (parameter '{}') has {avail} bytes, the kernel reads {} bytes",
                        p.name, p.size
                    )))
                }
                _ => {}
            },
            PARAM_THREADGROUP if tg_len[i].is_none() => {
                return Err(Error::msg(format!(
                    "kernel '{name}': no threadgroup memory length is set at index {i} (parameter '{}')",
                    p.name
                )))
            }
            _ => {}
        }
    }
    let mut tg_offsets = Vec::new();
    let mut tg_bytes = 0usize;
    for (i, len) in tg_len.iter().enumerate() {
        if let Some(len) = len {
            tg_offsets.push((i, tg_bytes));
            tg_bytes += len.div_ceil(16) * 16;
        }
    }
    let declared = kernel.tg_static_bytes as usize;
    if tg_bytes + declared > crate::exec::TG_STATIC_BYTES {
        return Err(Error::msg(format!(
            "kernel '{name}': {} bytes of threadgroup memory ({declared} declared + {tg_bytes} bound); \
             Metal allows {} (maxThreadgroupMemoryLength)",
            declared + tg_bytes,
            crate::exec::TG_STATIC_BYTES
        )));
    }
    let groups = grid.count();
    let mut stats = DispatchStats {
        threadgroups: groups,
        threads: groups * threads_per_group,
        sync_points: 0,
        buffers: Vec::new(),
        coalescing: LoadCoalescing::default(),
    };
    if groups == 0 {
        return Ok(stats);
    }
    let workers = (max_workers() as u64).min(groups).max(1) as usize;
    let count_traffic = pipeline.counts_traffic();
    // The line bitmaps live until every worker has finished.
    let mut line_maps: Vec<Vec<u64>> = Vec::new();
    if count_traffic {
        for (_, r) in ranges.iter_mut() {
            let lines = (r.end - r.begin).div_ceil(64);
            let mut map = vec![0u64; lines.div_ceil(64).max(1)];
            r.lines = map.as_mut_ptr();
            line_maps.push(map);
        }
    }
    let shared = SharedPlan {
        plan: GroupPlan {
            entry: kernel.entry,
            fibers: kernel.uses_sync,
            tptg: [tptg.x, tptg.y, tptg.z],
            common,
            tg_offsets,
            tg_dynamic_bytes: tg_bytes,
        },
        grid,
        next: AtomicU64::new(0),
        chunk: (groups / (workers as u64 * 8)).clamp(1, 64),
        ranges: if count_traffic { ranges } else { Vec::new() },
        set_traffic: count_traffic.then(|| pipeline.set_traffic_fn()),
    };
    let results = if workers == 1 {
        vec![run_worker(&shared)]
    } else {
        pool()
            .broadcast(|ctx| {
                if ctx.index() < workers {
                    Some(run_worker(&shared))
                } else {
                    None
                }
            })
            .into_iter()
            .flatten()
            .collect()
    };
    drop(bytes_copies);
    drop(line_maps);
    let mut traffic: Vec<BufferTraffic> = Vec::new();
    for r in &results {
        if let Some(e) = &r.error {
            return Err(Error::msg(format!("kernel '{name}': {e}")));
        }
        stats.sync_points += r.sync_points;
        stats.coalescing.add(LoadCoalescing {
            requested_bytes: r.loads.requested,
            line_bytes: r.loads.line_bytes,
        });
        for (k, t) in r.traffic.iter().enumerate() {
            let index = shared.ranges[k].0;
            match traffic.iter_mut().find(|b| b.index == index) {
                Some(b) => {
                    b.bytes_read += t.read;
                    b.bytes_written += t.written;
                    b.line_bytes_read += 64 * t.lines_read;
                }
                None => traffic.push(BufferTraffic {
                    index,
                    bytes_read: t.read,
                    bytes_written: t.written,
                    line_bytes_read: 64 * t.lines_read,
                }),
            }
        }
    }
    traffic.sort_by_key(|b| b.index);
    stats.buffers = traffic;
    Ok(stats)
}
