// SwiGLU activation out = silu(gate) * up, written once as a template over the
// storage type and the number of elements per thread, and instantiated under
// host names the way llama.cpp (typedef + decltype) and MLX ([[kernel]] decltype)
// do. Arithmetic is in float whatever T is.
#include <metal_stdlib>
using namespace metal;

template <typename T, uint N_READS>
kernel void silu_mul(
    device const T *gate           [[buffer(0)]],
    device const T *up             [[buffer(1)]],
    device T *out                  [[buffer(2)]],
    constant uint &n               [[buffer(3)]],
    uint gid                       [[thread_position_in_grid]])
{
    const uint base = gid * N_READS;
    for (uint i = 0; i < N_READS; ++i) {
        const uint j = base + i;
        if (j < n) {
            const float g = float(gate[j]);
            const float silu = g / (1.0f + exp(-g));
            out[j] = T(silu * float(up[j]));
        }
    }
}

typedef decltype(silu_mul<float, 4>) silu_mul_t_f32;
typedef decltype(silu_mul<half, 4>) silu_mul_t_f16;

template [[host_name("silu_mul_f32")]] kernel silu_mul_t_f32 silu_mul<float, 4>;
template [[host_name("silu_mul_f16")]] kernel silu_mul_t_f16 silu_mul<half, 4>;
template [[host_name("silu_mul_f32_n1")]] [[kernel]] decltype(silu_mul<float, 1>) silu_mul<float, 1>;
