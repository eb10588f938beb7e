// Row-wise softmax, one threadgroup per row, numerically stable (max subtracted).
// Both the max and the sum are reduced with simd_max/simd_sum, then across
// simdgroups through threadgroup memory. Rows need not be a multiple of anything.
#include <metal_stdlib>
using namespace metal;

struct SoftmaxParams {
    uint cols;
    float scale;   // logits are multiplied by this first (e.g. 1/temperature)
};

static float threadgroup_reduce_max(float v, threadgroup float *scratch,
                                    uint sgid, uint lane, uint simdgroups)
{
    v = simd_max(v);
    if (lane == 0) {
        scratch[sgid] = v;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float r = lane < simdgroups ? scratch[lane] : -INFINITY;
    r = simd_max(r);
    // Everyone has read scratch before it is reused by the next reduction.
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return r;
}

static float threadgroup_reduce_sum(float v, threadgroup float *scratch,
                                    uint sgid, uint lane, uint simdgroups)
{
    v = simd_sum(v);
    if (lane == 0) {
        scratch[sgid] = v;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float r = lane < simdgroups ? scratch[lane] : 0.0f;
    r = simd_sum(r);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return r;
}

kernel void softmax(
    device const float *logits     [[buffer(0)]],
    device float *probs            [[buffer(1)]],
    constant SoftmaxParams &p      [[buffer(2)]],
    uint row                       [[threadgroup_position_in_grid]],
    uint tid                       [[thread_position_in_threadgroup]],
    uint threads                   [[threads_per_threadgroup]],
    uint sgid                      [[simdgroup_index_in_threadgroup]],
    uint lane                      [[thread_index_in_simdgroup]],
    uint simdgroups                [[simdgroups_per_threadgroup]])
{
    threadgroup float scratch[32];
    device const float *in = logits + row * p.cols;
    device float *out = probs + row * p.cols;

    float local_max = -INFINITY;
    for (uint c = tid; c < p.cols; c += threads) {
        local_max = max(local_max, in[c] * p.scale);
    }
    const float row_max = threadgroup_reduce_max(local_max, scratch, sgid, lane, simdgroups);

    float local_sum = 0.0f;
    for (uint c = tid; c < p.cols; c += threads) {
        const float e = exp(in[c] * p.scale - row_max);
        out[c] = e;
        local_sum += e;
    }
    const float row_sum = threadgroup_reduce_sum(local_sum, scratch, sgid, lane, simdgroups);

    const float inv = 1.0f / row_sum;
    for (uint c = tid; c < p.cols; c += threads) {
        out[c] *= inv;
    }
}
