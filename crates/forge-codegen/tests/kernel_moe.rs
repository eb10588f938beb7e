//! The mixture-of-experts kernels under msl-emu against an f64 Rust
//! reference: the router (softmax, top-k with ties to the lower id,
//! renormalisation, the shared expert's gate), the decode expert matvecs
//! (slot-mode gate|up, then the weighted sum-mode down into the residual,
//! routed and shared), the traffic they cause (only the chosen experts'
//! bytes), the grouped prefill matmuls (tokens gathered per expert, tiles of
//! 32 entries, an expert no token chose) and moe_combine, for every weight
//! dtype the linear kernels read.

mod kernel_support;
mod linear_reference;

use forge_codegen::kernels::matmul::{matmul_experts, ExpertRows};
use forge_codegen::kernels::matvec::{matvec_experts, Epilogue, ExpertMode, Experts};
use forge_codegen::kernels::moe::{moe_combine, moe_router, routing_width, SharedSlot};
use forge_codegen::kernels::weight_format::PlaneSlots;
use forge_codegen::KernelInstance;
use forge_ir::{Activation, DType};
use kernel_support::*;
use linear_reference::{activate, SENTINEL};
use msl_emu::{Buffer, DispatchStats};

/// The K-quants, whose rows are whole 256-value super-blocks.
const K_QUANTS: [DType; 3] = [DType::Q4_K, DType::Q5_K, DType::Q6_K];

const DTYPES: [DType; 8] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
];

/// The activation of every gated expert here (the MoE models' SwiGLU).
const ACT: Activation = Activation::Silu;
const GATED: Epilogue = Epilogue::Gated(ACT);

/// Extra floats past every output; a kernel that stores out of range changes them.
const SENTINELS: usize = 8;

/// f32 sums of a few hundred products (per lane, then a 32-lane tree; or
/// the simdgroup-matrix k-loop): ~30 dependent roundings of 6e-8 bound the
/// error by 2e-6 of Σ|terms|, as in linear_reference (observed there: under
/// 3e-7).
const SUM_REL: f64 = 2e-6;

// ---------------------------------------------------------------------------
// Reference pieces.

/// f64 values and the bound on the f32 kernel's error for each.
#[derive(Clone, Debug, Default)]
struct Approx {
    v: Vec<f64>,
    tol: Vec<f64>,
}

impl Approx {
    fn exact(values: &[f32]) -> Approx {
        Approx {
            v: values.iter().map(|&v| v as f64).collect(),
            tol: vec![0.0; values.len()],
        }
    }

    fn push(&mut self, v: f64, tol: f64) {
        self.v.push(v);
        self.tol.push(tol);
    }

    fn extend(&mut self, other: &Approx) {
        self.v.extend_from_slice(&other.v);
        self.tol.extend_from_slice(&other.tol);
    }

    fn slice(&self, at: usize, len: usize) -> Approx {
        Approx {
            v: self.v[at..at + len].to_vec(),
            tol: self.tol[at..at + len].to_vec(),
        }
    }

    fn check(&self, name: &str, got: &[f32]) {
        assert_close(name, got, &self.v, &self.tol);
    }
}

/// w·x in f64 and its error bound: the f32 summation (SUM_REL of Σ|terms|)
/// plus what the error of x itself (an earlier kernel's f32 output) moves
/// the sum by, Σ|w|·tol(x).
fn dot(w: &[f32], x: &Approx) -> (f64, f64) {
    let (mut sum, mut mag, mut carried) = (0.0f64, 0.0f64, 0.0f64);
    for (j, &wj) in w.iter().enumerate() {
        let term = wj as f64 * x.v[j];
        sum += term;
        mag += term.abs();
        carried += (wj as f64).abs() * x.tol[j];
    }
    (sum, SUM_REL * mag + carried)
}

/// `count` expert matrices of `[weight_rows, cols]` stacked in one buffer,
/// as the GPU reads them, and their exact decoded values.
struct Stack {
    count: usize,
    weight_rows: usize,
    cols: usize,
    dtype: DType,
    bytes: Vec<u8>,
    /// The planes after the quants (block formats).
    planes: Vec<Vec<u8>>,
    w: Vec<f32>,
}

impl Stack {
    fn random(dtype: DType, count: usize, weight_rows: usize, cols: usize, rng: &mut Rng) -> Stack {
        // Scaled so a row's dot product is O(1), as in linear_reference.
        let values = rng.vec(count * weight_rows * cols, 3.0 / (cols as f32).sqrt());
        // The stack is one matrix of count·weight_rows rows: expert e's rows
        // (and, quantised, its planes') start at e·weight_rows rows in.
        let encoded = encode_weights(dtype, &values, cols);
        Stack {
            count,
            weight_rows,
            cols,
            dtype,
            bytes: encoded.bytes,
            planes: encoded.planes,
            w: encoded.values,
        }
    }

    fn row(&self, expert: usize, r: usize) -> &[f32] {
        &self.w[(expert * self.weight_rows + r) * self.cols..][..self.cols]
    }

    fn expert_bytes(&self) -> u64 {
        (self.bytes.len() / self.count) as u64
    }

    /// Bytes of one expert's part of plane `plane` (after the quants).
    fn expert_plane_bytes(&self, plane: usize) -> u64 {
        (self.planes[plane].len() / self.count) as u64
    }

    /// act(gate·x)·(up·x) of `expert` (rows = weight_rows / 2), with
    /// linear_reference's error propagation through the gated epilogue.
    fn gated(&self, expert: usize, x: &Approx) -> Approx {
        let rows = self.weight_rows / 2;
        let mut out = Approx::default();
        for r in 0..rows {
            let (g, eg) = dot(self.row(expert, r), x);
            let (u, eu) = dot(self.row(expert, rows + r), x);
            let a = activate(ACT, g);
            // |silu'| <= 1.1; f32 evaluation of exp adds ~1e-6 of |g|+1.
            let mut e = 1.2 * eg * (u.abs() + eu) + a.abs() * eu + 1e-6 * (g.abs() + 1.0) * u.abs();
            let v = a * u;
            e += 1e-6 * (v.abs() + 1e-3);
            out.push(v, e);
        }
        out
    }

    /// weight·(W_expert·x): a down projection scaled by its routing weight.
    fn weighted(&self, expert: usize, weight: f32, x: &Approx) -> Approx {
        let mut out = Approx::default();
        for r in 0..self.weight_rows {
            let (v, e) = dot(self.row(expert, r), x);
            let w = weight as f64;
            // The scaling (of x chunks or of the sum) rounds once more.
            out.push(w * v, w.abs() * e + 1e-6 * (w * v).abs() + 1e-9);
        }
        out
    }

    /// W (bound at 0) and its other planes with their indices.
    fn buffers(&self) -> (Buffer, Vec<(u32, Buffer)>) {
        (
            buffer(&self.bytes),
            plane_buffers(self.dtype, &self.planes, PlaneSlots::Linear),
        )
    }
}

fn with_sentinels(values: &[f32]) -> Vec<f32> {
    let mut v = values.to_vec();
    v.extend([SENTINEL; SENTINELS]);
    v
}

fn sentinel_floats(len: usize) -> Vec<f32> {
    vec![SENTINEL; len + SENTINELS]
}

fn assert_sentinels(name: &str, got: &[f32], from: usize) {
    if let Some(i) = (from..got.len()).find(|&i| got[i] != SENTINEL) {
        panic!(
            "{name}: element {i} (past the written ones) changed to {}",
            got[i]
        );
    }
}

fn weight_bindings<'a>(w: &'a Buffer, planes: &'a [(u32, Buffer)]) -> Vec<msl_emu::Binding<'a>> {
    let mut b = vec![bind(0, w)];
    b.extend(plane_binds(planes));
    b
}

fn traffic(stats: &DispatchStats, index: u32) -> msl_emu::BufferTraffic {
    stats
        .buffers
        .iter()
        .find(|b| b.index == index)
        .unwrap_or_else(|| panic!("no traffic counted at buffer {index}"))
        .clone()
}

// ---------------------------------------------------------------------------
// Router.

struct RouterCase {
    experts: usize,
    cols: usize,
    top_k: usize,
    renormalize: bool,
    shared: SharedSlot,
    n: usize,
}

impl RouterCase {
    fn instance(&self) -> KernelInstance {
        moe_router(
            self.experts as u64,
            self.cols as u64,
            self.top_k as u64,
            self.renormalize,
            self.shared,
        )
    }

    fn width(&self) -> usize {
        routing_width(self.top_k as u64, self.shared != SharedSlot::None) as usize
    }

    fn router_rows(&self) -> usize {
        self.experts + usize::from(self.shared == SharedSlot::Gated)
    }
}

/// The expected routing rows: ids exact, weights and the shared gate with
/// tolerances. Panics when a case is ill-posed (two different logits closer
/// than their f32 error at a place where their order decides the output).
fn router_reference(case: &RouterCase, w: &[f32], x: &[f32]) -> (Vec<f32>, Approx) {
    let mut ids = Vec::new();
    let mut weights = Approx::default();
    for t in 0..case.n {
        let xt = Approx::exact(&x[t * case.cols..][..case.cols]);
        let (logits, errors): (Vec<f64>, Vec<f64>) = (0..case.router_rows())
            .map(|e| dot(&w[e * case.cols..][..case.cols], &xt))
            .unzip();
        let experts = case.experts;
        let top = logits[..experts].iter().cloned().fold(f64::MIN, f64::max);
        let total: f64 = logits[..experts].iter().map(|l| (l - top).exp()).sum();
        let p: Vec<f64> = logits[..experts]
            .iter()
            .map(|l| (l - top).exp() / total)
            .collect();
        // By probability descending (the same order as logits), ties to the lower id.
        let mut order: Vec<usize> = (0..experts).collect();
        order.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap().then(a.cmp(&b)));
        let delta = errors[..experts].iter().cloned().fold(0.0, f64::max);
        for j in 0..case.top_k.min(experts - 1) {
            let (a, b) = (order[j], order[j + 1]);
            let gap = logits[a] - logits[b];
            assert!(
                gap == 0.0 || gap > 4.0 * delta,
                "token {t}: logits of experts {a} and {b} differ by {gap}, within f32 error {delta}"
            );
        }
        let chosen = &order[..case.top_k];
        let chosen_sum: f64 = chosen.iter().map(|&e| p[e]).sum();
        ids.extend(chosen.iter().map(|&e| e as f32));
        for &e in chosen {
            // log p moves by at most δ_e + max δ (the log-sum-exp is a mean of
            // the logits' errors); renormalising doubles that. The f32 exp and
            // the sequential sum of ≤ 70 exps add under 1e-5 relative.
            let (value, rel) = if case.renormalize {
                (p[e] / chosen_sum, 4.0 * delta + 2e-5)
            } else {
                (p[e], 2.0 * delta + 1e-5)
            };
            weights.push(value, value * rel + 1e-9);
        }
        match case.shared {
            SharedSlot::None => {}
            SharedSlot::Ungated => {
                weights.push(0.0, 0.0);
                weights.push(1.0, 0.0);
            }
            SharedSlot::Gated => {
                let l = logits[experts];
                let s = 1.0 / (1.0 + (-l).exp());
                // σ' <= 1/4; f32 exp and divide add ~1e-6.
                weights.push(0.0, 0.0);
                weights.push(s, 0.25 * errors[experts] + 1e-6);
            }
        }
    }
    (ids, weights)
}

/// Runs the router on W and x and checks the routing rows against the
/// reference; returns the ids the kernel chose, per token.
fn run_router(kernels: &Kernels, case: &RouterCase, w: &[f32], x: &[f32]) -> Vec<Vec<usize>> {
    let k = case.instance();
    let width = case.width();
    let (wb, xb) = (buffer(w), buffer(x));
    let rb = buffer(&sentinel_floats(case.n * width));
    let step = step_bytes(case.n as u32, 0);
    kernels.run(
        &k,
        case.n as u32,
        0,
        &[
            bind(0, &wb),
            bind(1, &xb),
            bind(2, &rb),
            step_binding(&step),
        ],
    );
    let got = read_f32(&rb);
    let (ids, weights) = router_reference(case, w, x);
    let kk = case.top_k;
    let mut got_ids = Vec::new();
    let mut got_weights = Vec::new();
    for t in 0..case.n {
        let row = &got[t * width..][..width];
        got_ids.extend_from_slice(&row[..kk]);
        got_weights.extend_from_slice(&row[kk..]);
    }
    assert_eq!(got_ids, ids, "{}: chosen experts", k.name);
    weights.check(&format!("{}: weights", k.name), &got_weights);
    assert_sentinels(&k.name, &got, case.n * width);
    got_ids
        .chunks(kk)
        .map(|c| c.iter().map(|&v| v as usize).collect())
        .collect()
}

fn random_router(case: &RouterCase, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    // Logits of a few units, so the softmax is far from flat.
    let w = rng.vec(
        case.router_rows() * case.cols,
        4.0 / (case.cols as f32).sqrt(),
    );
    let x = rng.vec(case.n * case.cols, 1.0);
    (w, x)
}

#[test]
fn router_random_cases() {
    let cases = [
        RouterCase {
            experts: 8,
            cols: 64,
            top_k: 2,
            renormalize: true,
            shared: SharedSlot::None,
            n: 5,
        },
        RouterCase {
            experts: 60,
            cols: 66,
            top_k: 4,
            renormalize: false,
            shared: SharedSlot::Gated,
            n: 5,
        },
        RouterCase {
            experts: 60,
            cols: 64,
            top_k: 4,
            renormalize: true,
            shared: SharedSlot::Ungated,
            n: 3,
        },
        // More experts than one 64-bit word of chosen flags, and all of them chosen.
        RouterCase {
            experts: 70,
            cols: 40,
            top_k: 70,
            renormalize: false,
            shared: SharedSlot::None,
            n: 2,
        },
        RouterCase {
            experts: 130,
            cols: 32,
            top_k: 8,
            renormalize: true,
            shared: SharedSlot::Gated,
            n: 4,
        },
        RouterCase {
            experts: 4,
            cols: 13,
            top_k: 1,
            renormalize: false,
            shared: SharedSlot::None,
            n: 5,
        },
    ];
    let instances: Vec<_> = cases.iter().map(RouterCase::instance).collect();
    let kernels = Kernels::build(&instances);
    for (i, case) in cases.iter().enumerate() {
        let (w, x) = random_router(case, 500 + i as u64);
        run_router(&kernels, case, &w, &x);
    }
}

/// Router rows `tied` are one identical row, c·x_0 with c chosen so their
/// logit for token 0 is `logit`; the others are small.
fn set_rows(case: &RouterCase, w: &mut [f32], x0: &[f32], rows: &[usize], logit: f32) {
    let norm2: f32 = x0.iter().map(|v| v * v).sum();
    for &r in rows {
        for (j, &xj) in x0.iter().enumerate() {
            w[r * case.cols + j] = logit / norm2 * xj;
        }
    }
}

#[test]
fn router_ties_go_to_the_lower_id() {
    // Two identical top rows (2 and 5), both chosen by top-2, 2 first.
    let top_tie = RouterCase {
        experts: 8,
        cols: 64,
        top_k: 2,
        renormalize: true,
        shared: SharedSlot::None,
        n: 2,
    };
    // A tie at the top-k boundary: 1 is the top, 6 and 3 tie for second; 3 is chosen.
    let boundary_tie = RouterCase {
        experts: 8,
        cols: 66,
        top_k: 2,
        renormalize: false,
        shared: SharedSlot::Gated,
        n: 2,
    };
    // Ties across the words of chosen flags: 66 and 10 tie for the top,
    // then 64 and 63 tie for the third place (63 chosen, 64 not).
    let word_tie = RouterCase {
        experts: 70,
        cols: 64,
        top_k: 3,
        renormalize: false,
        shared: SharedSlot::Ungated,
        n: 1,
    };
    let cases = [top_tie, boundary_tie, word_tie];
    let instances: Vec<_> = cases.iter().map(RouterCase::instance).collect();
    let kernels = Kernels::build(&instances);
    let mut wx: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut rng = Rng::new(700 + i as u64);
            let w = rng.vec(c.router_rows() * c.cols, 0.5 / (c.cols as f32).sqrt());
            let x = rng.vec(c.n * c.cols, 1.0);
            (w, x)
        })
        .collect();
    let expected: [&[usize]; 3] = [&[2, 5], &[1, 3], &[10, 66, 63]];
    {
        let (c, (w, x)) = (&cases[0], &mut wx[0]);
        let x0 = x[..c.cols].to_vec();
        set_rows(c, w, &x0, &[2, 5], 3.0);
    }
    {
        let (c, (w, x)) = (&cases[1], &mut wx[1]);
        let x0 = x[..c.cols].to_vec();
        set_rows(c, w, &x0, &[1], 3.0);
        set_rows(c, w, &x0, &[6, 3], 2.0);
    }
    {
        let (c, (w, x)) = (&cases[2], &mut wx[2]);
        let x0 = x[..c.cols].to_vec();
        set_rows(c, w, &x0, &[66, 10], 3.0);
        set_rows(c, w, &x0, &[64, 63], 2.0);
    }
    for ((case, (w, x)), want) in cases.iter().zip(&wx).zip(expected) {
        let ids = run_router(&kernels, case, w, x);
        assert_eq!(ids[0], want, "{}: token 0", case.instance().name);
    }
}

// ---------------------------------------------------------------------------
// moe_combine.

#[test]
fn combine_adds_the_slots_into_the_residual() {
    let (n, slots) = (5usize, 3usize);
    let widths = [64usize, 66, 1000];
    let instances: Vec<_> = widths
        .iter()
        .map(|&w| moe_combine(w as u64, slots as u64))
        .collect();
    let kernels = Kernels::build(&instances);
    for (i, (&width, k)) in widths.iter().zip(&instances).enumerate() {
        let mut rng = Rng::new(900 + i as u64);
        let y = rng.vec(n * slots * width, 1.0);
        let x0 = rng.vec(n * width, 1.0);
        let (yb, xb) = (buffer(&y), buffer(&with_sentinels(&x0)));
        let step = step_bytes(n as u32, 0);
        kernels.run(
            k,
            n as u32,
            0,
            &[bind(0, &yb), bind(2, &xb), step_binding(&step)],
        );
        let mut want = Approx::default();
        for t in 0..n {
            for c in 0..width {
                let terms = (0..slots).map(|s| y[(t * slots + s) * width + c] as f64);
                let (sum, mag) = terms.fold(
                    (x0[t * width + c] as f64, (x0[t * width + c] as f64).abs()),
                    |(s, m), v| (s + v, m + v.abs()),
                );
                // slots sequential f32 adds: each rounds by 6e-8 of a partial sum.
                want.push(sum, 1e-6 * mag);
            }
        }
        let got = read_f32(&xb);
        want.check(&k.name, &got[..n * width]);
        assert_sentinels(&k.name, &got, n * width);
    }
}

// ---------------------------------------------------------------------------
// Decode: the expert matvecs.

/// Shapes of one mixture: (hidden, expert intermediate, shared intermediate).
type Shape = (usize, usize, usize);

/// Quantised rows are whole blocks (K-quants: whole 256-value
/// super-blocks); float dtypes also get widths that are not multiples of 4
/// (one value per lane) and rows that leave partial simdgroups and tiles.
fn shapes(dtype: DType) -> Vec<Shape> {
    if K_QUANTS.contains(&dtype) {
        return vec![(256, 512, 256)];
    }
    let mut shapes = vec![(64, 96, 64)];
    if matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        shapes.push((66, 44, 30));
    }
    if matches!(dtype, DType::Q4_1 | DType::Q5_0 | DType::Q5_1) {
        // Rows of 3, 5 and 1 blocks.
        shapes.push((96, 160, 32));
    }
    shapes
}

const DECODE_EXPERTS: usize = 8;
const DECODE_K: usize = 3;

fn decode_layout() -> (Experts, Experts) {
    let width = routing_width(DECODE_K as u64, true);
    let routed = Experts {
        count: DECODE_EXPERTS as u64,
        slots: DECODE_K as u64,
        routing_width: width,
        id_column: 0,
    };
    // The shared expert's (0, gate) pair after the routed ids and weights.
    let shared = Experts {
        count: 1,
        slots: 1,
        routing_width: width,
        id_column: 2 * DECODE_K as u64,
    };
    (routed, shared)
}

/// gate|up (slot) and down (sum, residual), routed then shared.
fn decode_instances(dtype: DType, (hidden, inter, shared_inter): Shape) -> [KernelInstance; 4] {
    let (routed, shared) = decode_layout();
    let (h, i, si) = (hidden as u64, inter as u64, shared_inter as u64);
    [
        matvec_experts(dtype, i, h, GATED, routed, ExpertMode::Slot),
        matvec_experts(dtype, h, i, Epilogue::Residual, routed, ExpertMode::Sum),
        matvec_experts(dtype, si, h, GATED, shared, ExpertMode::Slot),
        matvec_experts(dtype, h, si, Epilogue::Residual, shared, ExpertMode::Sum),
    ]
}

/// One decode token through a mixture of 8 experts, top 3, and a gated
/// shared expert; returns each dispatch's stats and the stacks.
struct DecodeRun {
    stats: [DispatchStats; 4],
    stacks: [Stack; 4],
}

fn decode_case(kernels: &Kernels, dtype: DType, shape: Shape, seed: u64) -> DecodeRun {
    let (hidden, inter, shared_inter) = shape;
    let k = decode_instances(dtype, shape);
    let mut rng = Rng::new(seed);
    let gate_up = Stack::random(dtype, DECODE_EXPERTS, 2 * inter, hidden, &mut rng);
    let down = Stack::random(dtype, DECODE_EXPERTS, hidden, inter, &mut rng);
    let s_gate_up = Stack::random(dtype, 1, 2 * shared_inter, hidden, &mut rng);
    let s_down = Stack::random(dtype, 1, hidden, shared_inter, &mut rng);
    let x = rng.vec(hidden, 1.0);
    let y0 = rng.vec(hidden, 1.0);
    // Ids out of order, the first and the last expert among them; then the
    // weights, then the shared expert's (0, gate).
    let ids = [6usize, 0, 7];
    let weights = [0.55f32, 0.3, 0.15];
    let gate = 0.4f32;
    let mut routing: Vec<f32> = ids.iter().map(|&e| e as f32).collect();
    routing.extend(weights);
    routing.extend([0.0, gate]);

    let rb = buffer(&routing);
    let xb = buffer(&x);
    let hb = buffer(&sentinel_floats(DECODE_K * inter));
    let hsb = buffer(&sentinel_floats(shared_inter));
    let yb = buffer(&with_sentinels(&y0));
    let (gu_w, gu_s) = gate_up.buffers();
    let (d_w, d_s) = down.buffers();
    let (sgu_w, sgu_s) = s_gate_up.buffers();
    let (sd_w, sd_s) = s_down.buffers();
    let run = |k: &KernelInstance, w: &Buffer, s: &[(u32, Buffer)], x: &Buffer, y: &Buffer| {
        let mut b = weight_bindings(w, s);
        b.extend([bind(1, x), bind(2, y), bind(8, &rb)]);
        kernels.run(k, 1, 0, &b)
    };
    let stats = [
        run(&k[0], &gu_w, &gu_s, &xb, &hb),
        run(&k[1], &d_w, &d_s, &hb, &yb),
        run(&k[2], &sgu_w, &sgu_s, &xb, &hsb),
        run(&k[3], &sd_w, &sd_s, &hsb, &yb),
    ];

    // Reference: y0 + Σ_s w_s·down_{e_s}(act(gate x)·up x) + g·shared(x).
    let xa = Approx::exact(&x);
    let mut h = Approx::default();
    for &e in &ids {
        h.extend(&gate_up.gated(e, &xa));
    }
    let hs = s_gate_up.gated(0, &xa);
    let got_h = read_f32(&hb);
    h.check(&k[0].name, &got_h[..DECODE_K * inter]);
    assert_sentinels(&k[0].name, &got_h, DECODE_K * inter);
    let got_hs = read_f32(&hsb);
    hs.check(&k[2].name, &got_hs[..shared_inter]);
    assert_sentinels(&k[2].name, &got_hs, shared_inter);

    let mut want = Approx::exact(&y0);
    let mut parts: Vec<Approx> = ids
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(s, (&e, w))| down.weighted(e, w, &h.slice(s * inter, inter)))
        .collect();
    parts.push(s_down.weighted(0, gate, &hs));
    for r in 0..hidden {
        let mag: f64 = parts.iter().map(|p| p.v[r].abs()).sum::<f64>() + want.v[r].abs();
        for p in &parts {
            want.v[r] += p.v[r];
            want.tol[r] += p.tol[r];
        }
        // The residual adds (one per kernel) and the slot sums.
        want.tol[r] += 1e-6 * mag;
    }
    let got = read_f32(&yb);
    let name = format!("{} + {}", k[1].name, k[3].name);
    want.check(&name, &got[..hidden]);
    assert_sentinels(&name, &got, hidden);
    DecodeRun {
        stats,
        stacks: [gate_up, down, s_gate_up, s_down],
    }
}

fn decode_dtype(dtype: DType) {
    let shapes = shapes(dtype);
    let instances: Vec<_> = shapes
        .iter()
        .flat_map(|&s| decode_instances(dtype, s))
        .collect();
    let kernels = Kernels::build(&instances);
    for (i, &shape) in shapes.iter().enumerate() {
        decode_case(&kernels, dtype, shape, 2000 + i as u64);
    }
}

#[test]
fn decode_f32() {
    decode_dtype(DType::F32);
}

#[test]
fn decode_f16() {
    decode_dtype(DType::F16);
}

#[test]
fn decode_bf16() {
    decode_dtype(DType::BF16);
}

#[test]
fn decode_q8_0() {
    decode_dtype(DType::Q8_0);
}

#[test]
fn decode_q4_0() {
    decode_dtype(DType::Q4_0);
}

#[test]
fn decode_q4_1_q5_0_q5_1() {
    for dtype in [DType::Q4_1, DType::Q5_0, DType::Q5_1] {
        decode_dtype(dtype);
    }
}

#[test]
fn decode_k_quants() {
    for dtype in K_QUANTS {
        decode_dtype(dtype);
    }
}

/// The decode expert matvecs load the chosen experts' bytes once each and
/// nothing of the others: W (and the scale plane) bytes read are slots ×
/// one expert's, and so are the distinct 64-byte lines (each expert's
/// matrix starts on a line here).
#[test]
fn decode_reads_only_the_chosen_experts() {
    // Every dtype at its first shape (64, 96, 64; K-quants 256, 512, 256).
    let dtypes: Vec<DType> = DTYPES.iter().chain(&K_QUANTS).copied().collect();
    let instances: Vec<_> = dtypes
        .iter()
        .flat_map(|&d| decode_instances(d, shapes(d)[0]))
        .collect();
    let kernels = Kernels::build_counting(&instances);
    let slots = [DECODE_K as u64, DECODE_K as u64, 1, 1];
    for &dtype in &dtypes {
        let shape = shapes(dtype)[0];
        let run = decode_case(&kernels, dtype, shape, 77);
        let names = decode_instances(dtype, shape).map(|k| k.name);
        for i in 0..4 {
            let (stats, stack, name) = (&run.stats[i], &run.stacks[i], &names[i]);
            let w = traffic(stats, 0);
            let want = slots[i] * stack.expert_bytes();
            eprintln!(
                "{name}: W read {} bytes ({} in lines) of {} stacked; one expert {}",
                w.bytes_read,
                w.line_bytes_read,
                stack.bytes.len(),
                stack.expert_bytes()
            );
            assert_eq!(w.bytes_read, want, "{name}: W bytes read");
            assert_eq!(w.line_bytes_read, want, "{name}: W lines read");
            assert_eq!(w.bytes_written, 0, "{name}");
            // Each lane loads the plane elements of its chunk: the chunks
            // that share an element (8 of 4 values share a Q8_0 scale, 4 of
            // 8 a Q4_0 one) each load it.
            let k = &decode_instances(dtype, shape)[i];
            let chunks = stack.cols as u64 / k.params["chunk"].as_u64().unwrap();
            for (p, plane) in k.params["planes"].as_array().unwrap().iter().enumerate() {
                let per_element = chunks / plane["per_row"].as_u64().unwrap();
                let s = traffic(stats, plane["buffer"].as_u64().unwrap() as u32);
                let want = slots[i] * stack.expert_plane_bytes(p);
                eprintln!(
                    "{name}: {} read {} bytes ({} in lines)",
                    plane["name"], s.bytes_read, s.line_bytes_read
                );
                assert_eq!(s.bytes_read, per_element * want, "{name}: plane bytes read");
                assert_eq!(s.line_bytes_read, want, "{name}: plane lines read");
            }
            let rows = (if i % 2 == 0 {
                stack.weight_rows / 2
            } else {
                stack.weight_rows
            }) as u64;
            let outputs = if i % 2 == 0 { slots[i] * rows } else { rows };
            assert_eq!(
                traffic(stats, 2).bytes_written,
                4 * outputs,
                "{name}: y written once"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Prefill: the grouped expert matmuls and moe_combine.

const PREFILL_EXPERTS: usize = 6;
const PREFILL_K: usize = 2;
const MAX_TOKENS: usize = 64;

fn prefill_layout() -> (Experts, Experts) {
    let width = routing_width(PREFILL_K as u64, true);
    let routed = Experts {
        count: PREFILL_EXPERTS as u64,
        slots: PREFILL_K as u64,
        routing_width: width,
        id_column: 0,
    };
    let shared = Experts {
        count: 1,
        slots: 1,
        routing_width: width,
        id_column: 2 * PREFILL_K as u64,
    };
    (routed, shared)
}

/// Routed gate|up into h `[n·k, inter]`, the shared one into hs `[n,
/// shared_inter]`, the routed and shared downs into `[n, k + 1, hidden]`
/// (the shared expert's at slot k), and the combine.
fn prefill_instances(dtype: DType, (hidden, inter, shared_inter): Shape) -> [KernelInstance; 5] {
    let (routed, shared) = prefill_layout();
    let (h, i, si) = (hidden as u64, inter as u64, shared_inter as u64);
    let out = |out_slots, out_slot| ExpertRows {
        out_slots,
        out_slot,
    };
    let k = PREFILL_K as u64;
    let max = MAX_TOKENS as u64;
    [
        matmul_experts(dtype, i, h, GATED, routed, ExpertMode::Slot, out(k, 0), max),
        matmul_experts(
            dtype,
            si,
            h,
            GATED,
            shared,
            ExpertMode::Slot,
            out(1, 0),
            max,
        ),
        matmul_experts(
            dtype,
            h,
            i,
            Epilogue::None,
            routed,
            ExpertMode::Sum,
            out(k + 1, 0),
            max,
        ),
        matmul_experts(
            dtype,
            h,
            si,
            Epilogue::None,
            shared,
            ExpertMode::Sum,
            out(k + 1, k),
            max,
        ),
        moe_combine(h, k + 1),
    ]
}

/// Token t's two experts for a pass of n tokens. n = 40: expert 0 takes 35
/// tokens (two 32-entry tiles), in either slot; 1..=4 the rest; 5 none.
/// n = 64: expert 0 every token (two whole tiles); 5 none. n = 1: (3, 1).
fn prefill_ids(n: usize) -> Vec<[usize; 2]> {
    (0..n)
        .map(|t| match n {
            1 => [3, 1],
            40 if t >= 35 => [1 + t % 4, 1 + (t + 1) % 4],
            _ => {
                let other = 1 + (t * 7) % 4;
                if t % 2 == 0 {
                    [0, other]
                } else {
                    [other, 0]
                }
            }
        })
        .collect()
}

struct PrefillRun {
    stats: [DispatchStats; 5],
    stacks: [Stack; 4],
}

fn prefill_case(kernels: &Kernels, dtype: DType, shape: Shape, n: usize, seed: u64) -> PrefillRun {
    let (hidden, inter, shared_inter) = shape;
    let k = prefill_instances(dtype, shape);
    let kk = PREFILL_K;
    let out_slots = kk + 1;
    let mut rng = Rng::new(seed);
    let gate_up = Stack::random(dtype, PREFILL_EXPERTS, 2 * inter, hidden, &mut rng);
    let s_gate_up = Stack::random(dtype, 1, 2 * shared_inter, hidden, &mut rng);
    let down = Stack::random(dtype, PREFILL_EXPERTS, hidden, inter, &mut rng);
    let s_down = Stack::random(dtype, 1, hidden, shared_inter, &mut rng);
    let x = rng.vec(n * hidden, 1.0);
    let resid = rng.vec(n * hidden, 1.0);
    let ids = prefill_ids(n);
    let mut routing = Vec::new();
    let mut weights = Vec::new();
    let mut gates = Vec::new();
    for pair in &ids {
        let w0 = 0.5 + 0.4 * rng.uniform();
        let gate = 0.5 + 0.45 * rng.uniform();
        routing.extend([pair[0] as f32, pair[1] as f32, w0, 1.0 - w0, 0.0, gate]);
        weights.push([w0, 1.0 - w0]);
        gates.push(gate);
    }
    // Rows past the pass name experts 5 and 0: a kernel that read them
    // would write rows past the pass's, into the sentinels.
    for _ in n..MAX_TOKENS {
        routing.extend([5.0, 0.0, 0.5, 0.5, 0.0, 0.5]);
    }
    let rb = buffer(&routing);
    let xb = buffer(&x);
    // Outputs sized for max_tokens, sentinels everywhere a kernel must not write.
    let hb = buffer(&sentinel_floats(MAX_TOKENS * kk * inter));
    let hsb = buffer(&sentinel_floats(MAX_TOKENS * shared_inter));
    let yb = buffer(&sentinel_floats(MAX_TOKENS * out_slots * hidden));
    let residb = buffer(&with_sentinels(&resid));
    let step = step_bytes(n as u32, 3);
    let (gu_w, gu_s) = gate_up.buffers();
    let (sgu_w, sgu_s) = s_gate_up.buffers();
    let (d_w, d_s) = down.buffers();
    let (sd_w, sd_s) = s_down.buffers();
    let run = |k: &KernelInstance, w: &Buffer, s: &[(u32, Buffer)], x: &Buffer, y: &Buffer| {
        let mut b = weight_bindings(w, s);
        b.extend([bind(1, x), bind(2, y), bind(8, &rb), step_binding(&step)]);
        kernels.run(k, n as u32, 3, &b)
    };

    // Reference.
    let xa: Vec<Approx> = (0..n)
        .map(|t| Approx::exact(&x[t * hidden..][..hidden]))
        .collect();
    let mut h = Approx::default();
    let mut hs = Approx::default();
    for t in 0..n {
        for &e in &ids[t] {
            h.extend(&gate_up.gated(e, &xa[t]));
        }
        hs.extend(&s_gate_up.gated(0, &xa[t]));
    }
    let mut y = Approx::default();
    for t in 0..n {
        for s in 0..kk {
            y.extend(&down.weighted(
                ids[t][s],
                weights[t][s],
                &h.slice((t * kk + s) * inter, inter),
            ));
        }
        y.extend(&s_down.weighted(0, gates[t], &hs.slice(t * shared_inter, shared_inter)));
    }

    let s0 = run(&k[0], &gu_w, &gu_s, &xb, &hb);
    let got = read_f32(&hb);
    h.check(&format!("{} n={n}", k[0].name), &got[..n * kk * inter]);
    assert_sentinels(&k[0].name, &got, n * kk * inter);

    let s1 = run(&k[1], &sgu_w, &sgu_s, &xb, &hsb);
    let got = read_f32(&hsb);
    hs.check(&format!("{} n={n}", k[1].name), &got[..n * shared_inter]);
    assert_sentinels(&k[1].name, &got, n * shared_inter);

    // The routed down writes slots 0..k of each token and leaves slot k.
    let s2 = run(&k[2], &d_w, &d_s, &hb, &yb);
    let got = read_f32(&yb);
    for t in 0..n {
        let row = t * out_slots;
        y.slice(row * hidden, kk * hidden).check(
            &format!("{} n={n} token {t}", k[2].name),
            &got[row * hidden..][..kk * hidden],
        );
        let shared_row = &got[(row + kk) * hidden..][..hidden];
        assert!(
            shared_row.iter().all(|&v| v == SENTINEL),
            "{}: wrote the shared slot of token {t}",
            k[2].name
        );
    }
    assert_sentinels(&k[2].name, &got, n * out_slots * hidden);

    let s3 = run(&k[3], &sd_w, &sd_s, &hsb, &yb);
    let got = read_f32(&yb);
    y.check(
        &format!("{} n={n}", k[3].name),
        &got[..n * out_slots * hidden],
    );
    assert_sentinels(&k[3].name, &got, n * out_slots * hidden);

    let s4 = kernels.run(
        &k[4],
        n as u32,
        3,
        &[bind(0, &yb), bind(2, &residb), step_binding(&step)],
    );
    let mut want = Approx::exact(&resid);
    for t in 0..n {
        for c in 0..hidden {
            let at = t * hidden + c;
            let mut mag = want.v[at].abs();
            for s in 0..out_slots {
                let i = (t * out_slots + s) * hidden + c;
                want.v[at] += y.v[i];
                want.tol[at] += y.tol[i];
                mag += y.v[i].abs();
            }
            // out_slots sequential f32 adds.
            want.tol[at] += 1e-6 * mag;
        }
    }
    let got = read_f32(&residb);
    want.check(&format!("{} n={n}", k[4].name), &got[..n * hidden]);
    assert_sentinels(&k[4].name, &got, n * hidden);
    PrefillRun {
        stats: [s0, s1, s2, s3, s4],
        stacks: [gate_up, s_gate_up, down, s_down],
    }
}

fn prefill_dtype(dtype: DType) {
    let shapes = shapes(dtype);
    let instances: Vec<_> = shapes
        .iter()
        .flat_map(|&s| prefill_instances(dtype, s))
        .collect();
    let kernels = Kernels::build(&instances);
    for (i, &shape) in shapes.iter().enumerate() {
        for n in [40, 1, MAX_TOKENS] {
            prefill_case(&kernels, dtype, shape, n, 3000 + 10 * i as u64 + n as u64);
        }
    }
}

#[test]
fn prefill_f32() {
    prefill_dtype(DType::F32);
}

#[test]
fn prefill_f16() {
    prefill_dtype(DType::F16);
}

#[test]
fn prefill_bf16() {
    prefill_dtype(DType::BF16);
}

#[test]
fn prefill_q8_0() {
    prefill_dtype(DType::Q8_0);
}

#[test]
fn prefill_q4_0() {
    prefill_dtype(DType::Q4_0);
}

#[test]
fn prefill_q4_1_q5_0_q5_1() {
    for dtype in [DType::Q4_1, DType::Q5_0, DType::Q5_1] {
        prefill_dtype(dtype);
    }
}

#[test]
fn prefill_k_quants() {
    for dtype in K_QUANTS {
        prefill_dtype(dtype);
    }
}

/// The grouped matmuls stage each used expert's matrix once per 32-entry
/// tile of its tokens and never touch an expert no token chose: W bytes
/// read = Σ_e ⌈tokens_e / 32⌉ × one expert's, distinct lines = the used
/// experts' bytes.
#[test]
fn prefill_reads_only_the_used_experts() {
    let shape = (64, 96, 64);
    let dtypes = [DType::F16, DType::Q8_0];
    let instances: Vec<_> = dtypes
        .iter()
        .flat_map(|&d| prefill_instances(d, shape))
        .collect();
    let kernels = Kernels::build_counting(&instances);
    for &dtype in &dtypes {
        let n = 40;
        let run = prefill_case(&kernels, dtype, shape, n, 88);
        let names = prefill_instances(dtype, shape).map(|k| k.name);
        let mut tokens = [0u64; PREFILL_EXPERTS];
        for pair in prefill_ids(n) {
            for e in pair {
                tokens[e] += 1;
            }
        }
        assert_eq!(tokens[5], 0);
        assert!(tokens[0] >= 33);
        let tiles: u64 = tokens.iter().map(|t| t.div_ceil(32)).sum();
        let used = tokens.iter().filter(|&&t| t > 0).count() as u64;
        let shared_tiles = (n as u64).div_ceil(32);
        // (stats index, stack index, tiles staged, experts touched)
        let checks = [
            (0, 0, tiles, used),
            (1, 1, shared_tiles, 1),
            (2, 2, tiles, used),
            (3, 3, shared_tiles, 1),
        ];
        for (si, ki, staged, touched) in checks {
            let (stats, stack, name) = (&run.stats[si], &run.stacks[ki], &names[si]);
            let w = traffic(stats, 0);
            eprintln!(
                "{name} n={n}: W read {} bytes ({} in lines) of {} stacked; one expert {}",
                w.bytes_read,
                w.line_bytes_read,
                stack.bytes.len(),
                stack.expert_bytes()
            );
            assert_eq!(
                w.bytes_read,
                staged * stack.expert_bytes(),
                "{name}: W bytes read"
            );
            assert_eq!(
                w.line_bytes_read,
                touched * stack.expert_bytes(),
                "{name}: W lines read"
            );
            let k = &prefill_instances(dtype, shape)[si];
            for (p, plane) in k.params["planes"].as_array().unwrap().iter().enumerate() {
                let s = traffic(stats, plane["buffer"].as_u64().unwrap() as u32);
                eprintln!(
                    "{name} n={n}: {} read {} bytes ({} in lines)",
                    plane["name"], s.bytes_read, s.line_bytes_read
                );
                assert_eq!(
                    s.line_bytes_read,
                    touched * stack.expert_plane_bytes(p),
                    "{name}: plane lines read"
                );
            }
        }
    }
}

/// act(gate_e·x)·(up_e·x) of rows `rows` of two stacks, with `Stack::gated`'s
/// error propagation (the gate value also rounds once to f32 in y).
fn gate_times_up(gate: &Stack, up: &Stack, expert: usize, x: &Approx) -> Approx {
    let mut out = Approx::default();
    for r in 0..gate.weight_rows {
        let (g, eg) = dot(gate.row(expert, r), x);
        let (u, eu) = dot(up.row(expert, r), x);
        let a = activate(ACT, g);
        let mut e = 1.2 * eg * (u.abs() + eu) + a.abs() * eu + 1e-6 * (g.abs() + 1.0) * u.abs();
        let v = a * u;
        e += 1e-6 * (v.abs() + 1e-3);
        out.push(v, e);
    }
    out
}

/// Experts whose gate and up projections differ in format are two slot
/// dispatches: the gate stack writes each slot's gate projection, the up
/// stack's gate_product epilogue turns it into act(gate)·up in place —
/// decode (one token, three slots) and prefill (tokens grouped by expert).
#[test]
fn gate_then_up_in_two_formats() {
    let (hidden, inter) = (64usize, 96usize);
    let (gate_dtype, up_dtype) = (DType::Q4_1, DType::Q5_1);
    let product = Epilogue::GateProduct(ACT);
    let (routed, _) = decode_layout();
    let (prefill_routed, _) = prefill_layout();
    let rows = ExpertRows {
        out_slots: PREFILL_K as u64,
        out_slot: 0,
    };
    let (h, i) = (hidden as u64, inter as u64);
    let k = [
        matvec_experts(gate_dtype, i, h, Epilogue::None, routed, ExpertMode::Slot),
        matvec_experts(up_dtype, i, h, product, routed, ExpertMode::Slot),
        matmul_experts(
            gate_dtype,
            i,
            h,
            Epilogue::None,
            prefill_routed,
            ExpertMode::Slot,
            rows,
            MAX_TOKENS as u64,
        ),
        matmul_experts(
            up_dtype,
            i,
            h,
            product,
            prefill_routed,
            ExpertMode::Slot,
            rows,
            MAX_TOKENS as u64,
        ),
    ];
    let kernels = Kernels::build(&k);
    let mut rng = Rng::new(91);
    let gate = Stack::random(gate_dtype, DECODE_EXPERTS, inter, hidden, &mut rng);
    let up = Stack::random(up_dtype, DECODE_EXPERTS, inter, hidden, &mut rng);
    let (gw, gp) = gate.buffers();
    let (uw, up_planes) = up.buffers();

    // Decode: slots 6, 0 and 7.
    let ids = [6usize, 0, 7];
    let mut routing: Vec<f32> = ids.iter().map(|&e| e as f32).collect();
    routing.extend([0.55, 0.3, 0.15, 0.0, 0.4]);
    let (x, rb) = (rng.vec(hidden, 1.0), buffer(&routing));
    let (xb, hb) = (buffer(&x), buffer(&sentinel_floats(DECODE_K * inter)));
    for (kernel, w, planes) in [(&k[0], &gw, &gp), (&k[1], &uw, &up_planes)] {
        let mut b = weight_bindings(w, planes);
        b.extend([bind(1, &xb), bind(2, &hb), bind(8, &rb)]);
        kernels.run(kernel, 1, 0, &b);
    }
    let xa = Approx::exact(&x);
    let mut want = Approx::default();
    for &e in &ids {
        want.extend(&gate_times_up(&gate, &up, e, &xa));
    }
    let got = read_f32(&hb);
    want.check(&k[1].name, &got[..DECODE_K * inter]);
    assert_sentinels(&k[1].name, &got, DECODE_K * inter);

    // Prefill: 40 tokens over the prefill experts, routing rows as prefill_case's.
    let n = 40;
    let pairs = prefill_ids(n);
    let mut routing = Vec::new();
    for pair in &pairs {
        routing.extend([pair[0] as f32, pair[1] as f32, 0.6, 0.4, 0.0, 0.5]);
    }
    let x = rng.vec(n * hidden, 1.0);
    let (xb, rb) = (buffer(&x), buffer(&routing));
    let yb = buffer(&sentinel_floats(MAX_TOKENS * PREFILL_K * inter));
    let step = step_bytes(n as u32, 0);
    for (kernel, w, planes) in [(&k[2], &gw, &gp), (&k[3], &uw, &up_planes)] {
        let mut b = weight_bindings(w, planes);
        b.extend([
            bind(1, &xb),
            bind(2, &yb),
            bind(8, &rb),
            step_binding(&step),
        ]);
        kernels.run(kernel, n as u32, 0, &b);
    }
    let mut want = Approx::default();
    for (t, pair) in pairs.iter().enumerate() {
        let xt = Approx::exact(&x[t * hidden..][..hidden]);
        for &e in pair {
            want.extend(&gate_times_up(&gate, &up, e, &xt));
        }
    }
    let got = read_f32(&yb);
    want.check(&k[3].name, &got[..n * PREFILL_K * inter]);
    assert_sentinels(&k[3].name, &got, n * PREFILL_K * inter);
}
