// Single-token (decode) attention over an f16 KV cache with grouped-query heads.
// One threadgroup per query head. Each simdgroup walks every SIMDGROUPS-th cached
// position with an online softmax (running max m, running sum l, running weighted
// value acc), so scores are never stored; the simdgroups' partial states are then
// merged through threadgroup memory.
//
// Cache layout: k_cache[pos][kv_head][HEAD_DIM] and v_cache likewise, in half.
// Each lane owns two of the HEAD_DIM = 64 dimensions and loads them as one half2.
#include <metal_stdlib>
using namespace metal;

constant constexpr uint HEAD_DIM = 64;
constant constexpr uint SIMDGROUPS = 4;

static_assert(HEAD_DIM == 2 * 32, "each lane owns two dimensions");

struct AttentionParams {
    uint n_heads;
    uint n_kv_heads;
    uint seq_len;     // cached positions to attend over, including the current one
    float scale;      // 1/sqrt(HEAD_DIM)
};

kernel void attention_decode(
    device const float *q          [[buffer(0)]],
    device const half *k_cache     [[buffer(1)]],
    device const half *v_cache     [[buffer(2)]],
    device float *out              [[buffer(3)]],
    constant AttentionParams &p    [[buffer(4)]],
    uint head                      [[threadgroup_position_in_grid]],
    uint sgid                      [[simdgroup_index_in_threadgroup]],
    uint lane                      [[thread_index_in_simdgroup]])
{
    threadgroup float sg_max[SIMDGROUPS];
    threadgroup float sg_sum[SIMDGROUPS];
    threadgroup float2 sg_acc[SIMDGROUPS][32];

    const uint kv_head = head / (p.n_heads / p.n_kv_heads);
    const uint pos_stride = p.n_kv_heads * HEAD_DIM;
    const float2 qv = ((device const float2 *)(q + head * HEAD_DIM))[lane] * p.scale;

    float m = -INFINITY;
    float l = 0.0f;
    float2 acc = float2(0.0f);
    for (uint t = sgid; t < p.seq_len; t += SIMDGROUPS) {
        const uint base = t * pos_stride + kv_head * HEAD_DIM;
        const half2 k2 = ((device const half2 *)(k_cache + base))[lane];
        const float s = simd_sum(dot(qv, float2(k2)));
        const float m_new = max(m, s);
        const float correction = exp(m - m_new);
        const float w = exp(s - m_new);
        const half2 v2 = ((device const half2 *)(v_cache + base))[lane];
        l = l * correction + w;
        acc = acc * correction + w * float2(v2);
        m = m_new;
    }

    if (lane == 0) {
        sg_max[sgid] = m;
        sg_sum[sgid] = l;
    }
    sg_acc[sgid][lane] = acc;
    threadgroup_barrier(mem_flags::mem_threadgroup);

    if (sgid == 0) {
        float global_max = -INFINITY;
        for (uint g = 0; g < SIMDGROUPS; ++g) {
            global_max = max(global_max, sg_max[g]);
        }
        float total = 0.0f;
        float2 merged = float2(0.0f);
        for (uint g = 0; g < SIMDGROUPS; ++g) {
            // A simdgroup that saw no position has max -inf and contributes 0.
            const float f = sg_sum[g] > 0.0f ? exp(sg_max[g] - global_max) : 0.0f;
            total += sg_sum[g] * f;
            merged += sg_acc[g][lane] * f;
        }
        ((device float2 *)(out + head * HEAD_DIM))[lane] = merged / total;
    }
}
