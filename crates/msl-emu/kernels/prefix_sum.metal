// Exclusive prefix sum of u32 in two passes, as GPU scans are usually built:
// scan_blocks scans each threadgroup's chunk (4 values per thread) and records the
// chunk total; the totals are then scanned by the same kernel with one threadgroup,
// and scan_add_offsets adds each chunk's offset back.
#include <metal_stdlib>
using namespace metal;

constant constexpr uint VALUES_PER_THREAD = 4;

kernel void scan_blocks(
    device const uint *in          [[buffer(0)]],
    device uint *out               [[buffer(1)]],
    device uint *block_totals      [[buffer(2)]],
    constant uint &n               [[buffer(3)]],
    uint tgid                      [[threadgroup_position_in_grid]],
    uint tid                       [[thread_position_in_threadgroup]],
    uint threads                   [[threads_per_threadgroup]],
    uint sgid                      [[simdgroup_index_in_threadgroup]],
    uint lane                      [[thread_index_in_simdgroup]],
    uint simdgroups                [[simdgroups_per_threadgroup]])
{
    threadgroup uint simd_offsets[32];

    const uint base = (tgid * threads + tid) * VALUES_PER_THREAD;
    uint v[VALUES_PER_THREAD];
    uint local_total = 0;
    for (uint i = 0; i < VALUES_PER_THREAD; ++i) {
        v[i] = base + i < n ? in[base + i] : 0u;
        local_total += v[i];
    }

    const uint before_me = simd_prefix_exclusive_sum(local_total);
    const uint simd_total = simd_sum(local_total);
    if (lane == 0) {
        simd_offsets[sgid] = simd_total;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    if (sgid == 0) {
        const uint t = lane < simdgroups ? simd_offsets[lane] : 0u;
        const uint offset = simd_prefix_exclusive_sum(t);
        const uint block_total = simd_sum(t);
        if (lane < simdgroups) {
            simd_offsets[lane] = offset;
        }
        if (lane == 0) {
            block_totals[tgid] = block_total;
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    uint running = simd_offsets[sgid] + before_me;
    for (uint i = 0; i < VALUES_PER_THREAD; ++i) {
        if (base + i < n) {
            out[base + i] = running;
        }
        running += v[i];
    }
}

// No sync point: the emulator may run this one as plain calls.
kernel void scan_add_offsets(
    device uint *data              [[buffer(0)]],
    device const uint *offsets     [[buffer(1)]],
    constant uint &n               [[buffer(2)]],
    uint gid                       [[thread_position_in_grid]],
    uint tgid                      [[threadgroup_position_in_grid]])
{
    const uint base = gid * VALUES_PER_THREAD;
    const uint offset = offsets[tgid];
    for (uint i = 0; i < VALUES_PER_THREAD; ++i) {
        if (base + i < n) {
            data[base + i] += offset;
        }
    }
}
