//! Every variant of the rope_store, attention_decode and attention_prefill
//! families renders into one library that passes msl-emu's strict syntax
//! check (device/constant/threadgroup address spaces as Metal enforces them),
//! with a unique name per specialisation.

mod kernel_support;

use kernel_support::assert_strict;

use forge_codegen::kernels::attention_decode::{
    attention_decode, attention_decode_split, AttentionShape,
};
use forge_codegen::kernels::attention_prefill::attention_prefill;
use forge_codegen::kernels::rope_store::rope_store;
use forge_codegen::KernelInstance;
use forge_ir::{DType, RopeConfig, RopeLayout, RopeScaling};

fn instances() -> Vec<KernelInstance> {
    let mut all = Vec::new();
    for kind in ["none", "linear", "longrope"] {
        for layout in [RopeLayout::Neox, RopeLayout::Interleaved] {
            for (rotary_dim, norm, kv) in [
                (12, None, DType::F32),
                (12, Some(1e-6), DType::F16),
                (16, Some(1e-5), DType::F32),
            ] {
                let pairs = rotary_dim as usize / 2;
                let scaling = match kind {
                    "none" => RopeScaling::None,
                    "linear" => RopeScaling::Linear { factor: 2.0 },
                    _ => RopeScaling::LongRope {
                        short_factor: (0..pairs).map(|i| 1.0 + i as f64 / 2.0).collect(),
                        long_factor: (0..pairs).map(|i| 2.0 + i as f64).collect(),
                        original_context_length: 64,
                        attention_factor: 1.2,
                    },
                };
                let rope = RopeConfig {
                    theta: 10000.0,
                    rotary_dim,
                    layout,
                    scaling,
                };
                all.push(rope_store(4, 2, 16, &rope, norm, kv, 256));
            }
        }
    }
    for (heads, kv_heads, head_dim) in [(4, 2, 16), (9, 3, 64), (4, 1, 128), (8, 8, 256)] {
        for (window, softcap, kv) in [
            (None, None, DType::F32),
            (Some(4), None, DType::F16),
            (None, Some(50.0), DType::F16),
        ] {
            let shape = AttentionShape {
                q_heads: heads,
                kv_heads,
                head_dim,
                context: 1024,
                scale: 1.0 / (head_dim as f32).sqrt(),
                window,
                softcap,
                kv_dtype: kv,
            };
            let decode = attention_decode(&shape);
            all.push(decode.pass);
            all.push(decode.reduce);
            all.push(attention_prefill(&shape));
        }
    }
    let small = attention_decode_split(
        &AttentionShape {
            q_heads: 4,
            kv_heads: 2,
            head_dim: 20,
            context: 64,
            scale: 0.25,
            window: None,
            softcap: None,
            kv_dtype: DType::F16,
        },
        16,
    );
    all.push(small.pass);
    all.push(small.reduce);
    all
}

#[test]
fn all_variants_pass_the_strict_check() {
    assert_strict("rope_attention.metal", &instances());
}
