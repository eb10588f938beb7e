//! The `matvec` kernel family (templates/metal/matvec.metal.j2): y = W·x
//! for one token, with the projection epilogues fused. Also home of what
//! `matmul` shares with it: [`Epilogue`] and the weight dtype names.

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
        }
    }

    /// The template's `activation` parameter (gated only).
    pub fn activation(self) -> Option<&'static str> {
        match self {
            Epilogue::Gated(a) => Some(activation_param(a)),
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
    }
}

/// The template name of a weight dtype the linear-algebra kernels read.
pub fn weight_dtype_param(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::Q8_0 => "q8_0",
        DType::Q4_0 => "q4_0",
        other => panic!("no kernel reads {other} weights (supported: F32, F16, BF16, Q8_0, Q4_0)"),
    }
}

/// Values one lane loads as a chunk of a row of `cols` values: 8 nibbles of
/// a Q4_0 quant plane (a `uchar4`), 4 int8 of a Q8_0 one (a `char4`), 4
/// floats of a float matrix (a `float4`/`half4`/`ushort4`), or 1 when a
/// float row is not a multiple of 4.
pub fn chunk_values(dtype: DType, cols: u64) -> u64 {
    match dtype {
        DType::Q4_0 => 8,
        DType::Q8_0 => 4,
        _ if cols.is_multiple_of(4) => 4,
        _ => 1,
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
    let reductions = |r: u64| (r * if gated { 2 } else { 1 } + u64::from(prenorm)).div_ceil(4);
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
    let dtype_param = weight_dtype_param(dtype);
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
    let rows_per_group = per_simdgroup * SIMDGROUPS;
    KernelInstance {
        family: "matvec",
        name,
        params: serde_json::json!({
            "dtype": dtype_param,
            "rows": rows,
            "cols": cols,
            "epilogue": epilogue.param(),
            "activation": epilogue.activation(),
            "softcap": softcap,
            "prenorm_eps": prenorm_eps,
            "simdgroups": SIMDGROUPS,
            "rows_per_simdgroup": per_simdgroup,
            "chunk": chunk_values(dtype, cols),
        }),
        threads: [32 * SIMDGROUPS as u32, 1, 1],
        grid: [
            rows.div_ceil(rows_per_group).to_string(),
            "1".into(),
            "1".into(),
        ],
    }
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
