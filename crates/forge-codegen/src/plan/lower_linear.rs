//! Lowering of linear layers: the layers reading one input become one fused
//! weight (Q|K|V, gate|up), and what consumes the result picks the epilogue:
//! the gated activation, an in-place residual add, or a plain projection.
//! A preceding RMSNorm is folded into the decode matvec.

use std::collections::HashSet;

use forge_ir::{Node, Op, ValueId};

use super::{
    act, arg, field_name, layer_tensor, matmul, matvec, unsupported, Arg, ArgSource, Loc,
    LowerError, Lowering, Paths, Step,
};

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
        let cols = self.width(input);
        let tensor = self.plan_tensor(weights, true)?;
        let field = field_name(&tensor);
        paths.tensors.insert(field.clone(), tensor.clone());
        let dtype = self.dtype_of(&tensor);
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
        let gated = match (outputs.as_slice(), only_consumer(outputs[0])) {
            ([gate, up], Some(c))
                if c.inputs == [*gate, *up] && only_consumer(*up).as_ref() == Some(&c) =>
            {
                match c.op {
                    Op::GatedActivation { activation } => Some((c, activation)),
                    _ => None,
                }
            }
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

        let mut args = self.weight_args(&tensor, &field, 5, layer_tensor, &mut paths.tensors);
        let mut out_args = vec![act(2, &out_loc.buffer, out_loc.column)];
        if let Some(b) = &bias_field {
            out_args.push(arg(3, ArgSource::LayerTensor { field: b.clone() }));
        }
        // Decode: fold a preceding RMSNorm into the matvec.
        let norm = self.norms.get(&input).cloned();
        let (decode_input, prenorm) = match &norm {
            Some(n) => (self.loc(n.input)?, Some(n.eps)),
            None => (self.loc(input)?, None),
        };
        let mv = self.kernel(matvec::matvec(
            dtype, out_rows, cols, epilogue, None, prenorm,
        ));
        let mut decode_args = args.clone();
        decode_args.push(act(1, &decode_input.buffer, decode_input.column));
        decode_args.extend(out_args.iter().cloned());
        if let Some(n) = &norm {
            decode_args.push(arg(
                4,
                ArgSource::LayerTensor {
                    field: n.weight_field.clone(),
                },
            ));
        }
        sort_args(&mut decode_args);
        paths
            .decode
            .push(Step::new(comment.clone(), &mv, decode_args));

        let prefill_input = self.dense(input)?;
        let mm = self.kernel(matmul::matmul(dtype, out_rows, cols, epilogue, None));
        args.push(act(1, &prefill_input.buffer, prefill_input.column));
        args.extend(out_args);
        args.push(arg(7, ArgSource::Step));
        sort_args(&mut args);
        paths.prefill.push(Step::new(comment, &mm, args));
        Ok(())
    }
}

fn sort_args(args: &mut [Arg]) {
    args.sort_by_key(|a| a.index);
}
