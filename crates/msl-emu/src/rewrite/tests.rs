use super::*;

fn rw(src: &str) -> Rewritten {
    match rewrite(src, "t.metal", false) {
        Ok(r) => r,
        Err(d) => panic!("rewrite failed: {d}"),
    }
}

fn body(r: &Rewritten) -> &str {
    r.source
        .split("\n# 1 \"<msl-emu adapters>\"")
        .next()
        .unwrap()
}

#[test]
fn constructors_casts_and_half_literals_become_conversions() {
    let r = rw("void f(int4 i, float a) { float4 v = float4(a, 1.0h, float2(a)); float4 w = (float4)i.xyzw * 2; half h = -0.5h; }");
    let b = body(&r);
    assert!(
        b.contains("__msl_make<float4>(a, ((half)1.0), __msl_make<float2>(a))"),
        "{b}"
    );
    assert!(b.contains("__msl_make<float4>(i.xyzw) * 2"), "{b}");
    assert!(b.contains("-((half)0.5)"), "{b}");
}

#[test]
fn aliases_and_template_parameters_convert_by_value() {
    let r = rw("template<typename T4> void g(float4 x, device T4* o) { o[0] = (T4)x; o[1] = T4(x); } typedef half4 H4; void h(float4 x) { H4 y = H4(x); }");
    let b = body(&r);
    assert!(b.contains("o[0] = __msl_make<T4>(x);"), "{b}");
    assert!(b.contains("o[1] = __msl_make<T4>(x);"), "{b}");
    assert!(b.contains("H4 y = __msl_make<H4>(x);"), "{b}");
}

#[test]
fn calls_and_sizeof_are_not_casts() {
    let r = rw("void f(float4 x) { int n = sizeof(float4) * 2; g(float4) ; }");
    let b = body(&r);
    assert!(b.contains("sizeof(float4) * 2"), "{b}");
    assert!(!b.contains("__msl_make"), "{b}");
}

#[test]
fn kernel_signature_gets_an_adapter_and_lines_are_kept() {
    let src = "struct P { float s; };\nkernel void k(device float* out [[buffer(0)]],\n  constant P& p [[buffer(1)]],\n  uint3 gid [[thread_position_in_grid]],\n  ushort lane [[thread_index_in_simdgroup]]) {\n  out[gid.x] = p.s + lane;\n}\n";
    let r = rw(src);
    let b = body(&r);
    assert_eq!(b.matches('\n').count(), src.matches('\n').count());
    assert!(!b.contains("[[") && !b.contains("kernel void"), "{b}");
    assert_eq!(r.exports.len(), 1);
    assert_eq!(r.exports[0].name, "k");
    assert!(!r.exports[0].uses_sync);
    assert!(
        r.source
            .contains("P& __p1 = *(constant P*)(__c->buffers[1]);"),
        "{}",
        r.source
    );
    assert!(
        r.source
            .contains("__msl_pos<uint3>((__c->tgpig[0] * __c->tptg[0] + __t->tid[0])"),
        "{}",
        r.source
    );
    assert!(r.source.contains("sizeof(constant P)"), "{}", r.source);
}

#[test]
fn threadgroup_locals_move_to_the_arena_and_collectives_get_sites() {
    let src = "kernel void k(device float* o [[buffer(0)]], uint l [[thread_index_in_simdgroup]]) {\n threadgroup float sh[32], t;\n threadgroup float* p = sh;\n sh[l] = simd_sum(o[l]);\n threadgroup_barrier(mem_flags::mem_threadgroup);\n o[l] = p[0] + t + simd_is_first();\n}\n";
    let r = rw(src);
    let b = body(&r);
    assert!(b.contains("threadgroup float (&sh)[32] = *(threadgroup float (*)[32])__msl_rt.tg_alloc(0u, sizeof(float[32]), alignof(float[32]));"), "{b}");
    assert!(b.contains("threadgroup float &t = *(threadgroup float *)__msl_rt.tg_alloc(1u, sizeof(float), alignof(float));"), "{b}");
    assert!(b.contains("threadgroup float* p = sh;"), "{b}");
    assert!(b.contains("simd_sum(__MSL_SITE(0), o[l])"), "{b}");
    assert!(b.contains("simd_is_first(__MSL_SITE(1))"), "{b}");
    assert!(r.exports[0].uses_sync);
}

#[test]
fn sync_is_found_through_helper_functions() {
    let src = "float red(float x) { return simd_sum(x); }\nfloat twice(float x) { return red(x) * 2; }\nkernel void a(device float* o [[buffer(0)]]) { o[0] = twice(o[0]); }\nkernel void b(device float* o [[buffer(0)]]) { o[0] = 1; }\n";
    let r = rw(src);
    let sync: Vec<(String, bool)> = r
        .exports
        .iter()
        .map(|e| (e.name.clone(), e.uses_sync))
        .collect();
    assert_eq!(sync, [("a".to_string(), true), ("b".to_string(), false)]);
}

#[test]
fn template_instantiations_are_exported_under_their_host_name() {
    let src = "template<typename T, short N>\nkernel void k(device T* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = N; }\ntypedef decltype(k<float, 2>) k_t;\ntemplate [[host_name(\"k_f32\")]] kernel k_t k<float, 2>;\ntemplate [[host_name(\"k_f16\")]]\nkernel decltype(k<half, 4>) k<half, 4>;\n";
    let r = rw(src);
    let names: Vec<&str> = r.exports.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["k_f32", "k_f16"]);
    assert_eq!(r.exports[1].args, "<half, 4>");
    assert!(r.source.contains("k<T, N>(__p0, __p1)"), "{}", r.source);
    assert!(
        r.source.contains("__msl_adapt_0<half, 4>(__t)"),
        "{}",
        r.source
    );
    assert_eq!(body(&r).matches('\n').count(), src.matches('\n').count());
}

#[test]
fn function_constants_become_compile_time_values() {
    let src = "constant bool has_bias [[function_constant(0)]];\nconstant int n [[function_constant(3)]];\nkernel void k(device float* o [[buffer(0)]], device float* b [[buffer(1), function_constant(has_bias)]]) { if (is_function_constant_defined(n) && has_bias) o[0] = b[0] * n; }\n";
    let r = rw(src);
    assert_eq!(r.function_constants.len(), 2);
    assert_eq!(
        r.function_constants[1],
        FunctionConstant {
            name: "n".into(),
            index: 3,
            ty: "int".into()
        }
    );
    let b = body(&r);
    assert!(
        b.contains("static constexpr int n = (int)(__MSL_FC_VAL_3);"),
        "{b}"
    );
    assert!(b.contains("(__msl_fcdef_n) && has_bias"), "{b}");
    assert!(
        r.source
            .contains("1u, (__msl_u32)__msl_palign_0(1), \"b\"}"),
        "{}",
        r.source
    );
}

#[test]
fn unsupported_constructs_are_errors_at_their_line() {
    let src = "kernel void k(device float* o [[buffer(0)]]) {\n  double d = 1.0;\n  o[0] = d;\n}\n";
    let err = rewrite(src, "t.metal", false).err().unwrap();
    assert_eq!(
        err.to_string(),
        "t.metal:2: unsupported construct 'double': double is not supported by Metal"
    );
    let src = "# 7 \"x.metal\"\nkernel void k(float4 v [[stage_in]]) {}\n";
    let err = rewrite(src, "t.metal", false).err().unwrap();
    assert_eq!(
        err.to_string(),
        "x.metal:7: unsupported kernel parameter attribute [[stage_in]] on 'v'"
    );
}
