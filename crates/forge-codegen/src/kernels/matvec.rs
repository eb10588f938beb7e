//! The `matvec` kernel family (templates/metal/matvec.metal.j2): y = W·x
//! for one token, with the projection epilogues fused. Also home of what
//! `matmul` shares with it: [`Epilogue`] and the instance names.

use super::weight_format::{self, chunk_values, PlaneSlots};
use super::KernelInstance;
use forge_ir::{Activation, DType};

/// What happens to W·x before it is stored (see templates/metal/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// y = W·x
    None,
    /// y = W·x + b (bias at buffer 3)
    Bias,
    /// y += W·x (the residual stream updated in place)
    Residual,
    /// y += W·x + b
    BiasResidual,
    /// W has 2·rows rows (gate, then up): y = act(gate·x) · (up·x)
    Gated(Activation),
    /// y = act(W·x) (Nemotron-H's squared-ReLU MLP)
    Activated(Activation),
    /// y = act(y)·(W·x): y already holds the gate projection, W is the up
    /// projection (a gate|up pair whose formats differ, so not one matrix)
    GateProduct(Activation),
}

impl Epilogue {
    /// The template's `epilogue` parameter.
    pub fn param(self) -> &'static str {
        match self {
            Epilogue::None => "none",
            Epilogue::Bias => "bias",
            Epilogue::Residual => "residual",
            Epilogue::BiasResidual => "bias_residual",
            Epilogue::Gated(_) => "gated",
            Epilogue::Activated(_) => "activated",
            Epilogue::GateProduct(_) => "gate_product",
        }
    }

    /// The template's `activation` parameter (gated and activated only).
    pub fn activation(self) -> Option<&'static str> {
        match self {
            Epilogue::Gated(a) | Epilogue::Activated(a) | Epilogue::GateProduct(a) => {
                Some(activation_param(a))
            }
            _ => None,
        }
    }

    /// Rows of W for `rows` outputs.
    pub fn weight_rows(self, rows: u64) -> u64 {
        match self {
            Epilogue::Gated(_) => 2 * rows,
            _ => rows,
        }
    }

    /// True when a bias is bound at buffer 3.
    pub fn has_bias(self) -> bool {
        matches!(self, Epilogue::Bias | Epilogue::BiasResidual)
    }

    /// The part of an instance name that tells the epilogue (`_gated_silu`).
    pub fn name_suffix(self) -> String {
        match self {
            Epilogue::None => String::new(),
            Epilogue::Gated(a) => format!("_gated_{}", activation_param(a)),
            Epilogue::Activated(a) => format!("_{}", activation_param(a)),
            Epilogue::GateProduct(a) => format!("_gate_product_{}", activation_param(a)),
            other => format!("_{}", other.param()),
        }
    }
}

fn activation_param(a: Activation) -> &'static str {
    match a {
        Activation::Silu => "silu",
        Activation::GeluTanh => "gelu_tanh",
        Activation::Gelu => "gelu",
        Activation::Relu => "relu",
        Activation::Relu2 => "relu2",
    }
}

/// A float as part of an identifier: `30.0` → `30`, `1e-5` → `1em5`, `0.5` → `0p5`.
pub fn float_tag(value: f32) -> String {
    let text = if value.fract() == 0.0 && value.abs() < 1e9 {
        format!("{value}")
    } else {
        format!("{value:e}")
    };
    text.replace('-', "m").replace('.', "p").replace('+', "")
}

/// Simdgroups per threadgroup.
const SIMDGROUPS: u64 = 2;

/// Output rows per simdgroup: the partial sums (R rows, R more for the up
/// projection, one Σx² for a prenorm) are reduced four at a time by vector
/// simd_sums, so pick the R in 3..=8 with the fewest reductions per row
/// (ties: more rows, which loads x and launches lanes fewer times per row).
pub fn rows_per_simdgroup(gated: bool, prenorm: bool) -> u64 {
    rows_for_partials(if gated { 2 } else { 1 }, u64::from(prenorm))
}

/// [`rows_per_simdgroup`] for `per_row` partial sums per output row and
/// `extra` more per simdgroup (a gated norm of G groups: G and G).
fn rows_for_partials(per_row: u64, extra: u64) -> u64 {
    let reductions = |r: u64| (r * per_row + extra).div_ceil(4);
    (3..=8u64)
        .min_by(|&a, &b| {
            (reductions(a) * b)
                .cmp(&(reductions(b) * a))
                .then(b.cmp(&a))
        })
        .expect("non-empty range")
}

/// Checks the shape shared by `matvec` and `matmul` and names the instance
/// (`<family>_<dtype>_<rows>x<cols><epilogue>[_softcap<c>]`); returns the
/// dtype parameter too.
pub(super) fn linear_name(
    family: &str,
    dtype: DType,
    rows: u64,
    cols: u64,
    epilogue: Epilogue,
    softcap: Option<f32>,
) -> (&'static str, String) {
    let dtype_param = weight_format::param(dtype);
    assert!(rows > 0 && cols > 0, "{family}: empty matrix");
    assert!(
        !dtype.is_quantized() || cols.is_multiple_of(32),
        "{family} {dtype_param}: quantised rows of {cols} values are not whole blocks"
    );
    let mut name = format!(
        "{family}_{dtype_param}_{rows}x{cols}{}",
        epilogue.name_suffix()
    );
    if let Some(c) = softcap {
        name += &format!("_softcap{}", float_tag(c));
    }
    (dtype_param, name)
}

/// Mamba-2's gated RMSNorm in front of a decode projection (see
/// [`matvec_gated_norm`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatedNorm {
    pub eps: f32,
    /// Columns per group (the whole row for one group).
    pub group: u64,
    pub norm_before_gate: bool,
}

/// Most gated-norm groups a matvec keeps partial sums for (R rows × G
/// groups of them stay in registers).
const MAX_GATED_NORM_GROUPS: u64 = 8;

/// Whether a `[rows, cols]` matvec of `dtype` can compute the gated norm of
/// its input itself: every group a whole number of the chunks a lane loads,
/// and few enough groups.
pub fn gated_norm_fusable(dtype: DType, cols: u64, group: u64) -> bool {
    group > 0
        && cols.is_multiple_of(group)
        && cols / group <= MAX_GATED_NORM_GROUPS
        && group.is_multiple_of(chunk_values(dtype, cols))
}

/// Decode projection of Mamba-2's normalised output: y = W·(rms_norm_g(x ·
/// silu(z)) · w) per group g (or the norm of x alone, gated after, with
/// `norm_before_gate`), so the norm needs no dispatch of its own. Buffers
/// as [`matvec`], with x = y at 1, the norm weight `float[cols]` at 4 and z
/// `[cols]` at 6.
///
/// # Panics
/// When the groups are not [`gated_norm_fusable`] or the epilogue is gated.
pub fn matvec_gated_norm(
    dtype: DType,
    rows: u64,
    cols: u64,
    epilogue: Epilogue,
    norm: GatedNorm,
) -> KernelInstance {
    assert!(
        gated_norm_fusable(dtype, cols, norm.group),
        "matvec: a gated norm of groups of {} over {cols} columns of {dtype} does not fuse",
        norm.group
    );
    assert!(
        !matches!(epilogue, Epilogue::Gated(_)),
        "matvec: a gated norm before a gated epilogue"
    );
    let groups = cols / norm.group;
    let (dtype_param, mut name) = linear_name("matvec", dtype, rows, cols, epilogue, None);
    name += &format!("_gatednorm{groups}g_eps{}", float_tag(norm.eps));
    if norm.norm_before_gate {
        name += "_norm_then_gate";
    }
    let per_simdgroup = rows_for_partials(groups, groups);
    let mut params = base_params(dtype_param, rows, cols, epilogue, per_simdgroup, dtype);
    params["activation"] = serde_json::Value::Null;
    params["softcap"] = serde_json::Value::Null;
    params["prenorm_eps"] = serde_json::Value::Null;
    params["gated_norm"] = serde_json::json!({
        "groups": groups,
        "group": norm.group,
        "eps": norm.eps,
        "norm_before_gate": norm.norm_before_gate,
    });
    instance(name, params, rows, per_simdgroup)
}

/// The parameters every matvec instance has.
fn base_params(
    dtype_param: &str,
    rows: u64,
    cols: u64,
    epilogue: Epilogue,
    per_simdgroup: u64,
    dtype: DType,
) -> serde_json::Value {
    serde_json::json!({
        "dtype": dtype_param,
        "rows": rows,
        "cols": cols,
        "epilogue": epilogue.param(),
        "simdgroups": SIMDGROUPS,
        "rows_per_simdgroup": per_simdgroup,
        "chunk": chunk_values(dtype, cols),
        "planes": weight_format::plane_params(dtype, cols, PlaneSlots::Linear),
        "experts": null,
    })
}

fn instance(
    name: String,
    params: serde_json::Value,
    rows: u64,
    per_simdgroup: u64,
) -> KernelInstance {
    KernelInstance {
        family: "matvec",
        name,
        params,
        threads: [32 * SIMDGROUPS as u32, 1, 1],
        grid: [
            rows.div_ceil(per_simdgroup * SIMDGROUPS).to_string(),
            "1".into(),
            "1".into(),
        ],
    }
}

/// Decode projection: `rows` outputs of a `[rows, cols]` matrix (`[2·rows,
/// cols]` when gated) times one token's `x`, with `epilogue`, an optional
/// logit `softcap`, and `prenorm_eps` to RMS-normalise x on the fly with the
/// norm weight at buffer 4. Buffers: 0 W, 1 x, 2 y, 3 bias, 4 norm weight.
pub fn matvec(
    dtype: DType,
    rows: u64,
    cols: u64,
    epilogue: Epilogue,
    softcap: Option<f32>,
    prenorm_eps: Option<f32>,
) -> KernelInstance {
    let (dtype_param, mut name) = linear_name("matvec", dtype, rows, cols, epilogue, softcap);
    if let Some(eps) = prenorm_eps {
        name += &format!("_prenorm{}", float_tag(eps));
    }
    let per_simdgroup = rows_per_simdgroup(
        matches!(epilogue, Epilogue::Gated(_)),
        prenorm_eps.is_some(),
    );
    let mut params = base_params(dtype_param, rows, cols, epilogue, per_simdgroup, dtype);
    params["activation"] = serde_json::json!(epilogue.activation());
    params["softcap"] = serde_json::json!(softcap);
    params["prenorm_eps"] = serde_json::json!(prenorm_eps);
    params["gated_norm"] = serde_json::Value::Null;
    instance(name, params, rows, per_simdgroup)
}

/// How an expert kernel finds its experts: `count` matrices stacked in W,
/// `slots` chosen per token, the routing rows (`routing_width` floats per
/// token, bound at 8) holding the slots' ids from `id_column` and, for the
/// down projection, their weights right after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Experts {
    pub count: u64,
    pub slots: u64,
    pub routing_width: u64,
    pub id_column: u64,
}

impl Experts {
    pub(super) fn params(self, mode: ExpertMode) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "slots": self.slots,
            "routing_width": self.routing_width,
            "id_column": self.id_column,
            "mode": mode.param(),
        })
    }

    /// The part of an instance name that tells the experts (`_8x2e_at0`).
    pub(super) fn name_suffix(self, mode: ExpertMode) -> String {
        format!(
            "_{}{}x{}e_r{}c{}",
            mode.param(),
            self.count,
            self.slots,
            self.routing_width,
            self.id_column
        )
    }
}

/// What an expert kernel does with its slots (see templates/metal/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertMode {
    /// Each slot's expert applied to the token's one input, into the slot's
    /// own output row (the gate|up projection).
    Slot,
    /// Each slot's expert applied to the slot's own input, scaled by its
    /// routing weight (the down projection).
    Sum,
}

impl ExpertMode {
    pub(super) fn param(self) -> &'static str {
        match self {
            ExpertMode::Slot => "slot",
            ExpertMode::Sum => "sum",
        }
    }
}

/// Decode projection through the chosen experts: W is `experts.count`
/// matrices of `[rows, cols]` (`[2·rows, cols]` gated) one after another.
/// [`ExpertMode::Slot`] (epilogue none or gated): y `[slots, rows]` from the
/// one x, grid (row groups, slots). [`ExpertMode::Sum`] (epilogue none or
/// residual): x `[slots, cols]`, y `[rows]` = Σ_s w_s·W_s·x_s (+ y), grid
/// (row groups). Buffers as [`matvec`] (no norm), the routing row at 8.
pub fn matvec_experts(
    dtype: DType,
    rows: u64,
    cols: u64,
    epilogue: Epilogue,
    experts: Experts,
    mode: ExpertMode,
) -> KernelInstance {
    let allowed = match mode {
        ExpertMode::Slot => matches!(
            epilogue,
            Epilogue::None | Epilogue::Gated(_) | Epilogue::GateProduct(_)
        ),
        ExpertMode::Sum => matches!(epilogue, Epilogue::None | Epilogue::Residual),
    };
    assert!(
        allowed,
        "matvec: epilogue {epilogue:?} with experts in {mode:?} mode"
    );
    let (dtype_param, mut name) = linear_name("matvec", dtype, rows, cols, epilogue, None);
    name += &experts.name_suffix(mode);
    let per_simdgroup = rows_per_simdgroup(matches!(epilogue, Epilogue::Gated(_)), false);
    let mut params = base_params(dtype_param, rows, cols, epilogue, per_simdgroup, dtype);
    params["activation"] = serde_json::json!(epilogue.activation());
    params["softcap"] = serde_json::Value::Null;
    params["prenorm_eps"] = serde_json::Value::Null;
    params["gated_norm"] = serde_json::Value::Null;
    params["experts"] = experts.params(mode);
    let mut k = instance(name, params, rows, per_simdgroup);
    if mode == ExpertMode::Slot {
        k.grid[1] = experts.slots.to_string();
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_shape_epilogue_and_options() {
        let k = matvec(DType::Q8_0, 960, 576, Epilogue::None, None, Some(1e-5));
        assert_eq!(k.name, "matvec_q8_0_960x576_prenorm1em5");
        // 7 rows + Σx² fill two float4 reductions: ⌈960 / 14⌉ threadgroups.
        assert_eq!(k.grid[0], "69");
        let k = matvec(
            DType::F16,
            128,
            64,
            Epilogue::Gated(Activation::GeluTanh),
            Some(30.0),
            None,
        );
        assert_eq!(k.name, "matvec_f16_128x64_gated_gelu_tanh_softcap30");
    }

    #[test]
    fn rows_per_simdgroup_fill_whole_float4_reductions() {
        assert_eq!(rows_per_simdgroup(false, false), 8);
        assert_eq!(rows_per_simdgroup(false, true), 7);
        assert_eq!(rows_per_simdgroup(true, false), 8);
        assert_eq!(rows_per_simdgroup(true, true), 7);
    }

    #[test]
    #[should_panic(expected = "not whole blocks")]
    fn ragged_quantised_columns_are_refused() {
        matvec(DType::Q8_0, 8, 48, Epilogue::None, None, None);
    }
}
