// y = W·x with f16 weights and f32 activations (cols a multiple of 4), accumulated in f32.
// Lanes read half4 from W and float4 from x; two rows per simdgroup keep the
// per-lane register footprint small, as f16 kernels on Apple GPUs usually do.
#include <metal_stdlib>
using namespace metal;

constant constexpr uint ROWS_PER_SIMDGROUP = 2;

struct MatvecParams {
    uint rows;
    uint cols;
};

kernel void matvec_f16(
    device const half *w           [[buffer(0)]],
    device const float *x          [[buffer(1)]],
    device float *y                [[buffer(2)]],
    constant MatvecParams &p       [[buffer(3)]],
    uint tgid                      [[threadgroup_position_in_grid]],
    uint sgid                      [[simdgroup_index_in_threadgroup]],
    uint lane                      [[thread_index_in_simdgroup]],
    uint simdgroups                [[simdgroups_per_threadgroup]])
{
    const uint first_row = (tgid * simdgroups + sgid) * ROWS_PER_SIMDGROUP;
    if (first_row >= p.rows) {
        return;
    }
    const uint cols4 = p.cols / 4;
    device const float4 *x4 = (device const float4 *)x;

    float acc[ROWS_PER_SIMDGROUP] = {0.0f, 0.0f};
    for (uint c = lane; c < cols4; c += 32) {
        const float4 xv = x4[c];
        for (uint r = 0; r < ROWS_PER_SIMDGROUP; ++r) {
            if (first_row + r < p.rows) {
                device const half4 *w4 = (device const half4 *)(w + (first_row + r) * p.cols);
                acc[r] += dot(float4(w4[c]), xv);
            }
        }
    }

    for (uint r = 0; r < ROWS_PER_SIMDGROUP; ++r) {
        if (first_row + r < p.rows) {
            const float total = simd_sum(acc[r]);
            if (lane == 0) {
                y[first_row + r] = total;
            }
        }
    }
}
