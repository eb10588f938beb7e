//! The device layer: compiled kernels, buffers and command batches, on Metal
//! (macOS, `metal.rs`) or on the CPU through msl-emu (every other host, `emu.rs`).
//! Both backends expose the same types, so `model.rs` is written once.

#[cfg(not(target_os = "macos"))]
mod emu;
mod hazards;
#[cfg(target_os = "macos")]
mod metal;
#[cfg(target_os = "macos")]
mod metal_cache;

#[cfg(not(target_os = "macos"))]
pub use emu::{Batch, Buffer, Gpu, Pipeline};
#[cfg(target_os = "macos")]
pub use metal::{Batch, Buffer, Gpu, Pipeline};

pub use hazards::Hazards;

/// What a kernel argument index is bound to (Metal's setBuffer, setBytes and
/// setThreadgroupMemoryLength).
#[derive(Clone, Copy)]
pub enum Arg<'a> {
    /// A buffer from this byte offset on.
    Buffer(&'a Buffer, usize),
    /// A small constant block copied into the command (at most 4 KiB on Metal).
    Bytes(&'a [u8]),
    /// Threadgroup memory of this many bytes.
    Threadgroup(usize),
}

#[derive(Clone, Copy, Debug, Default)]
pub struct GpuOptions {
    /// msl-emu only: build the kernels with load/store counters so `take_stats`
    /// reports bytes read and written (several times slower). Ignored on Metal.
    pub count_traffic: bool,
}

/// Work done by dispatches since the last `Gpu::take_stats` (msl-emu only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub dispatches: u64,
    pub threadgroups: u64,
    pub threads: u64,
    /// Bytes kernels loaded from bound buffers (setBytes data not included).
    pub bytes_read: u64,
    /// Bytes kernels stored to bound buffers.
    pub bytes_written: u64,
    /// Distinct 64-byte lines each dispatch read, in bytes: device-memory
    /// traffic when caches keep what a dispatch re-reads.
    pub line_bytes_read: u64,
    /// Bytes the lanes of each simdgroup load asked for (msl-emu's coalescing counter).
    pub load_requested_bytes: u64,
    /// 64 × the distinct lines each simdgroup load touched.
    pub load_line_bytes: u64,
    /// Memory barriers Metal's concurrent encoder needs before these dispatches.
    pub barriers: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.dispatches += other.dispatches;
        self.threadgroups += other.threadgroups;
        self.threads += other.threads;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.line_bytes_read += other.line_bytes_read;
        self.load_requested_bytes += other.load_requested_bytes;
        self.load_line_bytes += other.load_line_bytes;
        self.barriers += other.barriers;
    }

    /// Requested ÷ line bytes of the loads, in percent: how much of the
    /// 64-byte lines a simdgroup's loads fetch the kernel uses.
    pub fn load_efficiency_percent(&self) -> f64 {
        if self.load_line_bytes == 0 {
            100.0
        } else {
            100.0 * self.load_requested_bytes as f64 / self.load_line_bytes as f64
        }
    }
}

/// [`Stats`] per kernel, in the order the kernels were first dispatched.
pub type KernelStats = Vec<(String, Stats)>;

/// Bytes per Metal `setBytes` argument: larger constant data belongs in a buffer.
pub const MAX_BYTES_ARG: usize = 4096;

impl Buffer {
    /// The pointer to byte `offset_bytes` after checking that `bytes` more fit.
    fn span(&self, offset_bytes: usize, bytes: usize, what: &str) -> *mut u8 {
        let end = offset_bytes.checked_add(bytes);
        assert!(
            end.is_some_and(|end| end <= self.len()),
            "{what} of {bytes} bytes at offset {offset_bytes} is outside the {}-byte buffer",
            self.len()
        );
        // The assertion above keeps the result inside the buffer's memory.
        unsafe { self.contents().add(offset_bytes) }
    }

    fn read<T: Copy + Default>(&self, offset_bytes: usize, len: usize) -> Vec<T> {
        let size = std::mem::size_of::<T>();
        let src = self.span(offset_bytes, len * size, "read");
        let mut out = vec![T::default(); len];
        // The source range is inside the buffer (checked by `span`); no kernel
        // runs while the host reads, because `Batch::finish` waits for completion.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr() as *mut u8, len * size) };
        out
    }

    fn write<T: Copy>(&self, offset_bytes: usize, data: &[T]) {
        let bytes = std::mem::size_of_val(data);
        let dst = self.span(offset_bytes, bytes, "write");
        // Same reasoning as `read`: in bounds, and no batch is in flight.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr() as *const u8, dst, bytes) };
    }

    /// `len` f32 values from byte `offset_bytes`. Panics when out of bounds (a caller bug).
    pub fn read_f32(&self, offset_bytes: usize, len: usize) -> Vec<f32> {
        self.read(offset_bytes, len)
    }

    /// `len` u32 values from byte `offset_bytes`. Panics when out of bounds (a caller bug).
    pub fn read_u32(&self, offset_bytes: usize, len: usize) -> Vec<u32> {
        self.read(offset_bytes, len)
    }

    /// Copies `data` in at byte `offset_bytes`. Panics when out of bounds (a caller bug).
    pub fn write_f32(&self, offset_bytes: usize, data: &[f32]) {
        self.write(offset_bytes, data)
    }

    /// `len` bytes from byte `offset_bytes`. Panics when out of bounds (a caller bug).
    pub fn read_bytes(&self, offset_bytes: usize, len: usize) -> Vec<u8> {
        self.read(offset_bytes, len)
    }

    /// Copies `data` in at byte `offset_bytes`. Panics when out of bounds (a caller bug).
    pub fn write_bytes(&self, offset_bytes: usize, data: &[u8]) {
        self.write(offset_bytes, data)
    }

    /// Copies `data` in at byte `offset_bytes`. Panics when out of bounds (a caller bug).
    pub fn write_u32(&self, offset_bytes: usize, data: &[u32]) {
        self.write(offset_bytes, data)
    }

    /// Sets every byte to zero (recurrent state at the start of a sequence).
    pub fn zero(&self) {
        let dst = self.span(0, self.len(), "zero");
        // In bounds by construction, and no batch is in flight (see `read`).
        unsafe { std::ptr::write_bytes(dst, 0, self.len()) };
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Declares `struct Kernels`, one [`Pipeline`] field per kernel of a
/// project's `kernels.metal` named as the kernel is, and `Kernels::new`,
/// which looks every one up (so a missing kernel fails at load, not mid-pass).
#[macro_export]
macro_rules! kernels {
    ($($name:ident),* $(,)?) => {
        struct Kernels {
            $($name: $crate::gpu::Pipeline,)*
        }

        impl Kernels {
            fn new(gpu: &$crate::gpu::Gpu) -> $crate::Result<Kernels> {
                Ok(Kernels {
                    $($name: gpu.pipeline(stringify!($name))?,)*
                })
            }
        }
    };
}
