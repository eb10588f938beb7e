// A threadgroup of 48 threads: simdgroup 0 has 32 lanes and simdgroup 1 only 16.
// Records what each thread sees of its simdgroup, and a threadgroup-wide sum built
// from simd_sum partials, which must count the short simdgroup exactly once.
#include <metal_stdlib>
using namespace metal;

constant constexpr uint OUTPUTS = 9;

kernel void partial_simdgroup(
    device const float *x          [[buffer(0)]],
    device float *out              [[buffer(1)]],
    uint gid                       [[thread_position_in_grid]],
    uint tid                       [[thread_index_in_threadgroup]],
    uint sgid                      [[simdgroup_index_in_threadgroup]],
    uint lane                      [[thread_index_in_simdgroup]],
    uint width                     [[threads_per_simdgroup]],
    uint simdgroups                [[simdgroups_per_threadgroup]],
    uint threads                   [[threads_per_threadgroup]])
{
    threadgroup float partial[32];
    const float v = x[gid];

    const float s = simd_sum(v);
    if (lane == 0) {
        partial[sgid] = s;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float total = 0.0f;
    for (uint g = 0; g < simdgroups; ++g) {
        total += partial[g];
    }

    device float *o = out + gid * OUTPUTS;
    o[0] = float(tid);
    o[1] = float(sgid);
    o[2] = float(lane);
    o[3] = float(width);
    o[4] = float(simdgroups);
    o[5] = simd_sum(1.0f);                  // live lanes in this simdgroup
    o[6] = simd_prefix_exclusive_sum(v);
    o[7] = total;
    o[8] = float(threads);
}
