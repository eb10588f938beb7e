//! The K-quant chunk macros of `templates/metal/k_quants.metal.j2` under
//! msl-emu, in kernels of their own: `load` against forge-weights' decoding
//! of the planes on random super-blocks (every bit pattern of codes, high
//! bits and packed scales, not only what an encoder writes), and `dot` in
//! the matvec's lane walk against an f64 reference.

mod kernel_support;

use forge_ir::DType;
use forge_weights::planes::{self, k_quants::dequantize};
use kernel_support::*;
use msl_emu::{dispatch_threadgroups, Binding, Buffer, CompileOptions, Library, Size3};

const FORMATS: [(DType, &str); 3] = [
    (DType::Q4_K, "q4_k"),
    (DType::Q5_K, "q5_k"),
    (DType::Q6_K, "q6_k"),
];

/// The test kernels: per format a `load` kernel (one thread per chunk, the
/// chunk dequantised, with and without a scale) and a `dot` kernel (one
/// simdgroup per row, lane l taking chunks l, l + 32, …, as matvec does).
const SOURCE: &str = r#"
{%- import "metal/k_quants.metal.j2" as kq -%}
#include <metal_stdlib>
using namespace metal;
{% for f in formats %}
{% macro params() %}
    device const uchar4* w [[buffer(0)]],
{% for plane in f.planes %}
    device const {{ plane.type }}* all_{{ plane.name }} [[buffer({{ 3 + loop.index }})]],
{% endfor %}
{%- endmacro %}
{% macro rows(row) %}
{% for plane in f.planes %}
    device const {{ plane.type }}* {{ plane.name }} = all_{{ plane.name }} + {{ row }} * {{ plane.per_row }}u;
{% endfor %}
{%- endmacro %}

kernel void load_{{ f.dtype }}(
{{ params() }}
    device float4* out [[buffer(1)]],
    device float4* scaled [[buffer(2)]],
    uint gid [[thread_position_in_grid]])
{
    const uint row = gid / {{ chunks }}u;
    const uint c = gid % {{ chunks }}u;
{{ rows("row") }}
    {
        {{ kq.load(f.dtype, "w[gid]", "c", none) | indent(8) }}
        out[2u * gid] = wv[0];
        out[2u * gid + 1u] = wv[1];
    }
    {
        {{ kq.load(f.dtype, "w[gid]", "c", "3.0f") | indent(8) }}
        scaled[2u * gid] = wv[0];
        scaled[2u * gid + 1u] = wv[1];
    }
}

kernel void dot_{{ f.dtype }}(
{{ params() }}
    device const float4* x [[buffer(1)]],
    device float* y [[buffer(2)]],
    uint row [[threadgroup_position_in_grid]],
    uint lane [[thread_index_in_simdgroup]])
{
{{ rows("row") }}
    float acc = 0.0f;
    for (uint c = lane; c < {{ chunks }}u; c += 32u) {
        const float4 xv[2] = { x[2u * c], x[2u * c + 1u] };
        const float4 xs = xv[0] + xv[1];
        const float xsum = (xs.x + xs.y) + (xs.z + xs.w);
        {{ kq.dot(f.dtype, "acc", "row * " ~ chunks ~ "u + c", "c") | indent(8) }}
    }
    acc = simd_sum(acc);
    if (lane == 0) {
        y[row] = acc;
    }
}
{% endfor %}
"#;

/// The MSL type of each plane after the quants (the templates' `planes`).
fn plane_types(dtype: DType) -> &'static [(&'static str, &'static str)] {
    match dtype {
        DType::Q4_K => &[("scales", "uint4")],
        DType::Q5_K => &[("scales", "uint4"), ("high", "uchar")],
        _ => &[("scales", "char"), ("d", "half"), ("high", "ushort")],
    }
}

/// Rows of this many values: 3 super-blocks, so lanes walk several.
const COLS: usize = 768;
const ROWS: usize = 5;

fn build() -> Library {
    let formats: Vec<serde_json::Value> = FORMATS
        .iter()
        .map(|&(dtype, name)| {
            let layout = &planes::layout(dtype).unwrap()[1..];
            let planes: Vec<serde_json::Value> = plane_types(dtype)
                .iter()
                .zip(layout)
                .map(|(&(plane, ty), layout)| {
                    let bytes = (layout.per_block * layout.element.block_bytes()) as usize;
                    let element = match ty {
                        "uint4" => 16,
                        "half" | "ushort" => 2,
                        _ => 1,
                    };
                    serde_json::json!({
                        "name": plane,
                        "type": ty,
                        "per_row": COLS / 256 * bytes / element,
                    })
                })
                .collect();
            serde_json::json!({ "dtype": name, "planes": planes })
        })
        .collect();
    let context = serde_json::json!({ "formats": formats, "chunks": COLS / 8 });
    let source = forge_codegen::templates::environment()
        .render_str(SOURCE, minijinja::value::Serde(&context))
        .unwrap_or_else(|e| panic!("rendering: {e:#}"));
    if let Err(e) = msl_emu::check_syntax_source("kernel_k_quants", &source) {
        panic!("strict check failed:\n{e}\n--- source ---\n{source}");
    }
    Library::from_source(&source, &CompileOptions::default())
        .unwrap_or_else(|e| panic!("msl-emu build failed: {e}\n--- source ---\n{source}"))
}

/// The planes of GGML super-blocks, as buffers.
fn planes_of(dtype: DType, blocks: &[u8]) -> Vec<Vec<u8>> {
    planes::split(dtype, blocks).unwrap().planes
}

fn dispatch(library: &Library, name: &str, grid: u32, threads: u32, bindings: &[Binding]) {
    let pipe = library
        .pipeline(name, &Default::default())
        .unwrap_or_else(|e| panic!("pipeline {name}: {e}"));
    dispatch_threadgroups(
        &pipe,
        Size3::new(grid, 1, 1),
        Size3::new(threads, 1, 1),
        bindings,
    )
    .unwrap_or_else(|e| panic!("dispatch {name}: {e}"));
}

/// Binds the planes after the quants at 4, 5, 6 (as the test kernels take them).
fn with_planes<'a>(mut bindings: Vec<Binding<'a>>, planes: &'a [Buffer]) -> Vec<Binding<'a>> {
    bindings.push(bind(0, &planes[0]));
    for (k, plane) in planes.iter().enumerate().skip(1) {
        bindings.push(bind(3 + k as u32, plane));
    }
    bindings
}

/// Random super-blocks whose f16 scales are finite (exponent below 16,
/// subnormals included), so every value is finite.
fn random_blocks(dtype: DType, rng: &mut Rng) -> Vec<u8> {
    let size = dtype.block_bytes() as usize;
    let mut blocks: Vec<u8> = (0..ROWS * COLS / 256 * size)
        .map(|_| rng.next_u64() as u8)
        .collect();
    let f16_at: &[usize] = if dtype == DType::Q6_K {
        &[208]
    } else {
        &[0, 2]
    };
    for block in blocks.chunks_exact_mut(size) {
        for &at in f16_at {
            block[at + 1] &= 0b1011_1111;
        }
    }
    blocks
}

#[test]
fn load_decodes_every_bit_pattern_as_forge_weights_does() {
    let library = build();
    let mut rng = Rng::new(13);
    for (dtype, name) in FORMATS {
        let blocks = random_blocks(dtype, &mut rng);
        let planes = planes_of(dtype, &blocks);
        let views: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
        let mut want = vec![0f32; ROWS * COLS];
        dequantize(dtype, &views, &mut want).unwrap();
        let buffers: Vec<Buffer> = planes.iter().map(|p| buffer(p)).collect();
        let (out, scaled) = (Buffer::new(ROWS * COLS * 4), Buffer::new(ROWS * COLS * 4));
        let bindings = with_planes(vec![bind(1, &out), bind(2, &scaled)], &buffers);
        let chunks = (ROWS * COLS / 8) as u32;
        dispatch(
            &library,
            &format!("load_{name}"),
            chunks / 32,
            32,
            &bindings,
        );
        let got = read_f32(&out);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // The same f32 operations as forge-weights: bitwise equal.
            assert_eq!(g.to_bits(), w.to_bits(), "{name} value {i}: {g} vs {w}");
        }
        // The scale multiplies the decoded value: one rounding, 6e-8 relative.
        let scaled_want: Vec<f64> = want.iter().map(|&v| 3.0 * v as f64).collect();
        let tol: Vec<f64> = scaled_want.iter().map(|v| 6e-8 * v.abs()).collect();
        assert_close(name, &read_f32(&scaled), &scaled_want, &tol);
    }
}

#[test]
fn dot_matches_an_f64_reference_on_encoded_weights() {
    let library = build();
    let mut rng = Rng::new(29);
    for (dtype, name) in FORMATS {
        let values = rng.vec(ROWS * COLS, 3.0 / (COLS as f32).sqrt());
        let mut blocks = vec![0u8; dtype.bytes_for((ROWS * COLS) as u64).unwrap() as usize];
        forge_weights::quantize_rows(dtype, &values, COLS, &mut blocks).unwrap();
        let mut w = vec![0f32; ROWS * COLS];
        forge_weights::dequantize_rows(dtype, &blocks, COLS, &mut w).unwrap();
        let x = rng.vec(COLS, 1.0);
        let planes = planes_of(dtype, &blocks);
        let buffers: Vec<Buffer> = planes.iter().map(|p| buffer(p)).collect();
        let (xb, yb) = (buffer(&x), Buffer::new(ROWS * 4));
        let bindings = with_planes(vec![bind(1, &xb), bind(2, &yb)], &buffers);
        dispatch(&library, &format!("dot_{name}"), ROWS as u32, 32, &bindings);
        let (mut want, mut tol) = (Vec::new(), Vec::new());
        for r in 0..ROWS {
            let terms = w[r * COLS..][..COLS]
                .iter()
                .zip(&x)
                .map(|(&a, &b)| a as f64 * b as f64);
            let (sum, mag) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
            want.push(sum);
            // f32 sums of a few hundred products per lane then a 32-lane
            // tree, the sub-block min taken out against Σx: as matvec's
            // Q4_0 bound, 2e-6 of Σ|terms|.
            tol.push(2e-6 * mag);
        }
        assert_close(name, &read_f32(&yb), &want, &tol);
    }
}
