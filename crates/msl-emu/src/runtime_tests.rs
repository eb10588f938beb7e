//! End-to-end tests of compile + dispatch on small kernels written for the
//! semantics they check (the realistic kernels live in tests/).

use crate::*;

fn lib(src: &str) -> Library {
    match Library::from_source(src, &CompileOptions::default()) {
        Ok(l) => l,
        Err(e) => panic!("compile failed:\n{e}\n{e:?}"),
    }
}

fn buf(index: u32, buffer: &Buffer) -> Binding<'_> {
    Binding::Buffer {
        index,
        buffer,
        offset: 0,
    }
}

#[test]
fn vertical_slice_add_kernel() {
    let l = lib("#include <metal_stdlib>\nusing namespace metal;\nkernel void add(device const float* a [[buffer(0)]], device const float* b [[buffer(1)]], device float* c [[buffer(2)]], uint i [[thread_position_in_grid]]) { c[i] = a[i] + b[i]; }\n");
    assert_eq!(l.function_names(), ["add"]);
    let p = l.pipeline("add", &FunctionConstants::default()).unwrap();
    assert!(!p.uses_sync());
    let a: Vec<f32> = (0..100).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..100).map(|i| 0.5 * i as f32).collect();
    let (ba, bb, bc) = (
        Buffer::from_slice(&a),
        Buffer::from_slice(&b),
        Buffer::new(400),
    );
    let stats = dispatch_threadgroups(
        &p,
        4.into(),
        25.into(),
        &[buf(0, &ba), buf(1, &bb), buf(2, &bc)],
    )
    .unwrap();
    assert_eq!(
        (stats.threadgroups, stats.threads, stats.sync_points),
        (4, 100, 0)
    );
    let c = bc.read::<f32>();
    for i in 0..100 {
        assert_eq!(c[i], a[i] + b[i]);
    }
}

fn pipe(l: &Library, name: &str) -> Pipeline {
    l.pipeline(name, &FunctionConstants::default()).unwrap()
}

#[test]
fn barrier_orders_threadgroup_memory_between_threads() {
    // Each thread writes its slot, waits at the barrier, then reads its
    // neighbour's slot: without a working barrier, thread 0 would read NaN.
    let l = lib("kernel void k(device float* o [[buffer(0)]], uint t [[thread_index_in_threadgroup]], uint n [[threads_per_threadgroup]], uint g [[threadgroup_position_in_grid]]) {\n threadgroup float sh[256];\n sh[t] = float(t + 1000 * g);\n threadgroup_barrier(mem_flags::mem_threadgroup);\n o[g * n + t] = sh[(t + 1) % n];\n}\n");
    let p = pipe(&l, "k");
    assert!(p.uses_sync());
    let o = Buffer::new(3 * 200 * 4);
    let stats = dispatch_threadgroups(&p, 3.into(), 200.into(), &[buf(0, &o)]).unwrap();
    assert_eq!(stats.sync_points, 600);
    let v = o.read::<f32>();
    for g in 0..3 {
        for t in 0..200 {
            assert_eq!(v[g * 200 + t], ((t + 1) % 200 + 1000 * g) as f32);
        }
    }
}

#[test]
fn partial_simdgroup_of_48_threads_reduces_over_its_16_lanes() {
    let l = lib("kernel void k(device float* o [[buffer(0)]], uint t [[thread_index_in_threadgroup]], uint sg [[simdgroup_index_in_threadgroup]], uint lane [[thread_index_in_simdgroup]], uint nsg [[simdgroups_per_threadgroup]]) {\n float s = simd_sum(float(t));\n float up = simd_shuffle_down(float(t), 1);\n uint ballot = (uint)(ulong)simd_ballot(true);\n o[t] = s; o[48 + t] = up; o[96 + t] = ballot; o[144 + t] = nsg * 100 + sg * 10 + (lane == 0);\n}\n");
    let o = Buffer::new(192 * 4);
    dispatch_threadgroups(&pipe(&l, "k"), 1.into(), 48.into(), &[buf(0, &o)]).unwrap();
    let v = o.read::<f32>();
    let first: f32 = (0..32).map(|x| x as f32).sum();
    let second: f32 = (32..48).map(|x| x as f32).sum();
    for t in 0..48 {
        assert_eq!(v[t], if t < 32 { first } else { second }, "sum at {t}");
        // The last lane of each simdgroup has no lane above it and keeps its value.
        let expect_up = if t == 31 || t == 47 { t } else { t + 1 };
        assert_eq!(v[48 + t], expect_up as f32, "shuffle_down at {t}");
        assert_eq!(
            v[96 + t],
            if t < 32 {
                u32::MAX as f32
            } else {
                0xFFFF as f32
            }
        );
        assert_eq!(
            v[144 + t],
            (200 + (t / 32) * 10 + usize::from(t % 32 == 0)) as f32
        );
    }
}

#[test]
fn divergent_simd_sum_takes_only_the_lanes_that_call_it() {
    // Lanes below 10 reduce in one branch, the others in the other branch, then
    // all 32 reconverge for a third reduction.
    let l = lib("kernel void k(device float* o [[buffer(0)]], uint lane [[thread_index_in_simdgroup]]) {\n float r;\n if (lane < 10) { r = simd_sum(1.0f); } else { r = simd_sum(100.0f); }\n float all = simd_sum(1.0f);\n if (lane == 31) return;\n o[lane] = r; o[32 + lane] = all + simd_sum(2.0f);\n}\n");
    let o = Buffer::new(64 * 4);
    let stats = dispatch_threadgroups(&pipe(&l, "k"), 1.into(), 32.into(), &[buf(0, &o)]).unwrap();
    assert_eq!(stats.sync_points, 32 + 32 + 31);
    let v = o.read::<f32>();
    for lane in 0..31 {
        assert_eq!(
            v[lane],
            if lane < 10 { 10.0 } else { 2200.0 },
            "lane {lane}"
        );
        // Lane 31 returned early, so the last sum has 31 participants.
        assert_eq!(v[32 + lane], 32.0 + 62.0);
    }
}

#[test]
fn threadgroup_memory_starts_as_nan_in_every_group() {
    let l = lib("kernel void k(device float* o [[buffer(0)]], device uint* u [[buffer(1)]], threadgroup float* dyn [[threadgroup(0)]], uint t [[thread_index_in_threadgroup]], uint g [[threadgroup_position_in_grid]]) {\n threadgroup float sh[64];\n threadgroup uint si[4];\n if (t == 0) { o[g * 4 + 0] = sh[5]; o[g * 4 + 1] = dyn[3]; u[g] = si[1]; }\n threadgroup_barrier(mem_flags::mem_threadgroup);\n sh[t] = 1.0f; dyn[t] = 2.0f; si[t % 4] = 7u;\n threadgroup_barrier(mem_flags::mem_threadgroup);\n if (t == 0) { o[g * 4 + 2] = sh[5]; o[g * 4 + 3] = dyn[3]; }\n}\n");
    let (o, u) = (Buffer::new(2 * 4 * 4), Buffer::new(8));
    let tg = Binding::Threadgroup {
        index: 0,
        len: 64 * 4,
    };
    dispatch_threadgroups(
        &pipe(&l, "k"),
        2.into(),
        64.into(),
        &[buf(0, &o), buf(1, &u), tg],
    )
    .unwrap();
    let v = o.read::<f32>();
    for g in 0..2 {
        assert!(
            v[g * 4].is_nan() && v[g * 4 + 1].is_nan(),
            "group {g}: {:?}",
            &v[g * 4..g * 4 + 4]
        );
        assert_eq!((v[g * 4 + 2], v[g * 4 + 3]), (1.0, 2.0));
    }
    assert_eq!(u.read::<u32>(), [u32::MAX, u32::MAX]);
}

#[test]
fn a_second_compile_of_the_same_source_is_a_cache_hit() {
    let src = format!(
        "kernel void k(device uint* o [[buffer(0)]], uint i [[thread_position_in_grid]]) {{ o[i] = i * {}u; }}\n",
        std::process::id()
    );
    let t0 = std::time::Instant::now();
    let a = lib(&src);
    let first = t0.elapsed();
    let t1 = std::time::Instant::now();
    let b = lib(&src);
    let again = t1.elapsed();
    assert_eq!(a.function_names(), b.function_names());
    // The in-memory cache answers without running clang at all.
    assert!(again < first / 10, "first {first:?}, again {again:?}");
    // A different define preprocesses differently but the .so for identical output is reused from disk.
    let opts = CompileOptions {
        defines: vec![("UNUSED_NAME".into(), "1".into())],
        ..Default::default()
    };
    let t2 = std::time::Instant::now();
    let c = Library::from_source(&src, &opts).unwrap();
    let disk = t2.elapsed();
    assert_eq!(c.function_names(), ["k"]);
    assert!(
        disk < first,
        "disk cache hit {disk:?} should beat the first build {first:?}"
    );
}

#[test]
fn function_constants_specialise_the_kernel() {
    let l = lib("constant int scale [[function_constant(0)]];\nconstant bool add_bias [[function_constant(1)]];\nconstant float bias [[function_constant(2)]];\nkernel void k(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) {\n o[i] = float(int(i) * scale) + (add_bias ? bias : 0.0f) + (is_function_constant_defined(bias) ? 1000.0f : 0.0f);\n}\n");
    let o = Buffer::new(16);
    let mut fc = FunctionConstants::default();
    fc.set_i32(0, 3);
    fc.set_bool(1, true);
    fc.set_f32(2, 0.25);
    dispatch_threadgroups(
        &l.pipeline("k", &fc).unwrap(),
        1.into(),
        4.into(),
        &[buf(0, &o)],
    )
    .unwrap();
    assert_eq!(o.read::<f32>(), [1000.25, 1003.25, 1006.25, 1009.25]);
    let mut fc = FunctionConstants::default();
    fc.set_i32(0, -1);
    fc.set_bool(1, false);
    dispatch_threadgroups(
        &l.pipeline("k", &fc).unwrap(),
        1.into(),
        4.into(),
        &[buf(0, &o)],
    )
    .unwrap();
    assert_eq!(o.read::<f32>(), [0.0, -1.0, -2.0, -3.0]);
}

#[test]
fn template_instantiations_run_under_their_host_names() {
    let l = lib("template<typename T, int N>\nkernel void fill(device T* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = T(N) + T(0.5f); }\ntemplate [[host_name(\"fill_f32\")]] kernel void fill<float, 3>(device float*, uint);\ntypedef decltype(fill<half, 2>) fill_t;\ntemplate [[host_name(\"fill_f16\")]] kernel fill_t fill<half, 2>;\n");
    assert_eq!(l.function_names(), ["fill_f32", "fill_f16"]);
    let o = Buffer::new(8);
    dispatch_threadgroups(&pipe(&l, "fill_f32"), 1.into(), 2.into(), &[buf(0, &o)]).unwrap();
    assert_eq!(o.read::<f32>(), [3.5, 3.5]);
    dispatch_threadgroups(&pipe(&l, "fill_f16"), 1.into(), 2.into(), &[buf(0, &o)]).unwrap();
    assert_eq!(o.read::<u16>()[..2], [0x4100, 0x4100]); // 2.5 in IEEE half
}

#[test]
fn vectors_convert_by_value_and_bytes_bind_like_set_bytes() {
    let l = lib("struct P { float4 s; int k; };\nkernel void k(device float4* o [[buffer(0)]], constant P& p [[buffer(1)]], uint i [[thread_position_in_grid]]) {\n int4 v = int4(int(i), -2, 3, p.k);\n o[i] = (float4)v * p.s + float4(half2(0.5h, 1.5h), float2(1, 2)).wzyx;\n}\n");
    let o = Buffer::new(2 * 16);
    let mut p = [0u8; 32];
    for (j, x) in [1.0f32, 2.0, 3.0, 4.0].iter().enumerate() {
        p[j * 4..j * 4 + 4].copy_from_slice(&x.to_le_bytes());
    }
    p[16..20].copy_from_slice(&7i32.to_le_bytes());
    dispatch_threadgroups(
        &pipe(&l, "k"),
        1.into(),
        2.into(),
        &[buf(0, &o), Binding::Bytes { index: 1, data: &p }],
    )
    .unwrap();
    assert_eq!(
        o.read::<f32>(),
        [2.0, -3.0, 10.5, 28.5, 3.0, -3.0, 10.5, 28.5]
    );
}

#[test]
fn dispatch_errors_are_errors_not_panics() {
    let l = lib("struct P { float a[8]; };\nkernel void k(device float* o [[buffer(0)]], constant P& p [[buffer(1)]], threadgroup float* t [[threadgroup(0)]], uint i [[thread_position_in_grid]]) { o[i] = p.a[i]; }\n");
    let p = pipe(&l, "k");
    let o = Buffer::new(64);
    let small = [0u8; 16];
    let tg = Binding::Threadgroup { index: 0, len: 16 };
    let err = |b: &[Binding], tptg: u32| {
        dispatch_threadgroups(&p, 1.into(), tptg.into(), b)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(&[buf(0, &o), tg], 4).contains("nothing is bound at buffer index 1 (parameter 'p')")
    );
    let e = err(
        &[
            buf(0, &o),
            Binding::Bytes {
                index: 1,
                data: &small,
            },
            Binding::Threadgroup { index: 0, len: 16 },
        ],
        4,
    );
    assert!(e.contains("has 16 bytes, the kernel reads 32 bytes"), "{e}");
    let ok = [0u8; 32];
    let e = err(
        &[
            buf(0, &o),
            Binding::Bytes {
                index: 1,
                data: &ok,
            },
        ],
        4,
    );
    assert!(
        e.contains("no threadgroup memory length is set at index 0"),
        "{e}"
    );
    let e = err(
        &[
            buf(0, &o),
            Binding::Bytes {
                index: 1,
                data: &ok,
            },
            Binding::Threadgroup { index: 0, len: 16 },
        ],
        1025,
    );
    assert!(e.contains("Metal allows 1 to 1024"), "{e}");
    assert!(l
        .pipeline("nope", &FunctionConstants::default())
        .unwrap_err()
        .to_string()
        .contains("no kernel named 'nope' (kernels: k)"));
}

#[test]
fn compile_errors_point_at_the_original_file_and_line() {
    let dir = std::env::temp_dir().join(format!("msl-emu-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.metal");
    std::fs::write(&path, "#include <metal_stdlib>\nusing namespace metal;\n\nkernel void k(device float* o [[buffer(0)]]) {\n  threadgroup float sh[4];\n  o[0] = sh[0] + undefined_name;\n}\n").unwrap();
    let e = Library::from_file(&path, &CompileOptions::default()).expect_err("must fail");
    let d = e.diagnostics().expect("compile diagnostics");
    assert_eq!(d.messages[0].file, path.display().to_string());
    assert_eq!(d.messages[0].line, 6);
    assert!(d.messages[0].message.contains("undefined_name"), "{d}");
}

#[test]
fn strict_check_rejects_address_space_mismatches_and_double() {
    let ok = "#include <metal_stdlib>\nusing namespace metal;\nfloat sum4(device const float* p) { return p[0] + p[1] + p[2] + p[3]; }\nkernel void k(device float* o [[buffer(0)]], constant float& s [[buffer(1)]], threadgroup float* t [[threadgroup(0)]], uint i [[thread_position_in_grid]], uint l [[thread_index_in_simdgroup]]) {\n threadgroup float sh[32];\n sh[l] = o[i] * s;\n threadgroup_barrier(mem_flags::mem_threadgroup);\n o[i] = simd_sum(sh[l]) + sum4(o) + t[0];\n}\n";
    if let Err(d) = check_syntax_source("ok.metal", ok) {
        panic!("valid kernel rejected:\n{d}");
    }
    let bad = "float first(float* p) { return p[0]; }\nkernel void k(device float* o [[buffer(0)]], constant float* c [[buffer(1)]]) {\n  threadgroup float sh[4];\n  device float* q = sh;\n  o[0] = first(o);\n  c[0] = 1.0f;\n}\n";
    let d = check_syntax_source("bad.metal", bad).unwrap_err();
    let lines: Vec<u32> = d.messages.iter().map(|m| m.line).collect();
    assert_eq!(lines, [4, 5, 6], "{d}");
    assert!(d.messages.iter().all(|m| m.file == "bad.metal"));
    let d = check_syntax_source(
        "d.metal",
        "kernel void k(device float* o [[buffer(0)]]) {\n double x = 1.0;\n o[0] = x;\n}\n",
    )
    .unwrap_err();
    assert_eq!(
        d.to_string(),
        "d.metal:2: unsupported construct 'double': double is not supported by Metal"
    );
}

#[test]
fn traffic_counters_attribute_bytes_to_buffers() {
    let src = "kernel void k(device const float4* a [[buffer(0)]], device const half* b [[buffer(1)]], device float* c [[buffer(2)]], uint i [[thread_position_in_grid]]) {\n c[i] = a[i].x + a[i].w + float(b[i]);\n}\n";
    let opts = CompileOptions {
        count_traffic: true,
        ..Default::default()
    };
    let l = Library::from_source(src, &opts).unwrap();
    let (a, b, c) = (
        Buffer::new(64 * 16),
        Buffer::new(64 * 2),
        Buffer::new(64 * 4),
    );
    let s = dispatch_threadgroups(
        &pipe(&l, "k"),
        2.into(),
        32.into(),
        &[buf(0, &a), buf(1, &b), buf(2, &c)],
    )
    .unwrap();
    let by_index: Vec<(u32, u64, u64)> = s
        .buffers
        .iter()
        .map(|t| (t.index, t.bytes_read, t.bytes_written))
        .collect();
    // a: two 4-byte component loads or one 16-byte load per thread, depending on codegen.
    let a_read = by_index[0].1;
    assert!(a_read == 64 * 8 || a_read == 64 * 16, "{by_index:?}");
    assert_eq!(by_index[1..], [(1, 64 * 2, 0), (2, 0, 64 * 4)]);
    // The uninstrumented build reports no per-buffer counters.
    let plain = lib(src);
    let s = dispatch_threadgroups(
        &pipe(&plain, "k"),
        2.into(),
        32.into(),
        &[buf(0, &a), buf(1, &b), buf(2, &c)],
    )
    .unwrap();
    assert!(s.buffers.is_empty());
}

#[test]
fn simdgroup_matrix_multiply_matches_a_reference() {
    let l = lib("kernel void mm(device const float* a [[buffer(0)]], device const half* b [[buffer(1)]], device float* c [[buffer(2)]]) {\n simdgroup_float8x8 ma, acc = make_filled_simdgroup_matrix<float, 8, 8>(1.0f);\n simdgroup_half8x8 mb;\n simdgroup_load(ma, a, 8);\n simdgroup_load(mb, b, 8, ulong2(0, 0), true);\n simdgroup_multiply_accumulate(acc, ma, mb, acc);\n simdgroup_store(acc, c, 8);\n}\n");
    let a: Vec<f32> = (0..64).map(|i| (i % 7) as f32 - 3.0).collect();
    let bf: Vec<f32> = (0..64).map(|i| (i % 5) as f32 * 0.5).collect();
    let b: Vec<u16> = bf.iter().map(|&x| half_bits(x)).collect();
    let (ba, bb, bc) = (
        Buffer::from_slice(&a),
        Buffer::from_slice(&b),
        Buffer::new(256),
    );
    let s = dispatch_threadgroups(
        &pipe(&l, "mm"),
        1.into(),
        32.into(),
        &[buf(0, &ba), buf(1, &bb), buf(2, &bc)],
    )
    .unwrap();
    assert_eq!(s.sync_points, 3 * 32);
    let c = bc.read::<f32>();
    for r in 0..8 {
        for col in 0..8 {
            // b is loaded transposed: element (k, col) is b[col * 8 + k].
            let want: f32 = 1.0 + (0..8).map(|k| a[r * 8 + k] * bf[col * 8 + k]).sum::<f32>();
            assert_eq!(c[r * 8 + col], want);
        }
    }
}

/// f32 -> IEEE half bits for values exactly representable in half.
fn half_bits(x: f32) -> u16 {
    if x == 0.0 {
        return 0;
    }
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = ((b >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | mant
}

#[test]
fn many_groups_spread_over_workers_with_atomics() {
    let l = lib("kernel void k(device atomic_uint* counter [[buffer(0)]], device uint* seen [[buffer(1)]], uint g [[threadgroup_position_in_grid]], uint t [[thread_index_in_threadgroup]]) {\n threadgroup atomic_uint local;\n if (t == 0) atomic_store_explicit(&local, 0u, memory_order_relaxed);\n threadgroup_barrier(mem_flags::mem_threadgroup);\n atomic_fetch_add_explicit(&local, 1u, memory_order_relaxed);\n threadgroup_barrier(mem_flags::mem_threadgroup);\n if (t == 0) { seen[g] = atomic_load_explicit(&local, memory_order_relaxed); atomic_fetch_add_explicit(counter, 1u, memory_order_relaxed); }\n}\n");
    let (c, seen) = (Buffer::new(4), Buffer::new(500 * 4));
    dispatch_threadgroups(
        &pipe(&l, "k"),
        500.into(),
        64.into(),
        &[buf(0, &c), buf(1, &seen)],
    )
    .unwrap();
    assert_eq!(c.read::<u32>(), [500]);
    assert!(seen.read::<u32>().iter().all(|&x| x == 64));
}

#[test]
fn three_way_divergence_then_a_partial_collective_then_a_barrier() {
    let l = lib("kernel void k(device float* o [[buffer(0)]], uint t [[thread_index_in_threadgroup]], uint lane [[thread_index_in_simdgroup]]) {\n threadgroup float sh[64];\n float v = float(lane);\n float a;\n if (lane % 3 == 0) a = simd_sum(v);\n else if (lane % 3 == 1) a = simd_max(v);\n else a = simd_min(v);\n float b = 0.0f;\n if (t < 40) b = simd_sum(1.0f);\n sh[t] = a + 1000.0f * b;\n threadgroup_barrier(mem_flags::mem_threadgroup);\n o[t] = sh[63 - t];\n}\n");
    let o = Buffer::new(64 * 4);
    let s = dispatch_threadgroups(&pipe(&l, "k"), 1.into(), 64.into(), &[buf(0, &o)]).unwrap();
    assert_eq!(s.sync_points, 64 + 40 + 64);
    let v = o.read::<f32>();
    for (t, &got) in v.iter().enumerate() {
        let src = 63 - t;
        let lane = src % 32;
        let a = match lane % 3 {
            0 => (0..32).filter(|l| l % 3 == 0).sum::<usize>() as f32,
            1 => 31.0,
            _ => 2.0,
        };
        let b = if src < 32 {
            32.0
        } else if src < 40 {
            8.0
        } else {
            0.0
        };
        assert_eq!(got, a + 1000.0 * b, "thread {t} reads thread {src}");
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Library>();
    check::<Pipeline>();
    check::<Buffer>();
    check::<Error>();
}

#[test]
fn one_thread_groups_run_collectives_without_fibers() {
    let l = lib("constant float table[4] = {1.0f, 2.0f, 4.0f, 8.0f};\nkernel void k(device float* o [[buffer(0)]], uint g [[threadgroup_position_in_grid]]) {\n threadgroup float sh[1];\n sh[0] = table[g % 4];\n threadgroup_barrier(mem_flags::mem_threadgroup);\n o[g] = simd_sum(sh[0]) + simd_shuffle_down(sh[0], 1) + float(simd_is_first());\n}\n");
    let o = Buffer::new(4 * 4);
    let s = dispatch_threadgroups(&pipe(&l, "k"), 4.into(), 1.into(), &[buf(0, &o)]).unwrap();
    assert_eq!(s.sync_points, 4 * 4);
    assert_eq!(o.read::<f32>(), [3.0, 5.0, 9.0, 17.0]);
    let strict = "constant float table[4] = {1.0f, 2.0f, 4.0f, 8.0f};\nfloat pick(constant float* t, uint i) { return t[i]; }\nkernel void k(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = pick(table, i % 4) + 1.0h; }\n";
    if let Err(d) = check_syntax_source("table.metal", strict) {
        panic!("program-scope constant rejected:\n{d}");
    }
}

#[test]
fn consecutive_threadgroups_keep_their_own_memory_and_collectives() {
    // A worker overlaps consecutive groups: a finishing thread starts the next
    // group's. Threads that leave early make the next group start while this one
    // still uses its threadgroup memory, barriers and collectives, so any state
    // the two shared would show; exits and divergence differ per group.
    let l = lib("kernel void k(device float* o [[buffer(0)]], uint g [[threadgroup_position_in_grid]], uint t [[thread_index_in_threadgroup]], uint lane [[thread_index_in_simdgroup]]) {\n threadgroup float sh[96];\n const uint live = 96u - g % 5u;\n if (t >= live) { o[g * 96u + t] = -2.0f; return; }\n sh[t] = float(g * 1000u + t);\n threadgroup_barrier(mem_flags::mem_threadgroup);\n float v = sh[(t + 1u + g) % live];\n threadgroup_barrier(mem_flags::mem_threadgroup);\n if (lane >= 32u - g % 7u) { o[g * 96u + t] = -1.0f; return; }\n float s = (lane % 2u == 0u) ? simd_sum(v) : simd_max(v);\n o[g * 96u + t] = s;\n}\n");
    let groups = 40usize;
    let o = Buffer::new(groups * 96 * 4);
    let s = dispatch_threadgroups(
        &pipe(&l, "k"),
        (groups as u32).into(),
        96.into(),
        &[buf(0, &o)],
    )
    .unwrap();
    let live = |g: usize| 96 - g % 5;
    let active = |g: usize, t: usize| t < live(g) && t % 32 < 32 - g % 7;
    let syncs: usize = (0..groups)
        .map(|g| 2 * live(g) + (0..96).filter(|&t| active(g, t)).count())
        .sum();
    assert_eq!(s.sync_points, syncs as u64);
    let got = o.read::<f32>();
    for g in 0..groups {
        let v = |t: usize| (g * 1000 + (t + 1 + g) % live(g)) as f32;
        for t in 0..96 {
            let want = if t >= live(g) {
                -2.0
            } else if !active(g, t) {
                -1.0
            } else {
                let sg = t / 32;
                let partners = (sg * 32..sg * 32 + 32).filter(|&u| active(g, u) && u % 2 == t % 2);
                let values = partners.map(v);
                if t % 2 == 0 {
                    values.sum()
                } else {
                    values.fold(f32::MIN, f32::max)
                }
            };
            assert_eq!(got[g * 96 + t], want, "group {g} thread {t}");
        }
    }
}
