//! msl-emu: Metal Shading Language kernels on the CPU, with the semantics of an
//! Apple GPU (threadgroups, 32-lane simdgroups, barriers, SIMD collectives,
//! threadgroup memory). Kernels are rewritten to C++ (`rewrite`), compiled by
//! clang into a cached shared object (`toolchain`, `library`) and run by a
//! fiber runtime (`exec`, `fiber`, `dispatch`). See README.md.

mod abi;
mod buffer;
mod dispatch;
mod error;
mod exec;
mod fiber;
mod hash;
mod library;
mod rewrite;
mod toolchain;

pub use buffer::Buffer;
pub use dispatch::{
    dispatch_threadgroups, max_workers, set_max_workers, Binding, BufferTraffic, DispatchStats,
    LoadCoalescing, Size3, MAX_BYTES_ARGUMENT,
};
pub use error::{Diagnostic, Diagnostics, Error};
pub use library::{
    check_syntax, check_syntax_source, CompileOptions, FunctionConstants, Library, Pipeline,
};
pub use toolchain::{cache_dir, clang_path};

#[cfg(test)]
mod perf_tests;
#[cfg(test)]
mod runtime_tests;
