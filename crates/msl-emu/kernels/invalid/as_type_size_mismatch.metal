// Invalid on purpose: as_type between types of different sizes. The error is
// raised inside the metal_stdlib template, but it must be reported at the line
// of this file that asked for the conversion.
#include <metal_stdlib>
using namespace metal;

kernel void as_type_size_mismatch(
    device const half *w           [[buffer(0)]],
    device float *y                [[buffer(1)]],
    uint i                         [[thread_position_in_grid]])
{
    y[i] = as_type<float>(w[i]); // expect-error
}
