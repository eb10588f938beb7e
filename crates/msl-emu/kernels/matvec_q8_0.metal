// y = W·x for GGML Q8_0 weights: each row is COLS/32 blocks of {half d; int8 qs[32]}
// (34 bytes), value = d * qs[i]. Shapes are compile-time constants (forge bakes
// them in); override Q8_ROWS / Q8_COLS with -D.
//
// Work split: a simdgroup owns ROWS_PER_SIMDGROUP rows. Four lanes share a block,
// eight quants each, so one simdgroup step covers eight blocks of every row and the
// x slice a lane loads (two float4) is reused for all of its rows. The two kernels
// differ only in how the lanes' partial sums are reduced.
#include <metal_stdlib>
using namespace metal;

#ifndef Q8_ROWS
#define Q8_ROWS 64
#endif
#ifndef Q8_COLS
#define Q8_COLS 256
#endif

constant constexpr uint QK8_0 = 32;
constant constexpr uint ROWS_PER_SIMDGROUP = 4;
constant constexpr uint SIMDGROUPS_PER_THREADGROUP = 2;
constant constexpr uint BLOCKS_PER_ROW = Q8_COLS / QK8_0;

static_assert(Q8_COLS % QK8_0 == 0, "Q8_0 rows are whole blocks");

struct block_q8_0 {
    half d;
    int8_t qs[QK8_0];
};

static_assert(sizeof(block_q8_0) == 34, "GGML Q8_0 block is 34 bytes");

// This lane's partial sums for the simdgroup's rows (rows past Q8_ROWS stay 0).
static void q8_0_partial_rows(device const block_q8_0 *w, device const float *x,
                              uint first_row, uint lane, thread float *acc)
{
    const uint block_in_step = lane / 4;  // 8 blocks per simdgroup step
    const uint slice = lane % 4;          // which 8 quants of the block

    for (uint ib = block_in_step; ib < BLOCKS_PER_ROW; ib += 8) {
        device const float4 *xs = (device const float4 *)(x + ib * QK8_0 + slice * 8);
        const float4 x_lo = xs[0];
        const float4 x_hi = xs[1];
        for (uint r = 0; r < ROWS_PER_SIMDGROUP; ++r) {
            if (first_row + r >= Q8_ROWS) {
                break;
            }
            device const block_q8_0 &blk = w[(first_row + r) * BLOCKS_PER_ROW + ib];
            device const int8_t *q = blk.qs + slice * 8;
            const float s = dot(float4(q[0], q[1], q[2], q[3]), x_lo)
                          + dot(float4(q[4], q[5], q[6], q[7]), x_hi);
            acc[r] += s * float(blk.d);
        }
    }
}

// One simd_sum per row.
kernel void matvec_q8_0(
    device const block_q8_0 *w     [[buffer(0)]],
    device const float *x          [[buffer(1)]],
    device float *y                [[buffer(2)]],
    uint tgid                      [[threadgroup_position_in_grid]],
    uint sgid                      [[simdgroup_index_in_threadgroup]],
    uint lane                      [[thread_index_in_simdgroup]])
{
    const uint first_row = (tgid * SIMDGROUPS_PER_THREADGROUP + sgid) * ROWS_PER_SIMDGROUP;
    if (first_row >= Q8_ROWS) {
        return;
    }
    float acc[ROWS_PER_SIMDGROUP] = {0.0f, 0.0f, 0.0f, 0.0f};
    q8_0_partial_rows(w, x, first_row, lane, acc);

    for (uint r = 0; r < ROWS_PER_SIMDGROUP; ++r) {
        if (first_row + r < Q8_ROWS) {
            const float total = simd_sum(acc[r]);
            if (lane == 0) {
                y[first_row + r] = total;
            }
        }
    }
}

// The same rows reduced together: one simd_sum of a float4 (one SIMD reduction
// instead of four on the GPU too).
kernel void matvec_q8_0_rows_reduced_together(
    device const block_q8_0 *w     [[buffer(0)]],
    device const float *x          [[buffer(1)]],
    device float *y                [[buffer(2)]],
    uint tgid                      [[threadgroup_position_in_grid]],
    uint sgid                      [[simdgroup_index_in_threadgroup]],
    uint lane                      [[thread_index_in_simdgroup]])
{
    const uint first_row = (tgid * SIMDGROUPS_PER_THREADGROUP + sgid) * ROWS_PER_SIMDGROUP;
    if (first_row >= Q8_ROWS) {
        return;
    }
    float acc[ROWS_PER_SIMDGROUP] = {0.0f, 0.0f, 0.0f, 0.0f};
    q8_0_partial_rows(w, x, first_row, lane, acc);

    const float4 total = simd_sum(float4(acc[0], acc[1], acc[2], acc[3]));
    if (lane == 0) {
        for (uint r = 0; r < ROWS_PER_SIMDGROUP && first_row + r < Q8_ROWS; ++r) {
            y[first_row + r] = total[r];
        }
    }
}
