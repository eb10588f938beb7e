// C[M][N] = A[M][K] · B[K][N] in f32 with simdgroup_matrix 8x8 tiles.
// A threadgroup of four simdgroups (2x2) computes a 32x32 block of C. Each K step
// the 128 threads stage a 32x16 slice of A and a 16x32 slice of B in threadgroup
// memory; every simdgroup then multiplies its 16x16 quarter as 2x2 8x8 tiles.
// M and N must be multiples of 32 and K a multiple of 16.
#include <metal_stdlib>
using namespace metal;

constant constexpr uint BM = 32;
constant constexpr uint BN = 32;
constant constexpr uint BK = 16;

struct GemmParams {
    uint m;
    uint n;
    uint k;
};

kernel void gemm_f32(
    device const float *a          [[buffer(0)]],
    device const float *b          [[buffer(1)]],
    device float *c                [[buffer(2)]],
    constant GemmParams &p         [[buffer(3)]],
    uint2 tgid                     [[threadgroup_position_in_grid]],
    uint tid                       [[thread_index_in_threadgroup]],
    uint sgid                      [[simdgroup_index_in_threadgroup]])
{
    threadgroup float a_tile[BM * BK];
    threadgroup float b_tile[BK * BN];

    const uint row0 = tgid.y * BM;
    const uint col0 = tgid.x * BN;
    const uint sg_row = (sgid / 2) * 16;
    const uint sg_col = (sgid % 2) * 16;

    simdgroup_float8x8 acc[2][2];
    for (uint i = 0; i < 2; ++i) {
        for (uint j = 0; j < 2; ++j) {
            acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
        }
    }

    for (uint k0 = 0; k0 < p.k; k0 += BK) {
        // 512 floats per tile, 4 per thread, loaded as one float4.
        {
            const uint r = tid / (BK / 4);
            const uint c4 = tid % (BK / 4);
            ((threadgroup float4 *)a_tile)[tid] =
                *((device const float4 *)(a + (row0 + r) * p.k + k0) + c4);
        }
        {
            const uint r = tid / (BN / 4);
            const uint c4 = tid % (BN / 4);
            ((threadgroup float4 *)b_tile)[tid] =
                *((device const float4 *)(b + (k0 + r) * p.n + col0) + c4);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);

        for (uint kk = 0; kk < BK; kk += 8) {
            simdgroup_float8x8 a_frag[2];
            simdgroup_float8x8 b_frag[2];
            for (uint i = 0; i < 2; ++i) {
                simdgroup_load(a_frag[i], a_tile + (sg_row + i * 8) * BK + kk, BK);
                simdgroup_load(b_frag[i], b_tile + kk * BN + sg_col + i * 8, BN);
            }
            for (uint i = 0; i < 2; ++i) {
                for (uint j = 0; j < 2; ++j) {
                    simdgroup_multiply_accumulate(acc[i][j], a_frag[i], b_frag[j], acc[i][j]);
                }
            }
        }
        // The tiles are overwritten by the next K step.
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    for (uint i = 0; i < 2; ++i) {
        for (uint j = 0; j < 2; ++j) {
            device float *dst = c + (row0 + sg_row + i * 8) * p.n + col0 + sg_col + j * 8;
            simdgroup_store(acc[i][j], dst, p.n);
        }
    }
}
