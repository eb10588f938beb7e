// TEST ONLY (tests/cli.rs): the kernel of the toy model in toy_model.rs.
// Grid: (VOCAB / 64, tokens); one thread per logit.
#include <metal_stdlib>
using namespace metal;

struct Step { uint n_tokens; uint pos; };

constant uint VOCAB = 384;
constant uint EOS_ID = 2;
constant uint EOS_AT = 16;

kernel void toy_logits(device const uint* tokens [[buffer(0)]],
                       device float* logits [[buffer(1)]],
                       device const float* scale [[buffer(2)]],
                       constant Step& step [[buffer(7)]],
                       uint2 gid [[thread_position_in_grid]]) {
    uint v = gid.x;
    uint row = gid.y;
    uint p = step.pos + row;
    uint favourite = p == EOS_AT ? EOS_ID : (3 * tokens[row] + p) % VOCAB;
    logits[row * VOCAB + v] = -float((v + VOCAB - favourite) % VOCAB) * scale[0];
}
