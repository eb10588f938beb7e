// Benchmark kernel for the emulator's per-thread costs. It contains a barrier, so
// every thread runs as a fiber even when `barriers` is 0: timing barriers = 0
// gives the cost of launching fibers, and the growth with `barriers` the cost of
// one sync point per lane.
#include <metal_stdlib>
using namespace metal;

kernel void fiber_barriers(
    device uint *out               [[buffer(0)]],
    constant uint &barriers        [[buffer(1)]],
    uint gid                       [[thread_position_in_grid]],
    uint tid                       [[thread_position_in_threadgroup]])
{
    uint acc = gid;
    for (uint i = 0; i < barriers; ++i) {
        threadgroup_barrier(mem_flags::mem_none);
        acc += tid ^ i;
    }
    out[gid] = acc;
}
