//! Lowering of linear layers: the layers reading one input become one fused
//! weight (Q|K|V, gate|up), and what consumes the result picks the epilogue:
//! the gated activation, an in-place residual add, or a plain projection.
//! A preceding RMSNorm is folded into the decode matvec.

use std::collections::HashSet;

use forge_ir::{Activation, Node, Op, ValueId};

use super::{
    act, arg, field_name, layer_tensor, matmul, matvec, unsupported, Arg, ArgSource, Loc,
    LowerError, Lowering, Paths, Step,
};
use crate::kernels::weight_format::PlaneSlots;

impl Lowering<'_> {
    pub(super) fn linear_group(
        &mut self,
        nodes: &[Node],
        first: usize,
        done: &mut HashSet<ValueId>,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let input = nodes[first].inputs[0];
        let group: Vec<&Node> = nodes[first..]
            .iter()
            .take_while(|n| matches!(n.op, Op::Linear { .. }) && n.inputs[0] == input)
            .collect();
        let (weights, biases): (Vec<String>, Vec<Option<String>>) = group
            .iter()
            .map(|n| match &n.op {
                Op::Linear { weight, bias } => (weight.clone(), bias.clone()),
                _ => unreachable!("taken while linear"),
            })
            .unzip();
        for n in &group {
            done.insert(n.output);
        }
        let rows: u64 = group.iter().map(|n| self.width(n.output)).sum();
        if self.formats_differ(&weights)? {
            return self.mixed_linear_group(&group, &weights, &biases, done, paths);
        }
        let tensor = self.plan_tensor(weights, true)?;
        let field = field_name(&tensor);
        let bias_field = if biases.iter().all(Option::is_some) {
            let t = self.plan_tensor(biases.into_iter().flatten().collect(), false)?;
            let f = field_name(&t);
            paths.tensors.insert(f.clone(), t);
            Some(f)
        } else if biases.iter().any(Option::is_some) {
            return unsupported(format!(
                "linear layers {field} mix biased and unbiased parts"
            ));
        } else {
            None
        };

        // What the group's output turns into decides the epilogue and where it goes.
        let outputs: Vec<ValueId> = group.iter().map(|n| n.output).collect();
        let only_consumer = |v: ValueId| -> Option<Node> {
            match self.consumers.get(&v).map(Vec::as_slice) {
                Some([one]) => Some(one.clone()),
                _ => None,
            }
        };
        let gated = self.gated_consumer(&outputs);
        let activated = match (outputs.as_slice(), only_consumer(outputs[0])) {
            ([_], Some(c)) if bias_field.is_none() => match c.op {
                Op::Activation { activation } => Some((c, activation)),
                _ => None,
            },
            _ => None,
        };
        let residual = match (outputs.as_slice(), only_consumer(outputs[0])) {
            ([out], Some(add)) if matches!(add.op, Op::Add) && gated.is_none() => {
                let other = if add.inputs[1] == *out {
                    add.inputs[0]
                } else {
                    add.inputs[1]
                };
                Some((add, other))
            }
            _ => None,
        };
        let (epilogue, out_loc, out_rows, comment) = if let Some((act_node, activation)) = gated {
            done.insert(act_node.output);
            let loc = self.own_buffer(act_node.output);
            let comment = format!("{} = act(gate) * up, from {field}", loc.buffer);
            (matvec::Epilogue::Gated(activation), loc, rows / 2, comment)
        } else if let Some((act_node, activation)) = activated {
            done.insert(act_node.output);
            let loc = self.own_buffer(act_node.output);
            let comment = format!("{} = act({field} projection)", loc.buffer);
            (matvec::Epilogue::Activated(activation), loc, rows, comment)
        } else if let Some((add, other)) = residual {
            done.insert(add.output);
            let loc = self.loc(other)?;
            self.locs.insert(add.output, loc.clone());
            let e = if bias_field.is_some() {
                matvec::Epilogue::BiasResidual
            } else {
                matvec::Epilogue::Residual
            };
            let comment = format!("{} += {field} projection", loc.buffer);
            (e, loc, rows, comment)
        } else {
            let role = if group.len() == 1 {
                self.own_buffer(outputs[0]).buffer
            } else {
                let name = field
                    .trim_start_matches("attn_")
                    .trim_start_matches("ffn_")
                    .to_string();
                self.buffer(&name, rows);
                name
            };
            let mut column = 0;
            for &v in &outputs {
                self.locs.insert(
                    v,
                    Loc {
                        buffer: role.clone(),
                        column,
                        stride: rows,
                    },
                );
                column += self.width(v);
            }
            let e = if bias_field.is_some() {
                matvec::Epilogue::Bias
            } else {
                matvec::Epilogue::None
            };
            let loc = Loc {
                buffer: role,
                column: 0,
                stride: rows,
            };
            let comment = format!("{} = {field} projection", loc.buffer);
            (e, loc, rows, comment)
        };

        self.project(
            Projection {
                tensor: &tensor,
                bias: bias_field,
                input,
                rows: out_rows,
                out_stride: out_rows,
                epilogue,
                out: out_loc,
                comment,
            },
            paths,
        )
    }

    /// The gated activation that is the only reader of `outputs` when they
    /// are a gate and an up projection, in that order.
    pub(super) fn gated_consumer(&self, outputs: &[ValueId]) -> Option<(Node, Activation)> {
        let only_consumer = |v: ValueId| -> Option<Node> {
            match self.consumers.get(&v).map(Vec::as_slice) {
                Some([one]) => Some(one.clone()),
                _ => None,
            }
        };
        match (outputs, only_consumer(outputs[0])) {
            ([gate, up], Some(c))
                if c.inputs == [*gate, *up] && only_consumer(*up).as_ref() == Some(&c) =>
            {
                match c.op {
                    Op::GatedActivation { activation } => Some((c, activation)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The decode matvec and prefill matmul of one planned weight `tensor`:
    /// `rows` outputs per token into `out` (rows of `out_stride` floats,
    /// from its column) with `epilogue`, the bias field bound at 3.
    pub(super) fn project(
        &mut self,
        p: Projection<'_>,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let cols = self.width(p.input);
        let dtype = self.dtype_of(p.tensor);
        let field = field_name(p.tensor);
        paths.tensors.insert(field.clone(), p.tensor.to_string());
        let mut args = self.weight_args(
            p.tensor,
            &field,
            PlaneSlots::Linear,
            layer_tensor,
            &mut paths.tensors,
        );
        let mut out_args = vec![act(2, &p.out.buffer, p.out.column)];
        if let Some(b) = &p.bias {
            out_args.push(arg(3, ArgSource::LayerTensor { field: b.clone() }));
        }
        let decode = self.decode_input(p.input, dtype, p.rows, cols, p.epilogue, paths)?;
        let mut decode_args = args.clone();
        decode_args.extend(decode.args);
        decode_args.extend(out_args.iter().cloned());
        sort_args(&mut decode_args);
        let decode_comment = match decode.folded {
            Some(what) => format!("{}, {what} folded in", p.comment),
            None => p.comment.clone(),
        };
        paths
            .decode
            .push(Step::new(decode_comment, &decode.kernel, decode_args));

        let prefill_input = self.dense(p.input)?;
        let mm = self.kernel(matmul::matmul_into_columns(
            dtype,
            p.rows,
            cols,
            p.epilogue,
            p.out_stride,
        ));
        args.push(act(1, &prefill_input.buffer, prefill_input.column));
        args.extend(out_args);
        args.push(arg(7, ArgSource::Step));
        sort_args(&mut args);
        paths.prefill.push(Step::new(p.comment, &mm, args));
        Ok(())
    }
}

/// One projection for [`Lowering::project`].
pub(super) struct Projection<'a> {
    pub tensor: &'a str,
    /// The bias tensor's field (bias epilogues).
    pub bias: Option<String>,
    pub input: ValueId,
    pub rows: u64,
    pub out_stride: u64,
    pub epilogue: matvec::Epilogue,
    pub out: Loc,
    pub comment: String,
}

impl Lowering<'_> {
    /// The decode matvec and its input bindings (x at 1, a norm weight at 4,
    /// z at 6): a preceding RMSNorm or Mamba-2 gated norm is folded into the
    /// matvec when it can be, else the gated norm is dispatched first.
    fn decode_input(
        &mut self,
        input: ValueId,
        dtype: forge_ir::DType,
        rows: u64,
        cols: u64,
        epilogue: matvec::Epilogue,
        paths: &mut Paths,
    ) -> Result<DecodeInput, LowerError> {
        let weight = |field: &str| {
            arg(
                4,
                ArgSource::LayerTensor {
                    field: field.to_string(),
                },
            )
        };
        if let Some(n) = self.norms.get(&input).cloned() {
            let x = self.loc(n.input)?;
            let mv = matvec::matvec(dtype, rows, cols, epilogue, None, Some(n.eps));
            return Ok(DecodeInput {
                kernel: self.kernel(mv),
                args: vec![act(1, &x.buffer, x.column), weight(&n.weight_field)],
                folded: None,
            });
        }
        if let Some(g) = self.gated_norms.get(&input).cloned() {
            // float4 loads of y and z need 16-byte aligned bindings.
            let chunk = crate::kernels::weight_format::chunk_values(dtype, cols);
            let aligned = chunk == 1 || (g.y.column % 4 == 0 && g.z.column % 4 == 0);
            if aligned && matvec::gated_norm_fusable(dtype, cols, g.norm.group) {
                let mv = matvec::matvec_gated_norm(dtype, rows, cols, epilogue, g.norm);
                return Ok(DecodeInput {
                    kernel: self.kernel(mv),
                    args: vec![
                        act(1, &g.y.buffer, g.y.column),
                        weight(&g.weight_field),
                        act(6, &g.z.buffer, g.z.column),
                    ],
                    folded: Some(format!("the gated rms_norm of {}", g.y.buffer)),
                });
            }
            // Dispatched once; later readers find its output in its buffer.
            self.gated_norms.remove(&input);
            paths.decode.push(g.step);
        }
        let x = self.loc(input)?;
        let mv = matvec::matvec(dtype, rows, cols, epilogue, None, None);
        Ok(DecodeInput {
            kernel: self.kernel(mv),
            args: vec![act(1, &x.buffer, x.column)],
            folded: None,
        })
    }
}

/// The decode matvec of a linear layer and how it reads its input.
struct DecodeInput {
    kernel: crate::KernelInstance,
    /// Bindings of x (1) and of a folded norm's weight (4) and z (6).
    args: Vec<Arg>,
    /// What the matvec computes besides the projection, for its comment.
    folded: Option<String>,
}

fn sort_args(args: &mut [Arg]) {
    args.sort_by_key(|a| a.index);
}
