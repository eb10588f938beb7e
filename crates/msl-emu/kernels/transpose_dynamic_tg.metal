// Tiled matrix transpose through threadgroup memory whose size is chosen at
// dispatch time ([[threadgroup(0)]]), so one pipeline serves any tile size.
// The tile row stride is tile + 1 floats so a column walk does not hit the same
// bank on every step; the host must bind tile * (tile + 1) * 4 bytes.
#include <metal_stdlib>
using namespace metal;

struct TransposeParams {
    uint rows;
    uint cols;
};

kernel void transpose_f32(
    device const float *in         [[buffer(0)]],
    device float *out              [[buffer(1)]],
    constant TransposeParams &p    [[buffer(2)]],
    threadgroup float *tile        [[threadgroup(0)]],
    uint2 tgid                     [[threadgroup_position_in_grid]],
    uint2 tpos                     [[thread_position_in_threadgroup]],
    uint2 tsize                    [[threads_per_threadgroup]])
{
    // Threadgroups are square: tsize.x == tsize.y == tile edge.
    const uint edge = tsize.x;
    const uint stride = edge + 1;

    const uint src_row = tgid.y * edge + tpos.y;
    const uint src_col = tgid.x * edge + tpos.x;
    if (src_row < p.rows && src_col < p.cols) {
        tile[tpos.y * stride + tpos.x] = in[src_row * p.cols + src_col];
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // Swap roles: this thread now writes out[dst_row][dst_col] = in[dst_col][dst_row].
    const uint dst_row = tgid.x * edge + tpos.y;
    const uint dst_col = tgid.y * edge + tpos.x;
    if (dst_row < p.cols && dst_col < p.rows) {
        out[dst_row * p.rows + dst_col] = tile[tpos.x * stride + tpos.y];
    }
}
