// Invalid on purpose: passes a threadgroup pointer where a device pointer is
// expected. Metal rejects this; strict mode must too, at the marked line.
#include <metal_stdlib>
using namespace metal;

static float first_element(device const float *p)
{
    return p[0];
}

kernel void address_space_mismatch(
    device float *out              [[buffer(0)]],
    uint tid                       [[thread_position_in_threadgroup]])
{
    threadgroup float tile[32];
    tile[tid % 32] = float(tid);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[tid] = first_element(tile); // expect-error
}
