// Metal atomics for msl-emu. Threadgroups run on several worker threads at once,
// so device-memory atomics must be real CPU atomics; the same code serves
// threadgroup memory (uncontended there).
#pragma once

namespace metal {

enum memory_order { memory_order_relaxed, memory_order_acquire, memory_order_release, memory_order_acq_rel,
                    memory_order_seq_cst };

template <class T> struct atomic {
  T __v;
};
typedef atomic<int> atomic_int;
typedef atomic<uint> atomic_uint;
typedef atomic<bool> atomic_bool;
typedef atomic<float> atomic_float;
typedef atomic<ulong> atomic_ulong;
typedef atomic<long> atomic_long;

#if __MSL_EMU_COUNT_TRAFFIC
extern "C" void __msl_count_access(const volatile void* p, __msl_u64 size, int written);
#define __MSL_COUNT(P, SIZE, W) __msl_count_access((const volatile void*)(P), SIZE, W)
#else
#define __MSL_COUNT(P, SIZE, W) ((void)0)
#endif

// The value type of an atomic object reached through any qualified pointer.
template <class A> struct __msl_atomic_value;
template <class T> struct __msl_atomic_value<atomic<T>> { typedef T type; };
template <class A> using __msl_av = typename __msl_atomic_value<typename __msl_remove_cv<A>::type>::type;

#if __MSL_EMU_STRICT
// The syntax check only needs the shapes; any qualified pointer is accepted.
template <class A> auto atomic_load_explicit(A* obj, memory_order) -> decltype(+obj->__v);
template <class A, class T> void atomic_store_explicit(A* obj, T v, memory_order);
template <class A, class T> auto atomic_exchange_explicit(A* obj, T v, memory_order) -> decltype(+obj->__v);
template <class A, class P, class T>
bool atomic_compare_exchange_weak_explicit(A* obj, P* expected, T desired, memory_order, memory_order);
#define __MSL_RMW(NAME) template <class A, class T> auto NAME(A* obj, T v, memory_order) -> decltype(+obj->__v);
#else
template <class A> __MSL_INLINE __msl_av<A> atomic_load_explicit(A* obj, memory_order) {
  __MSL_COUNT(obj, sizeof(obj->__v), 0);
  __msl_av<A> r;
  __atomic_load(&obj->__v, &r, __ATOMIC_RELAXED);
  return r;
}
template <class A, class T> __MSL_INLINE void atomic_store_explicit(A* obj, T v, memory_order) {
  __MSL_COUNT(obj, sizeof(obj->__v), 1);
  __msl_av<A> x = (__msl_av<A>)v;
  __atomic_store(&obj->__v, &x, __ATOMIC_RELAXED);
}
template <class A, class T> __MSL_INLINE __msl_av<A> atomic_exchange_explicit(A* obj, T v, memory_order) {
  __MSL_COUNT(obj, sizeof(obj->__v), 0);
  __MSL_COUNT(obj, sizeof(obj->__v), 1);
  __msl_av<A> x = (__msl_av<A>)v, r;
  __atomic_exchange(&obj->__v, &x, &r, __ATOMIC_RELAXED);
  return r;
}
template <class A, class P, class T>
__MSL_INLINE bool atomic_compare_exchange_weak_explicit(A* obj, P* expected, T desired, memory_order, memory_order) {
  __MSL_COUNT(obj, sizeof(obj->__v), 0);
  __msl_av<A> e = *expected;
  __msl_av<A> d = (__msl_av<A>)desired;
  bool ok = __atomic_compare_exchange(&obj->__v, &e, &d, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  if (ok) __MSL_COUNT(obj, sizeof(obj->__v), 1);
  else *expected = e;
  return ok;
}
// Read-modify-write through a compare-exchange loop, which also covers float.
#define __MSL_RMW(NAME, OP)                                                                 \
  template <class A, class T> __MSL_INLINE __msl_av<A> NAME(A* obj, T v, memory_order) {    \
    typedef __msl_av<A> V;                                                                  \
    __MSL_COUNT(obj, sizeof(V), 0);                                                         \
    __MSL_COUNT(obj, sizeof(V), 1);                                                         \
    V b = (V)v;                                                                             \
    V old;                                                                                  \
    __atomic_load(&obj->__v, &old, __ATOMIC_RELAXED);                                       \
    V next;                                                                                 \
    do {                                                                                    \
      V a = old;                                                                            \
      next = (V)(OP);                                                                       \
    } while (!__atomic_compare_exchange(&obj->__v, &old, &next, true, __ATOMIC_RELAXED,     \
                                        __ATOMIC_RELAXED));                                 \
    return old;                                                                             \
  }
#endif

#if __MSL_EMU_STRICT
__MSL_RMW(atomic_fetch_add_explicit)
__MSL_RMW(atomic_fetch_sub_explicit)
__MSL_RMW(atomic_fetch_and_explicit)
__MSL_RMW(atomic_fetch_or_explicit)
__MSL_RMW(atomic_fetch_xor_explicit)
__MSL_RMW(atomic_fetch_min_explicit)
__MSL_RMW(atomic_fetch_max_explicit)
#else
__MSL_RMW(atomic_fetch_add_explicit, a + b)
__MSL_RMW(atomic_fetch_sub_explicit, a - b)
__MSL_RMW(atomic_fetch_and_explicit, a & b)
__MSL_RMW(atomic_fetch_or_explicit, a | b)
__MSL_RMW(atomic_fetch_xor_explicit, a ^ b)
__MSL_RMW(atomic_fetch_min_explicit, b < a ? b : a)
__MSL_RMW(atomic_fetch_max_explicit, a < b ? b : a)
#endif
#undef __MSL_RMW

}  // namespace metal
