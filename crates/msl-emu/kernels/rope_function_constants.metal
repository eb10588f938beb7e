// Rotary position embedding applied in place to q or k rows [n_heads][HEAD_DIM],
// specialised with function constants: head_dim, the frequency base and the pair
// layout (NeoX pairs i with i + half; GPT-J/llama.cpp-normal pairs 2i with 2i+1).
#include <metal_stdlib>
using namespace metal;

constant uint head_dim [[function_constant(0)]];
constant float rope_theta [[function_constant(1)]];
constant bool neox_layout [[function_constant(2)]];

kernel void rope(
    device float *x                [[buffer(0)]],
    constant uint &position        [[buffer(1)]],
    uint2 gid                      [[thread_position_in_grid]])   // x: pair index, y: head
{
    const uint half_dim = head_dim / 2;
    const uint pair = gid.x;
    if (pair >= half_dim) {
        return;
    }
    device float *row = x + gid.y * head_dim;
    const uint i0 = neox_layout ? pair : 2 * pair;
    const uint i1 = neox_layout ? pair + half_dim : 2 * pair + 1;

    const float inv_freq = pow(rope_theta, -float(2 * pair) / float(head_dim));
    const float angle = float(position) * inv_freq;
    const float c = cos(angle);
    const float s = sin(angle);
    const float a = row[i0];
    const float b = row[i1];
    row[i0] = a * c - b * s;
    row[i1] = a * s + b * c;
}
