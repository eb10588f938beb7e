// Invalid on purpose: uses a name that was never declared.
#include <metal_stdlib>
using namespace metal;

kernel void undeclared_identifier(
    device float *out              [[buffer(0)]],
    uint gid                       [[thread_position_in_grid]])
{
    const float scale = 2.0f;
    out[gid] = scale * bias; // expect-error
}
