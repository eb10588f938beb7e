// SIMD collectives under divergence: a collective only combines the lanes that
// reach it. Values are small integers stored as float so every sum is exact.
// Each thread writes OUTPUTS floats; threads past n exit at once, which leaves the
// tail simdgroup partially live (and a later one not live at all).
#include <metal_stdlib>
using namespace metal;

constant constexpr uint OUTPUTS = 8;

kernel void divergent_collectives(
    device const float *x          [[buffer(0)]],
    device float *out              [[buffer(1)]],
    constant uint &n               [[buffer(2)]],
    uint gid                       [[thread_position_in_grid]],
    uint lane                      [[thread_index_in_simdgroup]])
{
    if (gid >= n) {
        return;
    }
    const float v = x[gid];
    device float *o = out + gid * OUTPUTS;

    // Two branches, each with its own collectives over its own lanes.
    if (lane % 3 == 0) {
        o[0] = simd_sum(v);
        o[1] = simd_prefix_inclusive_sum(v);
    } else {
        o[0] = simd_max(v);
        o[1] = simd_broadcast_first(v);
    }

    // Lane-dependent trip count: iteration i is reached by lanes with lane % 4 >= i.
    float reached = 0.0f;
    for (uint i = 0; i <= lane % 4; ++i) {
        reached += simd_sum(1.0f);
    }
    o[2] = reached;

    // After the loop every live lane is back together.
    o[3] = simd_sum(reached);

    // Shuffles read other lanes' values, so only use them where every source lane is live.
    const bool whole_simdgroup = gid - lane + 32 <= n;
    if (whole_simdgroup) {
        float r = v;
        for (ushort offset = 16; offset > 0; offset /= 2) {
            r += simd_shuffle_down(r, offset);
        }
        o[4] = r;
        o[5] = simd_shuffle_xor(v, ushort(5));
        o[6] = simd_shuffle(v, ushort((lane * 7) % 32));
        o[7] = simd_shuffle_up(v, ushort(3));
    } else {
        o[4] = 0.0f;
        o[5] = 0.0f;
        o[6] = 0.0f;
        o[7] = 0.0f;
    }
}
