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
