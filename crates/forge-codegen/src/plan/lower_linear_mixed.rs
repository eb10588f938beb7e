//! Linear layers reading one input whose weights differ in format (a mixed
//! GGUF such as Q4_K_M, where q and k may be Q5_0 and v Q8_0): one weight
//! is one format, so each run of consecutive weights of one format is
//! fused into its own projection. A gate|up pair becomes two dispatches
//! into the activation's buffer, the gate projection first and then the up
//! projection multiplying act(gate) in place; other groups write their
//! columns of the group's buffer, as the fused projection would have.

use std::collections::HashSet;

use forge_ir::{DType, Node, ValueId};

use super::linear::Projection;
use super::{field_name, fused_name, unsupported, Loc, LowerError, Lowering, Paths};
use crate::kernels::matvec::Epilogue;
use crate::plan::options::matrix_dtype;

impl Lowering<'_> {
    /// The format each of `weights` is planned in.
    pub(super) fn planned_formats(&self, weights: &[String]) -> Result<Vec<DType>, LowerError> {
        weights
            .iter()
            .map(|w| {
                let spec = self.spec(w)?;
                let cols = spec.shape.get(1).copied().unwrap_or(1);
                Ok(matrix_dtype(self.options, spec, cols).0)
            })
            .collect()
    }

    /// Whether `weights` cannot be one fused weight.
    pub(super) fn formats_differ(&self, weights: &[String]) -> Result<bool, LowerError> {
        let formats = self.planned_formats(weights)?;
        Ok(formats.windows(2).any(|w| w[0] != w[1]))
    }

    pub(super) fn mixed_linear_group(
        &mut self,
        group: &[&Node],
        weights: &[String],
        biases: &[Option<String>],
        done: &mut HashSet<ValueId>,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let input = group[0].inputs[0];
        let outputs: Vec<ValueId> = group.iter().map(|n| n.output).collect();
        if biases.iter().any(Option::is_some) && !biases.iter().all(Option::is_some) {
            return unsupported(format!(
                "linear layers {weights:?} mix biased and unbiased parts"
            ));
        }
        let formats = self.planned_formats(weights)?;
        if let Some((act_node, activation)) = self.gated_consumer(&outputs) {
            if biases.iter().any(Option::is_some) {
                return unsupported(format!("biased gate|up projections {weights:?}"));
            }
            done.insert(act_node.output);
            let out = self.own_buffer(act_node.output);
            let rows = self.width(outputs[0]);
            let steps = [
                (0, Epilogue::None, "gate projection"),
                (1, Epilogue::GateProduct(activation), "act(gate) * up"),
            ];
            for (i, epilogue, what) in steps {
                let tensor = self.plan_tensor(vec![weights[i].clone()], true)?;
                let comment = format!(
                    "{} = {what}, from {} ({}; gate and up differ in format)",
                    out.buffer,
                    field_name(&tensor),
                    formats[i]
                );
                self.project(
                    Projection {
                        tensor: &tensor,
                        bias: None,
                        input,
                        rows,
                        out_stride: rows,
                        epilogue,
                        out: out.clone(),
                        comment,
                    },
                    paths,
                )?;
            }
            return Ok(());
        }

        // Q|K|V and the like: the group's buffer, each output at its columns.
        let total: u64 = outputs.iter().map(|&v| self.width(v)).sum();
        let name = field_name(&fused_name(weights))
            .trim_start_matches("attn_")
            .trim_start_matches("ffn_")
            .to_string();
        self.buffer(&name, total);
        let mut column = 0;
        let mut start = 0;
        while start < group.len() {
            let end = (start..group.len())
                .find(|&i| formats[i] != formats[start])
                .unwrap_or(group.len());
            let rows: u64 = outputs[start..end].iter().map(|&v| self.width(v)).sum();
            let first = column;
            for &v in &outputs[start..end] {
                self.locs.insert(
                    v,
                    Loc {
                        buffer: name.clone(),
                        column,
                        stride: total,
                    },
                );
                column += self.width(v);
            }
            let tensor = self.plan_tensor(weights[start..end].to_vec(), true)?;
            let bias = match biases[start].is_some() {
                true => {
                    let parts = biases[start..end].iter().flatten().cloned().collect();
                    let t = self.plan_tensor(parts, false)?;
                    let f = field_name(&t);
                    paths.tensors.insert(f.clone(), t);
                    Some(f)
                }
                false => None,
            };
            let comment = format!(
                "{name}[{first}..{column}] = {} projection ({})",
                field_name(&tensor),
                formats[start]
            );
            self.project(
                Projection {
                    tensor: &tensor,
                    epilogue: if bias.is_some() {
                        Epilogue::Bias
                    } else {
                        Epilogue::None
                    },
                    bias,
                    input,
                    rows,
                    out_stride: total,
                    out: Loc {
                        buffer: name.clone(),
                        column: first,
                        stride: total,
                    },
                    comment,
                },
                paths,
            )?;
            start = end;
        }
        Ok(())
    }
}
