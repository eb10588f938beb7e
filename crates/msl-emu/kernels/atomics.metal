// Atomics on threadgroup and device memory.
// histogram: a per-threadgroup histogram in threadgroup atomics, merged into the
// device histogram, plus a device-wide atomic max.
// compact_greater: stream compaction, each surviving value claims an output slot
// with the value returned by atomic_fetch_add.
#include <metal_stdlib>
using namespace metal;

constant constexpr uint BINS = 64;

kernel void histogram(
    device const uint *values      [[buffer(0)]],
    device atomic_uint *hist       [[buffer(1)]],
    device atomic_uint *max_value  [[buffer(2)]],
    constant uint &n               [[buffer(3)]],
    uint gid                       [[thread_position_in_grid]],
    uint grid_threads              [[threads_per_grid]],
    uint tid                       [[thread_position_in_threadgroup]],
    uint threads                   [[threads_per_threadgroup]])
{
    threadgroup atomic_uint local_hist[BINS];
    for (uint b = tid; b < BINS; b += threads) {
        atomic_store_explicit(&local_hist[b], 0u, memory_order_relaxed);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    uint local_max = 0;
    for (uint i = gid; i < n; i += grid_threads) {
        const uint v = values[i];
        atomic_fetch_add_explicit(&local_hist[v % BINS], 1u, memory_order_relaxed);
        local_max = max(local_max, v);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    for (uint b = tid; b < BINS; b += threads) {
        const uint count = atomic_load_explicit(&local_hist[b], memory_order_relaxed);
        if (count != 0) {
            atomic_fetch_add_explicit(&hist[b], count, memory_order_relaxed);
        }
    }
    atomic_fetch_max_explicit(max_value, local_max, memory_order_relaxed);
}

kernel void compact_greater(
    device const float *values     [[buffer(0)]],
    device float *kept             [[buffer(1)]],
    device atomic_uint *kept_count [[buffer(2)]],
    constant float &threshold      [[buffer(3)]],
    constant uint &n               [[buffer(4)]],
    uint gid                       [[thread_position_in_grid]])
{
    if (gid >= n) {
        return;
    }
    const float v = values[gid];
    if (v > threshold) {
        const uint slot = atomic_fetch_add_explicit(kept_count, 1u, memory_order_relaxed);
        kept[slot] = v;
    }
}
