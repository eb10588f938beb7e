//! The `matmul` kernel family (templates/metal/matmul.metal.j2): the prefill
//! projection of n tokens, with the same epilogues as `matvec`.

use super::matvec::{linear_name, Epilogue, ExpertMode, Experts};
use super::weight_format::{chunk_values, plane_params, PlaneSlots};
use super::KernelInstance;
use forge_ir::DType;

/// Tokens per threadgroup tile.
const TILE_TOKENS: u64 = 32;
/// Weight rows per threadgroup tile.
const TILE_ROWS: u64 = 64;
/// 4 simdgroups, each accumulating 32 rows × 16 tokens as 4 × 2 8×8 matrices.
const THREADS: u32 = 128;

/// Prefill projection: `rows` outputs of a `[rows, cols]` matrix (`[2·rows,
/// cols]` when gated) for each of `n` tokens of x `[n, cols]` into y `[n,
/// rows]`, with `epilogue` and an optional logit `softcap`. Buffers: 0 W
/// (the quant plane of a quantised matrix), 1 x, 2 y, 3 bias, 5 (and on)
/// the other planes ([`PlaneSlots::Linear`]), 7 step. Grid: (⌈rows/64⌉,
/// ⌈n/32⌉).
pub fn matmul(
    dtype: DType,
    rows: u64,
    cols: u64,
    epilogue: Epilogue,
    softcap: Option<f32>,
) -> KernelInstance {
    let (dtype_param, name) = linear_name("matmul", dtype, rows, cols, epilogue, softcap);
    KernelInstance {
        family: "matmul",
        name,
        params: serde_json::json!({
            "dtype": dtype_param,
            "rows": rows,
            "cols": cols,
            "epilogue": epilogue.param(),
            "activation": epilogue.activation(),
            "softcap": softcap,
            "tile_tokens": TILE_TOKENS,
            "tile_rows": TILE_ROWS,
            "threads": THREADS,
            "chunk": chunk_values(dtype, cols),
            "planes": plane_params(dtype, cols, PlaneSlots::Linear),
            "out_stride": rows,
            "experts": null,
        }),
        threads: [THREADS, 1, 1],
        grid: [
            rows.div_ceil(TILE_ROWS).to_string(),
            format!("n.div_ceil({TILE_TOKENS})"),
            "1".into(),
        ],
    }
}

/// [`matmul`] writing its `rows` outputs of token t at `y[t·out_stride ..]`:
/// columns of wider rows (one projection of a Q|K|V group whose formats
/// differ, the others writing the columns beside it). y is bound at the
/// first column.
pub fn matmul_into_columns(
    dtype: DType,
    rows: u64,
    cols: u64,
    epilogue: Epilogue,
    out_stride: u64,
) -> KernelInstance {
    assert!(
        out_stride >= rows,
        "matmul: rows of {out_stride} cannot hold {rows} outputs"
    );
    let mut k = matmul(dtype, rows, cols, epilogue, None);
    if out_stride != rows {
        k.name += &format!("_stride{out_stride}");
        k.params["out_stride"] = out_stride.into();
    }
    k
}

/// Where a grouped expert matmul writes: row `t·out_slots + out_slot + s`
/// of y for token t's slot s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpertRows {
    pub out_slots: u64,
    pub out_slot: u64,
}

/// Prefill projection grouped by expert (llama.cpp's `mul_mm_id`): grid
/// (⌈rows/64⌉, ⌈n/32⌉, experts); threadgroup z gathers the (token, slot)
/// pairs routed to expert z and multiplies them by its matrix only.
/// [`ExpertMode::Slot`] (none or gated): x `[n, cols]`. [`ExpertMode::Sum`]
/// (none): x `[n·slots, cols]`, results scaled by the slots' routing
/// weights. Output rows as `rows_out` says. Buffers as [`matmul`], the
/// routing rows at 8. Passes must have at most `max_tokens` tokens.
#[allow(clippy::too_many_arguments)]
pub fn matmul_experts(
    dtype: DType,
    rows: u64,
    cols: u64,
    epilogue: Epilogue,
    experts: Experts,
    mode: ExpertMode,
    rows_out: ExpertRows,
    max_tokens: u64,
) -> KernelInstance {
    let mut k = matmul(dtype, rows, cols, epilogue, None);
    k.name += &experts.name_suffix(mode);
    k.name += &format!("_o{}s{}", rows_out.out_slots, rows_out.out_slot);
    let mut params = experts.params(mode);
    params["out_slots"] = rows_out.out_slots.into();
    params["out_slot"] = rows_out.out_slot.into();
    params["max_tokens"] = max_tokens.into();
    k.params["experts"] = params;
    k.grid[2] = experts.count.to_string();
    k
}
