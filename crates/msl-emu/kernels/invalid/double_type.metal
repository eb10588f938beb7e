// Invalid on purpose: Metal has no double type.
#include <metal_stdlib>
using namespace metal;

kernel void double_type(
    device float *out              [[buffer(0)]],
    uint gid                       [[thread_position_in_grid]])
{
    double acc = 0.0; // expect-error
    acc += out[gid];
    out[gid] = float(acc);
}
