//! The device layer on msl-emu: the same kernels.metal compiled by clang and run
//! on the CPU with GPU semantics. Dispatches run when they are recorded; the
//! first failure is kept and returned by `Batch::finish`.

use super::{Arg, GpuOptions, Hazards, KernelStats, Stats};
use anyhow::{anyhow, Result};
use std::sync::{Arc, Mutex};

pub struct Gpu {
    library: msl_emu::Library,
    stats: Mutex<KernelStats>,
}

#[derive(Clone)]
pub struct Pipeline {
    inner: msl_emu::Pipeline,
}

#[derive(Clone)]
pub struct Buffer {
    inner: msl_emu::Buffer,
    /// A mapped file no kernel writes (the weights).
    read_only: bool,
}

/// One command buffer's worth of dispatches. They run in program order; the
/// batch also counts the memory barriers Metal's concurrent encoder would need.
pub struct Batch<'g> {
    gpu: &'g Gpu,
    error: Option<anyhow::Error>,
    hazards: Hazards,
}

impl Gpu {
    /// Compiles `source` (the text of kernels.metal) with msl-emu.
    pub fn new(source: &str, options: GpuOptions) -> Result<Gpu> {
        let compile = msl_emu::CompileOptions {
            count_traffic: options.count_traffic,
            ..msl_emu::CompileOptions::default()
        };
        let library = msl_emu::Library::from_source(source, &compile)
            .map_err(|e| anyhow!("compiling shaders/kernels.metal with msl-emu: {e}"))?;
        Ok(Gpu {
            library,
            stats: Mutex::new(KernelStats::new()),
        })
    }

    pub fn pipeline(&self, name: &str) -> Result<Pipeline> {
        let inner = self
            .library
            .pipeline(name, &msl_emu::FunctionConstants::default())
            .map_err(|e| anyhow!("kernel '{name}': {e}"))?;
        Ok(Pipeline { inner })
    }

    /// msl-emu keeps compiled kernels in its own cache (`MSL_EMU_CACHE`).
    pub fn store_pipelines(&self) {}

    /// A zero-filled buffer of `bytes` bytes.
    pub fn buffer(&self, bytes: usize) -> Buffer {
        Buffer {
            inner: msl_emu::Buffer::new(bytes),
            read_only: false,
        }
    }

    /// The whole mapped file as a buffer, used in place.
    pub fn wrap_mmap(&self, map: Arc<memmap2::Mmap>) -> Result<Buffer> {
        let ptr = map.as_ptr() as *mut u8;
        let len = map.len();
        // The mapping lives as long as the buffer holds the Arc, and kernels only read weights.
        let inner = unsafe { msl_emu::Buffer::wrap(ptr, len, map) };
        Ok(Buffer {
            inner,
            read_only: true,
        })
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            gpu: self,
            error: None,
            hazards: Hazards::default(),
        }
    }

    /// Counters summed over the dispatches since the last call (or `take_kernel_stats`).
    pub fn take_stats(&self) -> Option<Stats> {
        let mut total = Stats::default();
        for (_, s) in self.take_kernel_stats()? {
            total.add(&s);
        }
        Some(total)
    }

    /// Counters per kernel since the last call (or `take_stats`).
    pub fn take_kernel_stats(&self) -> Option<KernelStats> {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        Some(std::mem::take(&mut *stats))
    }

    pub fn backend(&self) -> &'static str {
        "msl-emu"
    }
}

impl Buffer {
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub(super) fn contents(&self) -> *mut u8 {
        self.inner.contents()
    }
}

impl Pipeline {
    pub fn name(&self) -> &str {
        self.inner.name()
    }
}

impl Batch<'_> {
    /// Runs `grid` threadgroups of `threads` threads with `args` bound by index.
    pub fn dispatch(
        &mut self,
        p: &Pipeline,
        grid: [u32; 3],
        threads: [u32; 3],
        args: &[(u32, Arg)],
    ) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.run(p, grid, threads, args) {
            self.error = Some(e);
        }
    }

    fn run(
        &mut self,
        p: &Pipeline,
        grid: [u32; 3],
        threads: [u32; 3],
        args: &[(u32, Arg)],
    ) -> Result<()> {
        let mut bindings = Vec::with_capacity(args.len());
        let mut constant_indices = Vec::new();
        let mutable: Vec<usize> = args
            .iter()
            .filter_map(|(_, arg)| match arg {
                Arg::Buffer(b, _) if !b.read_only => Some(b.contents() as usize),
                _ => None,
            })
            .collect();
        let barrier = self.hazards.barrier_before(&mutable);
        for &(index, arg) in args {
            bindings.push(match arg {
                Arg::Buffer(buffer, offset) => msl_emu::Binding::Buffer {
                    index,
                    buffer: &buffer.inner,
                    offset,
                },
                Arg::Bytes(data) => {
                    // msl-emu refuses more than Metal's setBytes takes.
                    constant_indices.push(index);
                    msl_emu::Binding::Bytes { index, data }
                }
                Arg::Threadgroup(len) => msl_emu::Binding::Threadgroup { index, len },
            });
        }
        let [gx, gy, gz] = grid;
        let [tx, ty, tz] = threads;
        let stats = msl_emu::dispatch_threadgroups(
            &p.inner,
            msl_emu::Size3::new(gx, gy, gz),
            msl_emu::Size3::new(tx, ty, tz),
            &bindings,
        )
        // msl-emu's message already names the kernel.
        .map_err(anyhow::Error::from)?;
        let mut this = Stats {
            dispatches: 1,
            threadgroups: stats.threadgroups,
            threads: stats.threads,
            load_requested_bytes: stats.coalescing.requested_bytes,
            load_line_bytes: stats.coalescing.line_bytes,
            barriers: u64::from(barrier),
            ..Stats::default()
        };
        for traffic in stats
            .buffers
            .iter()
            .filter(|t| !constant_indices.contains(&t.index))
        {
            this.bytes_read += traffic.bytes_read;
            this.bytes_written += traffic.bytes_written;
            this.line_bytes_read += traffic.line_bytes_read;
        }
        let mut all = self.gpu.stats.lock().unwrap_or_else(|e| e.into_inner());
        match all.iter_mut().find(|(name, _)| name == p.name()) {
            Some((_, s)) => s.add(&this),
            None => all.push((p.name().to_string(), this)),
        }
        Ok(())
    }

    /// Returns the first error of the batch, if any (every dispatch has already run).
    pub fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
