// SIMD-group and threadgroup synchronisation for msl-emu.
// Every collective hands its value to the runtime, which suspends the lane until
// all live lanes of its simdgroup have arrived; each lane then computes its own
// result from the snapshot of the participating lanes' values (in lane order).
#pragma once

namespace metal {

enum class mem_flags : uint { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4,
                               mem_threadgroup_imageblock = 8, mem_object_data = 16 };
__MSL_INLINE constexpr mem_flags operator|(mem_flags a, mem_flags b) { return (mem_flags)((uint)a | (uint)b); }
enum class thread_scope { thread_scope_thread, thread_scope_simdgroup, thread_scope_threadgroup, thread_scope_device };
using enum thread_scope;

#if __MSL_EMU_STRICT
void threadgroup_barrier(mem_flags flags);
#else
__MSL_INLINE void threadgroup_barrier(mem_flags) { __msl_rt.barrier(); }
#endif

template <class T> __MSL_INLINE const __msl_simd_view* __msl_exchange(const T& v, __msl_site s) {
  static_assert(sizeof(T) <= __MSL_SLOT_BYTES, "SIMD collective on a type larger than 32 bytes");
  // A whole slot, so the runtime copies a fixed size.
  alignas(16) __msl_u8 slot[__MSL_SLOT_BYTES];
  __builtin_memcpy(slot, &v, sizeof(T));
  return __msl_rt.simd_exchange(slot, sizeof(T), s.id);
}
template <class T> __MSL_INLINE T __msl_lane_value(const __msl_simd_view* v, uint lane) {
  T r;
  __builtin_memcpy(&r, v->g->values + lane * __MSL_SLOT_BYTES, sizeof(T));
  return r;
}
__MSL_INLINE bool __msl_lane_active(const __msl_simd_view* v, uint lane) { return lane < 32 && ((v->g->active >> lane) & 1u); }

// Each collective exists with a leading call-site argument (inserted by the
// rewriter) and without it (for code the rewriter did not see).
#define __MSL_SITED1(NAME)                                                          \
  template <class T> __MSL_INLINE T NAME(T x) { return NAME(__MSL_NOSITE, x); }
#define __MSL_SITED2(NAME, U)                                                       \
  template <class T> __MSL_INLINE T NAME(T x, U u) { return NAME(__MSL_NOSITE, x, u); }

// Reductions over the active lanes, in ascending lane order.
template <class T> __MSL_INLINE bool __msl_memo_get(const __msl_simd_view* v, T* out) {
  if (!v->g->memo_ready) return false;
  __builtin_memcpy(out, v->g->memo, sizeof(T));
  return true;
}
template <class T> __MSL_INLINE T __msl_memo_put(const __msl_simd_view* v, T value) {
  __builtin_memcpy(v->g->memo, &value, sizeof(T));
  v->g->memo_ready = 1;
  return value;
}

#define __MSL_REDUCE(NAME, COMBINE)                                                 \
  template <class T> __MSL_INLINE T NAME(__msl_site s, T x) {                       \
    const __msl_simd_view* v = __msl_exchange(x, s);                                \
    T acc;                                                                          \
    if (__msl_memo_get(v, &acc)) return acc;                                        \
    uint m = v->g->active;                                                             \
    acc = __msl_lane_value<T>(v, __builtin_ctz(m));                                 \
    for (m &= m - 1; m; m &= m - 1) {                                               \
      T b = __msl_lane_value<T>(v, __builtin_ctz(m));                               \
      acc = COMBINE;                                                                \
    }                                                                               \
    return __msl_memo_put(v, acc);                                                  \
  }                                                                                 \
  __MSL_SITED1(NAME)
__MSL_REDUCE(simd_sum, acc + b)
__MSL_REDUCE(simd_product, acc * b)
__MSL_REDUCE(simd_max, max(acc, b))
__MSL_REDUCE(simd_min, min(acc, b))
__MSL_REDUCE(simd_and, acc & b)
__MSL_REDUCE(simd_or, acc | b)
__MSL_REDUCE(simd_xor, acc ^ b)
#undef __MSL_REDUCE

#define __MSL_PREFIX(NAME, INCLUSIVE, IDENTITY, COMBINE)                            \
  template <class T> __MSL_INLINE T NAME(__msl_site s, T x) {                       \
    const __msl_simd_view* v = __msl_exchange(x, s);                                \
    T acc = (T)(IDENTITY);                                                          \
    uint limit = v->lane + (INCLUSIVE ? 1u : 0u);                                   \
    for (uint m = v->g->active; m; m &= m - 1) {                                       \
      uint l = __builtin_ctz(m);                                                    \
      if (l >= limit) break;                                                        \
      T b = __msl_lane_value<T>(v, l);                                              \
      acc = COMBINE;                                                                \
    }                                                                               \
    return acc;                                                                     \
  }                                                                                 \
  __MSL_SITED1(NAME)
__MSL_PREFIX(simd_prefix_exclusive_sum, false, 0, acc + b)
__MSL_PREFIX(simd_prefix_inclusive_sum, true, 0, acc + b)
__MSL_PREFIX(simd_prefix_exclusive_product, false, 1, acc * b)
__MSL_PREFIX(simd_prefix_inclusive_product, true, 1, acc * b)
#undef __MSL_PREFIX

// Data movement: a lane whose source lane is out of range or inactive keeps its own value.
#define __MSL_SHUFFLE(NAME, U, SRC)                                                 \
  template <class T> __MSL_INLINE T NAME(__msl_site s, T x, U u) {                  \
    const __msl_simd_view* v = __msl_exchange(x, s);                                \
    uint lane = v->lane;                                                            \
    long src = (long)(SRC);                                                         \
    if (src < 0 || src >= 32 || !__msl_lane_active(v, (uint)src)) return x;         \
    return __msl_lane_value<T>(v, (uint)src);                                       \
  }                                                                                 \
  __MSL_SITED2(NAME, U)
__MSL_SHUFFLE(simd_shuffle, ushort, u)
__MSL_SHUFFLE(simd_broadcast, ushort, u)
__MSL_SHUFFLE(simd_shuffle_down, ushort, (long)lane + (long)u)
__MSL_SHUFFLE(simd_shuffle_up, ushort, (long)lane - (long)u)
__MSL_SHUFFLE(simd_shuffle_xor, ushort, lane ^ (uint)u)
__MSL_SHUFFLE(simd_shuffle_rotate_down, ushort, (lane + (uint)u) % 32u)
__MSL_SHUFFLE(simd_shuffle_rotate_up, ushort, (lane + 32u - ((uint)u % 32u)) % 32u)
__MSL_SHUFFLE(quad_shuffle, ushort, (lane & ~3u) + ((uint)u & 3u))
__MSL_SHUFFLE(quad_broadcast, ushort, (lane & ~3u) + ((uint)u & 3u))
__MSL_SHUFFLE(quad_shuffle_xor, ushort, (lane & ~3u) + ((lane ^ (uint)u) & 3u))
__MSL_SHUFFLE(quad_shuffle_down, ushort, (lane & 3u) + (uint)u < 4u ? (long)lane + (long)u : -1l)
__MSL_SHUFFLE(quad_shuffle_up, ushort, (lane & 3u) >= (uint)u ? (long)lane - (long)u : -1l)
#undef __MSL_SHUFFLE

template <class T> struct __msl_pair { T a, b; };
template <class T> __MSL_INLINE T simd_shuffle_and_fill_down(__msl_site s, T x, T fill, ushort delta) {
  const __msl_simd_view* v = __msl_exchange(__msl_pair<T>{x, fill}, s);
  uint src = v->lane + delta;
  uint l = src < 32 ? src : src - 32;
  if (!__msl_lane_active(v, l)) return x;
  __msl_pair<T> p = __msl_lane_value<__msl_pair<T>>(v, l);
  return src < 32 ? p.a : p.b;
}
template <class T> __MSL_INLINE T simd_shuffle_and_fill_up(__msl_site s, T x, T fill, ushort delta) {
  const __msl_simd_view* v = __msl_exchange(__msl_pair<T>{x, fill}, s);
  bool wrap = v->lane < delta;
  uint l = wrap ? v->lane + 32 - delta : v->lane - delta;
  if (!__msl_lane_active(v, l)) return x;
  __msl_pair<T> p = __msl_lane_value<__msl_pair<T>>(v, l);
  return wrap ? p.b : p.a;
}
template <class T> __MSL_INLINE T simd_shuffle_and_fill_down(T x, T fill, ushort delta) {
  return simd_shuffle_and_fill_down(__MSL_NOSITE, x, fill, delta);
}
template <class T> __MSL_INLINE T simd_shuffle_and_fill_up(T x, T fill, ushort delta) {
  return simd_shuffle_and_fill_up(__MSL_NOSITE, x, fill, delta);
}

template <class T> __MSL_INLINE T simd_broadcast_first(__msl_site s, T x) {
  const __msl_simd_view* v = __msl_exchange(x, s);
  return __msl_lane_value<T>(v, __builtin_ctz(v->g->active));
}
__MSL_SITED1(simd_broadcast_first)

#define __MSL_QUAD_REDUCE(NAME, COMBINE)                                              \
  template <class T> __MSL_INLINE T NAME(__msl_site s, T x) {                         \
    const __msl_simd_view* v = __msl_exchange(x, s);                                  \
    uint m = v->g->active & (0xFu << (v->lane & ~3u));                                   \
    T acc = __msl_lane_value<T>(v, __builtin_ctz(m));                                 \
    for (m &= m - 1; m; m &= m - 1) {                                                 \
      T b = __msl_lane_value<T>(v, __builtin_ctz(m));                                 \
      acc = COMBINE;                                                                  \
    }                                                                                 \
    return acc;                                                                       \
  }                                                                                   \
  __MSL_SITED1(NAME)
__MSL_QUAD_REDUCE(quad_sum, acc + b)
__MSL_QUAD_REDUCE(quad_max, max(acc, b))
__MSL_QUAD_REDUCE(quad_min, min(acc, b))
#undef __MSL_QUAD_REDUCE

// Votes.
struct simd_vote {
  typedef ulong vote_t;
  vote_t v;
  uint active;
  constexpr explicit operator vote_t() const { return v; }
  bool all() const { return (v & active) == active; }
  bool any() const { return v != 0; }
};
__MSL_INLINE simd_vote simd_ballot(__msl_site s, bool b) {
  const __msl_simd_view* v = __msl_exchange(b, s);
  simd_vote memo;
  if (__msl_memo_get(v, &memo)) return memo;
  ulong bits = 0;
  for (uint m = v->g->active; m; m &= m - 1) {
    uint l = __builtin_ctz(m);
    if (__msl_lane_value<bool>(v, l)) bits |= 1ul << l;
  }
  return __msl_memo_put(v, simd_vote{bits, v->g->active});
}
__MSL_INLINE simd_vote simd_ballot(bool b) { return simd_ballot(__MSL_NOSITE, b); }
__MSL_INLINE bool simd_all(__msl_site s, bool b) { return simd_ballot(s, b).all(); }
__MSL_INLINE bool simd_all(bool b) { return simd_all(__MSL_NOSITE, b); }
__MSL_INLINE bool simd_any(__msl_site s, bool b) { return simd_ballot(s, b).any(); }
__MSL_INLINE bool simd_any(bool b) { return simd_any(__MSL_NOSITE, b); }
__MSL_INLINE simd_vote simd_active_threads_mask(__msl_site s) { return simd_ballot(s, true); }
__MSL_INLINE simd_vote simd_active_threads_mask() { return simd_active_threads_mask(__MSL_NOSITE); }
__MSL_INLINE bool simd_is_first(__msl_site s) {
  const __msl_simd_view* v = __msl_exchange(true, s);
  return (uint)__builtin_ctz(v->g->active) == v->lane;
}
__MSL_INLINE bool simd_is_first() { return simd_is_first(__MSL_NOSITE); }
__MSL_INLINE bool simd_is_helper_thread() { return false; }

// A simdgroup barrier is a collective carrying no data.
#if __MSL_EMU_STRICT
void simdgroup_barrier(__msl_site s, mem_flags flags);
void simdgroup_barrier(mem_flags flags);
#else
__MSL_INLINE void simdgroup_barrier(__msl_site s, mem_flags = mem_flags::mem_none) {
  __msl_exchange(false, s);
}
__MSL_INLINE void simdgroup_barrier(mem_flags f = mem_flags::mem_none) { simdgroup_barrier(__MSL_NOSITE, f); }
#endif

// One GPU thread runs at a time inside a threadgroup and device memory is made
// coherent by the worker threads' own synchronisation, so fences order nothing.
__MSL_INLINE void atomic_thread_fence(mem_flags, int = 0, thread_scope = thread_scope::thread_scope_device) {}

#undef __MSL_SITED1
#undef __MSL_SITED2
}  // namespace metal
