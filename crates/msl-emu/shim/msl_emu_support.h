// Definitions every compiled library carries: the runtime callback table, the
// entry points the Rust side looks up with dlsym, and (count_traffic builds)
// the clang sanitizer-coverage callbacks that attribute loads and stores to
// bound buffers by address.
#pragma once

#define __MSL_EXPORT extern "C" __attribute__((visibility("default"), used))

extern "C" __attribute__((visibility("hidden"))) struct __msl_runtime __msl_rt = {};

__MSL_EXPORT __msl_u32 __msl_emu_init(const struct __msl_runtime* rt) {
  __msl_rt = *rt;
  return __MSL_ABI_VERSION;
}

// Per worker thread: the counters of the dispatch it is running.
static __thread struct __msl_traffic* __msl_traffic_cur __attribute__((tls_model("initial-exec"))) = nullptr;

__MSL_EXPORT void __msl_emu_set_traffic(struct __msl_traffic* t) { __msl_traffic_cur = t; }

#if __MSL_EMU_COUNT_TRAFFIC
__attribute__((no_sanitize("coverage"), always_inline)) static inline void __msl_count(const volatile void* p,
                                                                                        __msl_u64 size, int written) {
  struct __msl_traffic* t = __msl_traffic_cur;
  if (!t) return;
  __msl_uptr a = (__msl_uptr)p;
  for (__msl_u32 i = 0; i < t->count; i++) {
    struct __msl_traffic_range* r = &t->r[i];
    if (a >= r->begin && a < r->end) {
      if (written) {
        r->written += size;
        return;
      }
      r->read += size;
      // Inlined into the coverage callback, so this is the kernel's load site.
      if (r->coalesce) __msl_rt.record_load((__msl_uptr)__builtin_return_address(0), a, (__msl_u32)size);
      __msl_uptr last = a + size - 1 < r->end ? a + size - 1 : r->end - 1;
      for (__msl_uptr line = (a - r->begin) >> 6; line <= (last - r->begin) >> 6; line++) {
        __msl_u64 bit = 1ull << (line & 63);
        if (!(__atomic_fetch_or(&r->lines[line >> 6], bit, __ATOMIC_RELAXED) & bit)) r->lines_read++;
      }
      return;
    }
  }
}
extern "C" __attribute__((no_sanitize("coverage"), visibility("hidden"))) void __msl_count_access(
    const volatile void* p, __msl_u64 size, int written) {
  __msl_count(p, size, written);
}
#define __MSL_COV(N)                                                                                \
  extern "C" __attribute__((no_sanitize("coverage"), visibility("hidden"))) void __sanitizer_cov_load##N( \
      void* p) {                                                                                    \
    __msl_count(p, N, 0);                                                                           \
  }                                                                                                 \
  extern "C" __attribute__((no_sanitize("coverage"), visibility("hidden"))) void __sanitizer_cov_store##N( \
      void* p) {                                                                                    \
    __msl_count(p, N, 1);                                                                           \
  }
__MSL_COV(1)
__MSL_COV(2)
__MSL_COV(4)
__MSL_COV(8)
__MSL_COV(16)
#undef __MSL_COV
#endif
