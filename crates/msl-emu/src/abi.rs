//! Rust mirrors of the structures in shim/msl_emu_abi.h (layouts must match).

use std::ffi::c_char;

pub const MAX_BINDINGS: usize = 31;
pub const SLOT_BYTES: usize = 32;
pub const ABI_VERSION: u32 = 5;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Common {
    pub buffers: [*mut u8; MAX_BINDINGS],
    pub tg: [*mut u8; MAX_BINDINGS],
    pub tgpig: [u32; 3],
    pub tptg: [u32; 3],
    pub tgpg: [u32; 3],
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadArgs {
    pub c: *const Common,
    pub tid: [u32; 3],
    pub index: u32,
}

/// The values of one resolved SIMD collective, shared by its participants.
#[repr(C, align(64))]
pub struct SimdGroup {
    /// `SLOT_BYTES` per lane, for 32 lanes.
    pub values: *mut u8,
    pub active: u32,
    pub memo_ready: u32,
    pub memo: [u8; SLOT_BYTES],
}

/// A lane's handle on its simdgroup's resolved collective (constant per lane).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SimdView {
    pub g: *mut SimdGroup,
    pub lane: u32,
    pub pad: u32,
}

#[repr(C)]
pub struct RuntimeTable {
    pub barrier: extern "C" fn(),
    pub simd_exchange: extern "C" fn(*const u8, u32, u32) -> *const SimdView,
    pub tg_alloc: extern "C" fn(u32, u64, u64) -> *mut u8,
    pub fail: extern "C" fn(*const c_char),
    pub record_load: extern "C" fn(usize, usize, u32),
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct TrafficRange {
    pub begin: usize,
    pub end: usize,
    pub read: u64,
    pub written: u64,
    /// Bitmap of the 64-byte lines read so far in this dispatch (shared by the workers).
    pub lines: *mut u64,
    pub lines_read: u64,
    /// A bound device buffer (not setBytes data): its loads are coalescing-counted.
    pub coalesce: u32,
    pub pad: u32,
}

// The line bitmap is owned by the dispatch, outlives its workers and is only
// touched with atomic operations.
unsafe impl Send for TrafficRange {}

impl Default for TrafficRange {
    fn default() -> Self {
        TrafficRange {
            begin: 0,
            end: 0,
            read: 0,
            written: 0,
            lines: std::ptr::null_mut(),
            lines_read: 0,
            coalesce: 0,
            pad: 0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Traffic {
    pub count: u32,
    pub pad: u32,
    pub r: [TrafficRange; 2 * MAX_BINDINGS],
}

pub const PARAM_BUFFER: u32 = 0;
pub const PARAM_BUFFER_REF: u32 = 1;
pub const PARAM_THREADGROUP: u32 = 2;

#[repr(C)]
pub struct ParamInfo {
    pub kind: u32,
    pub index: u32,
    pub size: u64,
    pub optional: u32,
    /// A buffer's binding offset must be a multiple of this.
    pub align: u32,
    pub name: *const c_char,
}

pub type EntryFn = unsafe extern "C" fn(*const ThreadArgs);

#[repr(C)]
pub struct KernelInfo {
    pub name: *const c_char,
    pub entry: Option<EntryFn>,
    pub uses_sync: u32,
    pub nparams: u32,
    pub params: *const ParamInfo,
    /// The kernel's threadgroup variables, laid out in order.
    pub tg_static_bytes: u64,
    /// `[[max_total_threads_per_threadgroup]]`, else 1024.
    pub max_threads: u32,
    pub pad: u32,
}
