// msl-emu runtime ABI: the structures and callbacks shared by the generated kernel
// adapters (C++) and the Rust runtime. Layouts here must match src/abi.rs exactly.
#pragma once

typedef __UINT8_TYPE__ __msl_u8;
typedef __UINT32_TYPE__ __msl_u32;
typedef __UINT64_TYPE__ __msl_u64;
typedef __UINTPTR_TYPE__ __msl_uptr;

#define __MSL_MAX_BINDINGS 31
#define __MSL_SLOT_BYTES 32

// Values shared by every thread of one threadgroup.
struct __msl_common {
  void* buffers[__MSL_MAX_BINDINGS];
  void* tg[__MSL_MAX_BINDINGS];
  __msl_u32 tgpig[3];  // threadgroup_position_in_grid
  __msl_u32 tptg[3];   // threads_per_threadgroup
  __msl_u32 tgpg[3];   // threadgroups_per_grid
  __msl_u32 pad;
};

// Per-thread values; everything else is derived from these in the adapter.
struct __msl_thread {
  const __msl_common* c;
  __msl_u32 tid[3];  // thread_position_in_threadgroup
  __msl_u32 index;   // thread_index_in_threadgroup
};

// What a lane sees after a SIMD collective resolved: the values every
// participating lane contributed (32 bytes per lane, in a table the runtime
// owns) and which lanes took part. Reductions give every lane the same result:
// the first lane to compute it leaves it in `memo` for the others.
struct __msl_simd_group {
  __msl_u8* values;
  __msl_u32 active;
  __msl_u32 memo_ready;
  __msl_u8 memo[__MSL_SLOT_BYTES];
};
struct __msl_simd_view {
  struct __msl_simd_group* g;
  __msl_u32 lane;
  __msl_u32 pad;
};

// Callbacks into the Rust runtime, installed once per loaded library.
struct __msl_runtime {
  void (*barrier)(void);
  // `value` points to __MSL_SLOT_BYTES readable bytes; the first `size` are the lane's value.
  const __msl_simd_view* (*simd_exchange)(const void* value, __msl_u32 size, __msl_u32 site);
  void* (*tg_alloc)(__msl_u32 site, __msl_u64 size, __msl_u64 align);
  void (*fail)(const char* message);
  // count_traffic builds: a load of `size` bytes at `addr` of a device buffer, at load site `pc`.
  void (*record_load)(__msl_uptr pc, __msl_uptr addr, __msl_u32 size);
};

// Byte counters of the count_traffic build: one range per bound buffer.
struct __msl_traffic_range {
  __msl_uptr begin, end;
  __msl_u64 read, written;
  // One bit per 64-byte line of the range, shared by all workers of the
  // dispatch: a read of a line no thread has read before adds one to
  // lines_read, the traffic a GPU cache would fetch from device memory.
  __msl_u64* lines;
  __msl_u64 lines_read;
  __msl_u32 coalesce;  // a bound device buffer (not setBytes data): count how its loads coalesce
  __msl_u32 pad;
};
struct __msl_traffic {
  __msl_u32 count;
  __msl_u32 pad;
  struct __msl_traffic_range r[2 * __MSL_MAX_BINDINGS];
};

enum __msl_param_kind {
  __MSL_PARAM_BUFFER = 0,      // [[buffer(n)]], pointer
  __MSL_PARAM_BUFFER_REF = 1,  // [[buffer(n)]], reference: size is checked at dispatch
  __MSL_PARAM_THREADGROUP = 2, // [[threadgroup(n)]]
  __MSL_PARAM_OTHER = 3,       // positional attributes
};

struct __msl_param_info {
  __msl_u32 kind;
  __msl_u32 index;
  __msl_u64 size;
  __msl_u32 optional;  // guarded by [[function_constant]]: may be unbound
  __msl_u32 align;     // a buffer's binding offset must be a multiple of this
  const char* name;
};

struct __msl_kernel_info {
  const char* name;
  void (*entry)(const __msl_thread*);
  __msl_u32 uses_sync;
  __msl_u32 nparams;
  const __msl_param_info* params;
  __msl_u64 tg_static_bytes;  // the kernel's threadgroup variables, laid out in order
  __msl_u32 max_threads;      // [[max_total_threads_per_threadgroup]], else 1024
  __msl_u32 pad;
};

// The end of a threadgroup variable of `size` bytes placed after `offset`.
constexpr __msl_u64 __msl_tg_next(__msl_u64 offset, __msl_u64 size, __msl_u64 align) {
  return (offset + align - 1) / align * align + size;
}

// The alignment of what a buffer parameter's pointer type points to.
template <class P> struct __msl_pointee_align;
template <class T> struct __msl_pointee_align<T*> {
  static constexpr __msl_u64 value = alignof(T);
};

// A SIMD collective's call site; the rewriter numbers sites in source order so
// divergent collectives of one simdgroup resolve separately, earliest site first.
struct __msl_site {
  __msl_u32 id;
};
#define __MSL_SITE(n) (::__msl_site{n##u})
#define __MSL_NOSITE (::__msl_site{0xFFFFFFFFu})

#define __MSL_ABI_VERSION 5u
