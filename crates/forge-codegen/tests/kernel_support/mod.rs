//! Shared support for the kernel-family tests (`tests/kernel_*.rs`): render
//! instances, build them with msl-emu, dispatch an instance with its own
//! threads and grid, and make seeded random test data.
//!
//! API (use with `mod kernel_support; use kernel_support::*;`):
//! - `Kernels::build(&[KernelInstance])` / `Kernels::build_counting(..)`
//!   renders the instances with `forge_codegen::render_kernels` and compiles
//!   them (the second with msl-emu's `count_traffic`, for byte counters).
//! - `kernels.run(&instance, n, pos, &[Binding])` dispatches `instance` with
//!   `instance.threads` and the grid its expressions give for `n` tokens at
//!   position `pos`, and returns msl-emu's `DispatchStats`. Bindings are the
//!   caller's; for kernels that read `Step` at buffer 7 pass `step_binding(&bytes)`
//!   with `let bytes = step_bytes(n, pos);`.
//! - `eval_grid(expr, n, pos)` evaluates one grid expression (integers, `n`,
//!   `pos`, `+ - * / %`, parentheses, and the methods `.div_ceil(e)`,
//!   `.min(e)`, `.max(e)`), with u32 arithmetic like the generated host code.
//! - `Rng::new(seed)`: `next_u64`, `uniform()` in [-1, 1), `vec(len, scale)`.
//! - `buffer(&[T])`, `read_f32(&Buffer)`, `bind(index, &Buffer)`.
//! - `encode_weights(dtype, &values, cols) -> Encoded {bytes, planes, values}`:
//!   the GPU bytes of a matrix and the exact values a kernel must see
//!   (`encode_blocks(dtype, blocks, cols)` for given GGML blocks);
//!   `plane_buffers(dtype, &planes, slots)` the buffers of its other planes
//!   with the indices a family binds them at, and `plane_binds` their bindings.
//! - `assert_close(name, got, want, tol)` with per-element absolute tolerances.
//! - `assert_strict(file, &instances)`: unique names, and the rendered
//!   library passes msl-emu's strict syntax check.
//! - `with_param(&instance, "a.b", value)`: a copy with one (possibly nested)
//!   parameter replaced; `assert_refused(&instance, "family: param = value")`
//!   checks that rendering fails with that message; `assert_renders(&instance)`
//!   that it renders.
#![allow(dead_code)]

use forge_codegen::{render_kernels, KernelInstance};
use forge_ir::DType;
use msl_emu::{dispatch_threadgroups, Binding, Buffer, CompileOptions, DispatchStats, Library};
use msl_emu::{Pipeline, Size3};

/// A compiled library of kernel instances.
pub struct Kernels {
    pub source: String,
    pub library: Library,
}

impl Kernels {
    pub fn build(instances: &[KernelInstance]) -> Kernels {
        Kernels::build_with(instances, &CompileOptions::default())
    }

    /// Built with load/store counters: `DispatchStats::buffers` is filled.
    pub fn build_counting(instances: &[KernelInstance]) -> Kernels {
        let options = CompileOptions {
            count_traffic: true,
            ..CompileOptions::default()
        };
        Kernels::build_with(instances, &options)
    }

    pub fn build_with(instances: &[KernelInstance], options: &CompileOptions) -> Kernels {
        let source = render_kernels(instances).unwrap_or_else(|e| panic!("rendering: {e:#}"));
        let library = Library::from_source(&source, options)
            .unwrap_or_else(|e| panic!("msl-emu build failed: {e}\n--- source ---\n{source}"));
        Kernels { source, library }
    }

    pub fn pipeline(&self, instance: &KernelInstance) -> Pipeline {
        self.library
            .pipeline(&instance.name, &Default::default())
            .unwrap_or_else(|e| panic!("pipeline {}: {e}", instance.name))
    }

    /// Dispatches `instance` for a pass of `n` tokens starting at `pos`.
    pub fn run(
        &self,
        instance: &KernelInstance,
        n: u32,
        pos: u32,
        bindings: &[Binding],
    ) -> DispatchStats {
        let pipe = self.pipeline(instance);
        let [x, y, z] = &instance.grid;
        let grid = Size3::new(
            eval_grid(x, n, pos),
            eval_grid(y, n, pos),
            eval_grid(z, n, pos),
        );
        let [tx, ty, tz] = instance.threads;
        dispatch_threadgroups(&pipe, grid, Size3::new(tx, ty, tz), bindings)
            .unwrap_or_else(|e| panic!("dispatch {}: {e}", instance.name))
    }
}

/// The `Step` struct (`n_tokens`, `pos`) as setBytes data.
pub fn step_bytes(n: u32, pos: u32) -> Vec<u8> {
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.extend_from_slice(&pos.to_le_bytes());
    bytes
}

/// `Step` at buffer index 7, the index every family reads it from.
pub fn step_binding(bytes: &[u8]) -> Binding<'_> {
    Binding::Bytes {
        index: 7,
        data: bytes,
    }
}

pub fn bind(index: u32, buffer: &Buffer) -> Binding<'_> {
    Binding::Buffer {
        index,
        buffer,
        offset: 0,
    }
}

pub fn buffer<T: Copy>(data: &[T]) -> Buffer {
    Buffer::from_slice(data)
}

pub fn read_f32(buffer: &Buffer) -> Vec<f32> {
    buffer.read::<f32>()
}

/// Evaluates a grid expression for `n` and `pos` (see the module comment).
pub fn eval_grid(expr: &str, n: u32, pos: u32) -> u32 {
    let tokens = tokenize(expr);
    let mut parser = GridParser {
        tokens: &tokens,
        at: 0,
        n,
        pos,
    };
    let value = parser.sum();
    assert_eq!(
        parser.at,
        tokens.len(),
        "trailing tokens in grid expression {expr:?}"
    );
    value
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(u32),
    Ident(String),
    Sym(char),
}

fn tokenize(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let digits = text.trim_end_matches("u32");
            out.push(Token::Num(
                digits
                    .parse()
                    .unwrap_or_else(|_| panic!("number {text:?} in {expr:?}")),
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            assert!(
                "+-*/%().,".contains(c),
                "unexpected {c:?} in grid expression {expr:?}"
            );
            out.push(Token::Sym(c));
            i += 1;
        }
    }
    out
}

struct GridParser<'a> {
    tokens: &'a [Token],
    at: usize,
    n: u32,
    pos: u32,
}

impl GridParser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn expect(&mut self, c: char) {
        assert_eq!(
            self.peek(),
            Some(&Token::Sym(c)),
            "grid expression: expected {c:?}"
        );
        self.at += 1;
    }

    fn sum(&mut self) -> u32 {
        let mut value = self.product();
        while let Some(Token::Sym(c @ ('+' | '-'))) = self.peek() {
            let c = *c;
            self.at += 1;
            let rhs = self.product();
            value = if c == '+' { value + rhs } else { value - rhs };
        }
        value
    }

    fn product(&mut self) -> u32 {
        let mut value = self.postfix();
        while let Some(Token::Sym(c @ ('*' | '/' | '%'))) = self.peek() {
            let c = *c;
            self.at += 1;
            let rhs = self.postfix();
            value = match c {
                '*' => value * rhs,
                '/' => value / rhs,
                _ => value % rhs,
            };
        }
        value
    }

    fn postfix(&mut self) -> u32 {
        let mut value = self.atom();
        while let Some(Token::Sym('.')) = self.peek() {
            self.at += 1;
            let Some(Token::Ident(method)) = self.peek().cloned() else {
                panic!("grid expression: expected a method after '.'");
            };
            self.at += 1;
            self.expect('(');
            let arg = self.sum();
            self.expect(')');
            value = match method.as_str() {
                "div_ceil" => value.div_ceil(arg),
                "min" => value.min(arg),
                "max" => value.max(arg),
                other => panic!("grid expression: unknown method {other}"),
            };
        }
        value
    }

    fn atom(&mut self) -> u32 {
        let token = self.peek().cloned();
        self.at += 1;
        match token {
            Some(Token::Num(v)) => v,
            Some(Token::Ident(name)) if name == "n" => self.n,
            Some(Token::Ident(name)) if name == "pos" => self.pos,
            Some(Token::Sym('(')) => {
                let value = self.sum();
                self.expect(')');
                value
            }
            other => panic!("grid expression: unexpected {other:?}"),
        }
    }
}

/// xorshift64*: a small seeded generator so test data is reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform() * scale).collect()
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// Encodes a `[rows, cols]` matrix in `dtype` as the GPU reads it, and
/// returns the values decoded back (what the kernel computes with).
pub fn encode_weights(dtype: DType, values: &[f32], cols: usize) -> Encoded {
    let size = dtype.bytes_for(values.len() as u64).expect("whole blocks") as usize;
    let mut bytes = vec![0u8; size];
    forge_weights::quantize_rows(dtype, values, cols, &mut bytes).expect("quantise");
    encode_blocks(dtype, bytes, cols)
}

/// A `[rows, cols]` matrix of `dtype` stored as `bytes` (GGML blocks) as the
/// GPU reads it, and the values it decodes to.
pub fn encode_blocks(dtype: DType, bytes: Vec<u8>, cols: usize) -> Encoded {
    let values = (bytes.len() as u64 / dtype.block_bytes() * dtype.block_elements()) as usize;
    let mut decoded = vec![0f32; values];
    forge_weights::dequantize_rows(dtype, &bytes, cols, &mut decoded).expect("dequantise");
    // Block formats are read as their planes, as forge exports them.
    let (bytes, planes) = if forge_weights::planes::has_planes(dtype) {
        let mut planes = forge_weights::planes::split(dtype, &bytes)
            .expect("whole blocks")
            .planes;
        let quants = planes.remove(0);
        (quants, planes)
    } else {
        (bytes, Vec::new())
    };
    Encoded {
        bytes,
        planes,
        values: decoded,
    }
}

/// A weight matrix as the kernels read it.
pub struct Encoded {
    /// The matrix (the quant plane of a block format).
    pub bytes: Vec<u8>,
    /// A block format's other planes, in `forge_weights::planes::layout`
    /// order; empty for float formats.
    pub planes: Vec<Vec<u8>>,
    /// The exact values the bytes decode to.
    pub values: Vec<f32>,
}

/// Buffers of `planes` (a matrix's planes after its quants), each with the
/// index a family binding them as `slots` says puts it at.
pub fn plane_buffers(
    dtype: DType,
    planes: &[Vec<u8>],
    slots: forge_codegen::kernels::weight_format::PlaneSlots,
) -> Vec<(u32, Buffer)> {
    let bindings = forge_codegen::kernels::weight_format::plane_bindings(dtype, slots);
    assert_eq!(bindings.len(), planes.len(), "{dtype}: planes");
    bindings
        .iter()
        .zip(planes)
        .map(|(b, bytes)| (b.buffer, buffer(bytes)))
        .collect()
}

/// The bindings of [`plane_buffers`].
pub fn plane_binds(buffers: &[(u32, Buffer)]) -> impl Iterator<Item = Binding<'_>> {
    buffers.iter().map(|(index, b)| bind(*index, b))
}

/// Asserts |got - want| <= tol[i] element-wise, reporting the worst element.
pub fn assert_close(name: &str, got: &[f32], want: &[f64], tol: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let mut worst: Option<(usize, f64)> = None;
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        let ratio = if err.is_nan() {
            f64::INFINITY
        } else {
            err / tol[i]
        };
        if ratio > 1.0 && worst.is_none_or(|(_, r)| ratio > r) {
            worst = Some((i, ratio));
        }
    }
    if let Some((i, ratio)) = worst {
        panic!(
            "{name}: element {i}: got {}, want {}, tolerance {} (error {ratio:.2}x tolerance)",
            got[i], want[i], tol[i]
        );
    }
}

/// Every instance has its own name, and the library they render to passes
/// msl-emu's strict check (address spaces, Metal's limits); `file` names it
/// in the errors.
pub fn assert_strict(file: &str, instances: &[KernelInstance]) {
    let mut names: Vec<&str> = instances.iter().map(|k| k.name.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(
        names.len(),
        count,
        "instance names are unique per specialisation"
    );
    let source = render_kernels(instances).expect("renders");
    if let Err(e) = msl_emu::check_syntax_source(file, &source) {
        panic!("strict check failed:\n{e}");
    }
}

/// A copy of `instance` with the parameter at `path` (`.`-separated for
/// nested objects, e.g. `gated_norm.groups`) set to `value`.
pub fn with_param(
    instance: &KernelInstance,
    path: &str,
    value: serde_json::Value,
) -> KernelInstance {
    let mut out = instance.clone();
    let mut at = &mut out.params;
    for key in path.split('.') {
        at = at
            .get_mut(key)
            .unwrap_or_else(|| panic!("{}: no parameter {path}", instance.name));
    }
    *at = value;
    out
}

/// Asserts that the template refuses to render `instance` and that its
/// message contains `expected` (`"family: param = value"`, so it names the
/// kernel and the parameter).
pub fn assert_refused(instance: &KernelInstance, expected: &str) {
    match render_kernels(std::slice::from_ref(instance)) {
        Ok(_) => panic!(
            "{} rendered, but {expected:?} must be refused",
            instance.name
        ),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(expected),
                "{}: error {message:?} does not contain {expected:?}",
                instance.name
            );
        }
    }
}

/// Sets parameter `path` of `instance` to `value` and asserts the template
/// refuses it with a message naming the family, the parameter and the value.
pub fn assert_param_refused(instance: &KernelInstance, path: &str, value: serde_json::Value) {
    let shown = match &value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let expected = format!("{}: {path} = {shown}", instance.family);
    assert_refused(&with_param(instance, path, value), &expected);
}

/// Asserts that `instance` renders (a boundary value the template honours).
pub fn assert_renders(instance: &KernelInstance) {
    if let Err(e) = render_kernels(std::slice::from_ref(instance)) {
        panic!("{} must render: {e}", instance.name);
    }
}
