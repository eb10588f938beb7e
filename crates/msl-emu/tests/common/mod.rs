//! Shared pieces of the kernel tests: loading the .metal files, deterministic
//! inputs, GGML Q8_0 packing, and tolerance checks that report the worst element.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use msl_emu::{Binding, Buffer, CompileOptions, Library};

/// Path of a kernel file under `crates/msl-emu/kernels`.
pub fn kernel_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("kernels")
        .join(name)
}

/// Compiles a kernel file with the given options, failing the test with the
/// emulator's diagnostics if it does not build.
pub fn load_with(name: &str, options: &CompileOptions) -> Library {
    let path = kernel_path(name);
    match Library::from_file(&path, options) {
        Ok(lib) => lib,
        Err(e) => panic!("{name} failed to compile:\n{e}"),
    }
}

pub fn load(name: &str) -> Library {
    load_with(name, &CompileOptions::default())
}

pub fn buf(index: u32, buffer: &Buffer) -> Binding<'_> {
    Binding::Buffer {
        index,
        buffer,
        offset: 0,
    }
}

pub fn bytes(index: u32, data: &[u8]) -> Binding<'_> {
    Binding::Bytes { index, data }
}

/// Little-endian bytes of a sequence of 32-bit fields, the layout of a `constant`
/// struct made only of uint/int/float members.
pub fn words(fields: &[Word]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len() * 4);
    for f in fields {
        match *f {
            Word::U(v) => out.extend_from_slice(&v.to_le_bytes()),
            Word::F(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    out
}

#[derive(Clone, Copy)]
pub enum Word {
    U(u32),
    F(f32),
}

/// SplitMix64: a tiny deterministic generator so inputs are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    pub fn vec_f32(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32_in(lo, hi)).collect()
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

pub fn to_f16(v: &[f32]) -> Vec<half::f16> {
    v.iter().map(|&x| half::f16::from_f32(x)).collect()
}

pub fn f16_to_f64(v: &[half::f16]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// Unit roundoff of f32: a sum of n products computed in f32 is within
/// n * F32_U * sum|terms| of the exact sum (the classic worst-case bound).
pub const F32_U: f64 = 1.0 / (1u64 << 24) as f64;

/// One GGML Q8_0 block: scale d (f16) and 32 signed quants.
pub const QK8_0: usize = 32;
pub const Q8_0_BLOCK_BYTES: usize = 34;

/// Quantizes a row-major matrix to Q8_0 the way GGML defines the format:
/// d = max|x| / 127 per 32 values, q = round(x / d). Returns the packed bytes and
/// the dequantized values (d rounded to f16, times q) that the kernel must reproduce.
pub fn quantize_q8_0(values: &[f32]) -> (Vec<u8>, Vec<f64>) {
    assert_eq!(values.len() % QK8_0, 0);
    let mut packed = Vec::with_capacity(values.len() / QK8_0 * Q8_0_BLOCK_BYTES);
    let mut dequant = Vec::with_capacity(values.len());
    for block in values.chunks(QK8_0) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        let d16 = half::f16::from_f32(d);
        packed.extend_from_slice(&d16.to_bits().to_le_bytes());
        for &v in block {
            let q = (v * inv).round().clamp(-127.0, 127.0) as i8;
            packed.push(q as u8);
            dequant.push(d16.to_f64() * q as f64);
        }
    }
    (packed, dequant)
}

/// Asserts |got - want| <= tol[i] elementwise, naming the worst offender.
pub fn assert_within(what: &str, got: &[f32], want: &[f64], tol: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f64)> = None;
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        // Written so that a NaN result fails: NaN <= tol is false.
        if err <= tol(i) {
            continue;
        }
        let ratio = if err.is_nan() {
            f64::INFINITY
        } else {
            err / tol(i)
        };
        if worst.is_none_or(|(_, r)| ratio > r) {
            worst = Some((i, ratio));
        }
    }
    if let Some((i, ratio)) = worst {
        panic!(
            "{what}: element {i} got {} want {} (error {:.3e}, {ratio:.2}x the tolerance {:.3e})",
            got[i],
            want[i],
            (got[i] as f64 - want[i]).abs(),
            tol(i)
        );
    }
}

/// Relative-plus-absolute tolerance check.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rel: f64, abs: f64) {
    assert_within(what, got, want, |i| abs + rel * want[i].abs());
}
