// out[row] = x[row] / sqrt(mean(x[row]^2) + eps) * weight, one threadgroup per row.
// The sum of squares is reduced in two levels: simd_sum inside each simdgroup,
// then the per-simdgroup partials through threadgroup memory.
#include <metal_stdlib>
using namespace metal;

struct RmsNormParams {
    uint cols;   // a multiple of 4
    float eps;
};

kernel void rms_norm(
    device const float *x          [[buffer(0)]],
    device const float *weight     [[buffer(1)]],
    device float *out              [[buffer(2)]],
    constant RmsNormParams &p      [[buffer(3)]],
    uint row                       [[threadgroup_position_in_grid]],
    uint tid                       [[thread_position_in_threadgroup]],
    uint threads                   [[threads_per_threadgroup]],
    uint sgid                      [[simdgroup_index_in_threadgroup]],
    uint lane                      [[thread_index_in_simdgroup]],
    uint simdgroups                [[simdgroups_per_threadgroup]])
{
    threadgroup float partials[32];

    const uint cols4 = p.cols / 4;
    device const float4 *xr = (device const float4 *)(x + row * p.cols);
    device const float4 *w4 = (device const float4 *)weight;
    device float4 *o4 = (device float4 *)(out + row * p.cols);

    float sumsq = 0.0f;
    for (uint c = tid; c < cols4; c += threads) {
        const float4 v = xr[c];
        sumsq += dot(v, v);
    }
    sumsq = simd_sum(sumsq);
    if (lane == 0) {
        partials[sgid] = sumsq;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    if (sgid == 0) {
        float total = lane < simdgroups ? partials[lane] : 0.0f;
        total = simd_sum(total);
        if (lane == 0) {
            partials[0] = total;
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    const float scale = rsqrt(partials[0] / float(p.cols) + p.eps);
    for (uint c = tid; c < cols4; c += threads) {
        o4[c] = xr[c] * scale * w4[c];
    }
}
