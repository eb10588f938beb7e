//! The `add` family under msl-emu against a Rust reference.

mod kernel_support;

use forge_codegen::kernels::add::add;
use kernel_support::*;
use msl_emu::Buffer;

/// Runs `add(width)` on `n` rows, in place (out = a) or into a third buffer.
fn check(width: usize, n: usize, in_place: bool) {
    let k = add(width as u64);
    let kernels = Kernels::build(std::slice::from_ref(&k));
    let mut rng = Rng::new(width as u64 * 31 + n as u64);
    let a = rng.vec(n * width, 2.0);
    let b = rng.vec(n * width, 2.0);
    let (ab, bb) = (buffer(&a), buffer(&b));
    let ob = Buffer::new(n * width * 4);
    let step = step_bytes(n as u32, 0);
    let out = if in_place { &ab } else { &ob };
    kernels.run(
        &k,
        n as u32,
        0,
        &[
            bind(0, &ab),
            bind(1, &bb),
            bind(2, out),
            step_binding(&step),
        ],
    );
    // One f32 addition on both sides: the results are bitwise equal.
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(
        read_f32(out),
        want,
        "add_{width}, n = {n}, in place {in_place}"
    );
}

#[test]
fn add_vector_width() {
    check(64, 3, false);
    check(64, 17, true);
}

#[test]
fn add_odd_width() {
    check(30, 5, true);
}

#[test]
fn grid_expressions_evaluate_like_rust() {
    assert_eq!(
        eval_grid("(n * 16).div_ceil(256)", 17, 0),
        (17u32 * 16).div_ceil(256)
    );
    assert_eq!(eval_grid("(pos + 1).div_ceil(32) * 2 - 1", 40, 63), 3);
    assert_eq!(eval_grid("n.min(4) % 3 + 8 / 2", 10, 0), 5);
}

// The library template's own guards, seen through `add` (which honours any
// thread count, so only the library's limits apply).

#[test]
fn library_refuses_threadgroups_that_are_not_one_dimensional() {
    let mut k = add(64);
    k.threads = [128, 2, 1];
    assert_refused(&k, "add: threads = [128, 2, 1] must be one-dimensional");
}

#[test]
fn library_refuses_more_than_1024_threads() {
    let mut k = add(64);
    k.threads = [1025, 1, 1];
    assert_refused(&k, "add: threads = 1025 must be in 1..=1024");
    k.threads = [0, 1, 1];
    assert_refused(&k, "add: threads = 0 must be in 1..=1024");
    k.threads = [1024, 1, 1];
    assert_renders(&k);
}
