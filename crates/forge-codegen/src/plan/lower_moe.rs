//! Lowering of a mixture of experts: the router and the experts (with the
//! shared expert, when there is one) become
//! - decode: the router, one gate|up matvec over the chosen experts (a
//!   threadgroup row per slot) and one down matvec that sums the slots'
//!   weighted outputs into the residual stream; the shared expert is a dense
//!   gate|up matvec and a one-slot down matvec weighted by its gate;
//! - prefill: the router, the gate|up and down matmuls grouped by expert
//!   (each expert multiplies only the tokens routed to it), and one
//!   combine that adds every token's weighted expert outputs to the residual.
//!
//! The experts' matrices are stacked in one tensor per projection, expert
//! after expert (gate then up rows for the gate|up one; when gate and up
//! differ in format, one stack each and two dispatches, the up one
//! multiplying act(gate) in place), so the kernels find
//! an expert's rows from its id in the routing row; the router's ids and
//! weights never leave the GPU.

use std::collections::HashSet;

use forge_ir::{Activation, DType, Node, Op, ValueId};

use super::super::weights::PlannedTensor;
use super::{
    act, arg, field_name, layer_tensor, unsupported, Arg, ArgSource, Loc, LowerError, Lowering,
    Paths, Step, PREFILL_CHUNK,
};
use crate::kernels::matmul::{matmul, matmul_experts, ExpertRows};
use crate::kernels::matvec::{matvec, matvec_experts, Epilogue, ExpertMode, Experts};
use crate::kernels::moe::{moe_combine, moe_router, routing_width, SharedSlot};
use crate::kernels::weight_format::PlaneSlots;

/// Where the mixture's weights are and how they are read.
struct MixtureTensors {
    router: String,
    gate_up: GateUp,
    down: String,
    /// The shared expert's gate|up and down.
    shared: Option<(GateUp, String)>,
}

/// The gate and up projections of experts: one stacked weight when they
/// share a format, else two, applied one after the other.
enum GateUp {
    Fused(String),
    Split { gate: String, up: String },
}

impl GateUp {
    fn tensors(&self) -> Vec<&String> {
        match self {
            GateUp::Fused(t) => vec![t],
            GateUp::Split { gate, up } => vec![gate, up],
        }
    }

    /// Each weight with the epilogue that makes act(gate)·up of it: the
    /// gated one, or the gate projection then the up projection
    /// multiplying act(gate) in place.
    fn projections(&self, activation: Activation) -> Vec<(&String, Epilogue, &'static str)> {
        match self {
            GateUp::Fused(t) => vec![(t, Epilogue::Gated(activation), "act(gate) * up")],
            GateUp::Split { gate, up } => vec![
                (gate, Epilogue::None, "the gate projection"),
                (up, Epilogue::GateProduct(activation), "act(gate) * up"),
            ],
        }
    }
}

impl Lowering<'_> {
    /// The mixture `node` (an `MoeExperts`) with the router that feeds it;
    /// its output must only be added to the residual stream, which the
    /// down projections update in place.
    pub(super) fn mixture(
        &mut self,
        nodes: &[Node],
        node: &Node,
        done: &mut HashSet<ValueId>,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let Op::MoeExperts {
            gate,
            up,
            down,
            activation,
            shared,
        } = &node.op
        else {
            unreachable!("called for MoeExperts");
        };
        let router = nodes
            .iter()
            .find(|n| n.output == node.inputs[1])
            .filter(|n| n.inputs[0] == node.inputs[0]);
        let Some(Node {
            op:
                Op::MoeRouter {
                    weight: router_weight,
                    experts,
                    top_k,
                    renormalize,
                },
            ..
        }) = router
        else {
            return unsupported("a mixture of experts not routed from its own input");
        };
        let (experts, top_k) = (*experts, *top_k);
        let residual = match self.consumers.get(&node.output).map(Vec::as_slice) {
            Some([add]) if matches!(add.op, Op::Add) => {
                let other = if add.inputs[1] == node.output {
                    add.inputs[0]
                } else {
                    add.inputs[1]
                };
                Some((add.output, other))
            }
            _ => None,
        };
        let Some((sum, stream)) = residual else {
            return unsupported(
                "a mixture of experts whose output is not added to the residual stream",
            );
        };
        done.insert(sum);
        let stream = self.dense(stream)?;
        self.locs.insert(sum, stream.clone());

        let hidden = self.width(node.inputs[0]);
        let inter = self.spec(&gate[0])?.shape[0];
        let slot = match shared {
            None => SharedSlot::None,
            Some(s) if s.gate_inp.is_some() => SharedSlot::Gated,
            Some(_) => SharedSlot::Ungated,
        };
        let layer = layer_prefix(&gate[0]);
        let t = self.mixture_tensors(&layer, router_weight, gate, up, down, shared)?;
        let mut names = vec![&t.router, &t.down];
        names.extend(t.gate_up.tensors());
        if let Some((g, d)) = &t.shared {
            names.extend(g.tensors());
            names.push(d);
        }
        for name in names {
            paths.tensors.insert(field_name(name), name.clone());
        }

        let h = self.dense(node.inputs[0])?;
        let width_of_routing = routing_width(top_k, slot != SharedSlot::None);
        self.buffer("routing", width_of_routing);
        let routing = |index| act(index, "routing", 0);
        let route = self.kernel(moe_router(experts, hidden, top_k, *renormalize, slot));
        let route_step = Step::new(
            format!(
                "routing = the top {top_k} of {experts} experts for {}",
                h.buffer
            ),
            &route,
            vec![
                arg(0, layer_tensor(field_name(&t.router))),
                act(1, &h.buffer, h.column),
                routing(2),
                arg(7, ArgSource::Step),
            ],
        );
        paths.decode.push(route_step.clone());
        paths.prefill.push(route_step);

        let routed = Experts {
            count: experts,
            slots: top_k,
            routing_width: width_of_routing,
            id_column: 0,
        };
        let shared_slots = u64::from(slot != SharedSlot::None);
        let out_slots = top_k + shared_slots;
        self.buffer("moe_act", top_k * inter);
        self.buffer("moe_out", out_slots * hidden);

        // The chosen experts' gate|up: decode per slot, prefill per expert over its tokens.
        for (tensor, epilogue, what) in t.gate_up.projections(*activation) {
            let dtype = self.dtype_of(tensor);
            let k = self.kernel(matvec_experts(
                dtype,
                inter,
                hidden,
                epilogue,
                routed,
                ExpertMode::Slot,
            ));
            let mut args = self.tensor_args(tensor, paths);
            args.extend([
                act(1, &h.buffer, h.column),
                act(2, "moe_act", 0),
                routing(8),
            ]);
            paths.decode.push(step(
                format!("moe_act = {what} of each chosen expert, from {}", h.buffer),
                &k,
                args,
            ));
            let k = self.kernel(matmul_experts(
                dtype,
                inter,
                hidden,
                epilogue,
                routed,
                ExpertMode::Slot,
                ExpertRows {
                    out_slots: top_k,
                    out_slot: 0,
                },
                PREFILL_CHUNK,
            ));
            let mut args = self.tensor_args(tensor, paths);
            args.extend([
                act(1, &h.buffer, h.column),
                act(2, "moe_act", 0),
                arg(7, ArgSource::Step),
                routing(8),
            ]);
            paths.prefill.push(step(
                format!("moe_act = {what} of each expert over its tokens"),
                &k,
                args,
            ));
        }
        let down = ExpertDown {
            tensor: &t.down,
            input: "moe_act",
            experts: routed,
            rows: ExpertRows {
                out_slots,
                out_slot: 0,
            },
            what: "the chosen experts' down projections",
        };
        self.expert_down(down, &stream, paths);

        if let Some((shared_gate_up, shared_down)) = &t.shared {
            // A dense gate|up, and its down through a one-expert, one-slot
            // group weighted by the routing row's last pair (the gate, or 1).
            let width = self
                .spec(&shared.as_ref().expect("a shared expert").gate)?
                .shape[0];
            self.buffer("shared_act", width);
            for (tensor, epilogue, what) in shared_gate_up.projections(*activation) {
                let dtype = self.dtype_of(tensor);
                let k = self.kernel(matvec(dtype, width, hidden, epilogue, None, None));
                let mut args = self.tensor_args(tensor, paths);
                args.extend([act(1, &h.buffer, h.column), act(2, "shared_act", 0)]);
                let comment = format!(
                    "shared_act = {what} of the shared expert, from {}",
                    h.buffer
                );
                paths.decode.push(step(comment.clone(), &k, args));
                let k = self.kernel(matmul(dtype, width, hidden, epilogue, None));
                let mut args = self.tensor_args(tensor, paths);
                args.extend([
                    act(1, &h.buffer, h.column),
                    act(2, "shared_act", 0),
                    arg(7, ArgSource::Step),
                ]);
                paths.prefill.push(step(comment, &k, args));
            }
            let down = ExpertDown {
                tensor: shared_down,
                input: "shared_act",
                experts: Experts {
                    count: 1,
                    slots: 1,
                    routing_width: width_of_routing,
                    id_column: 2 * top_k,
                },
                rows: ExpertRows {
                    out_slots,
                    out_slot: top_k,
                },
                what: "the shared expert's down projection",
            };
            self.expert_down(down, &stream, paths);
        }
        let k = self.kernel(moe_combine(hidden, out_slots));
        paths.prefill.push(step(
            format!(
                "{} += the weighted expert outputs in moe_out",
                stream.buffer
            ),
            &k,
            vec![
                act(0, "moe_out", 0),
                act(2, &stream.buffer, stream.column),
                arg(7, ArgSource::Step),
            ],
        ));
        Ok(())
    }

    /// A down projection through experts: decode adds the slots' weighted
    /// outputs to the residual stream in place; prefill writes them to their
    /// rows of `moe_out` for the combine.
    fn expert_down(&mut self, d: ExpertDown<'_>, stream: &Loc, paths: &mut Paths) {
        let spec = self.weights.get(d.tensor).expect("planned").clone();
        let (hidden, inter) = (spec.shape[0] / d.experts.count, spec.shape[1]);
        let k = self.kernel(matvec_experts(
            spec.dtype,
            hidden,
            inter,
            Epilogue::Residual,
            d.experts,
            ExpertMode::Sum,
        ));
        let mut args = self.tensor_args(d.tensor, paths);
        args.extend([
            act(1, d.input, 0),
            act(2, &stream.buffer, stream.column),
            act(8, "routing", 0),
        ]);
        paths.decode.push(step(
            format!("{} += {}, weighted", stream.buffer, d.what),
            &k,
            args,
        ));
        let k = self.kernel(matmul_experts(
            spec.dtype,
            hidden,
            inter,
            Epilogue::None,
            d.experts,
            ExpertMode::Sum,
            d.rows,
            PREFILL_CHUNK,
        ));
        let mut args = self.tensor_args(d.tensor, paths);
        args.extend([
            act(1, d.input, 0),
            act(2, "moe_out", 0),
            arg(7, ArgSource::Step),
            act(8, "routing", 0),
        ]);
        paths.prefill.push(step(
            format!("moe_out = {} of the pass's tokens, weighted", d.what),
            &k,
            args,
        ));
    }

    /// Plans the router (f32, the shared expert's gate as an extra row) and
    /// the stacked experts' tensors.
    fn mixture_tensors(
        &mut self,
        layer: &str,
        router: &str,
        gate: &[String],
        up: &[String],
        down: &[String],
        shared: &Option<forge_ir::SharedExpert>,
    ) -> Result<MixtureTensors, LowerError> {
        let mut router_parts = vec![router.to_string()];
        router_parts.extend(shared.as_ref().and_then(|s| s.gate_inp.clone()));
        let router_name = if router_parts.len() == 1 {
            router.to_string()
        } else {
            format!("{layer}.ffn_gate_inp_with_shexp.weight")
        };
        self.plan_f32_rows(&router_name, router_parts)?;
        let gate_up = self.gate_up(
            format!("{layer}.ffn_gate_up_exps.weight"),
            [
                format!("{layer}.ffn_gate_exps.weight"),
                format!("{layer}.ffn_up_exps.weight"),
            ],
            gate,
            up,
        )?;
        let down =
            self.plan_tensor_as(format!("{layer}.ffn_down_exps.weight"), down.to_vec(), true)?;
        let shared = match shared {
            Some(s) => Some((
                self.gate_up(
                    format!("{layer}.ffn_gate_up_shexp.weight"),
                    [s.gate.clone(), s.up.clone()],
                    std::slice::from_ref(&s.gate),
                    std::slice::from_ref(&s.up),
                )?,
                self.plan_tensor(vec![s.down.clone()], true)?,
            )),
            None => None,
        };
        Ok(MixtureTensors {
            router: router_name,
            gate_up,
            down,
            shared,
        })
    }

    /// The experts' gate and up weights (`gate[e]`, `up[e]` per expert) as
    /// one stack `fused` (gate then up rows per expert) when they share a
    /// format, else as the two stacks `split`.
    fn gate_up(
        &mut self,
        fused: String,
        split: [String; 2],
        gate: &[String],
        up: &[String],
    ) -> Result<GateUp, LowerError> {
        let mut parts = gate.to_vec();
        parts.extend_from_slice(up);
        if !self.formats_differ(&parts)? {
            let stacked = gate
                .iter()
                .zip(up)
                .flat_map(|(g, u)| [g.clone(), u.clone()])
                .collect();
            return Ok(GateUp::Fused(self.plan_tensor_as(fused, stacked, true)?));
        }
        let [gate_name, up_name] = split;
        let gate_name = if gate.len() == 1 {
            gate[0].clone()
        } else {
            gate_name
        };
        let up_name = if up.len() == 1 {
            up[0].clone()
        } else {
            up_name
        };
        Ok(GateUp::Split {
            gate: self.plan_tensor_as(gate_name, gate.to_vec(), true)?,
            up: self.plan_tensor_as(up_name, up.to_vec(), true)?,
        })
    }

    /// An f32 matrix made of the rows of `parts`, whatever dtype the rest of
    /// the weights get: routing decisions are made on exact logits.
    fn plan_f32_rows(&mut self, name: &str, parts: Vec<String>) -> Result<(), LowerError> {
        if self.weights.get(name).is_some() {
            return Ok(());
        }
        let mut rows = 0;
        let mut cols = 0;
        for part in &parts {
            let shape = &self.spec(part)?.shape;
            let [r, c] = shape[..] else {
                return unsupported(format!("router tensor {part} has shape {shape:?}"));
            };
            rows += r;
            cols = c;
        }
        self.weights.tensors.push(PlannedTensor {
            name: name.to_string(),
            dtype: DType::F32,
            shape: vec![rows, cols],
            parts,
            keep_interleaved_rope: false,
        });
        Ok(())
    }

    /// The bindings of a layer matrix: itself at 0 and its scales at 5.
    fn tensor_args(&self, tensor: &str, paths: &mut Paths) -> Vec<Arg> {
        self.weight_args(
            tensor,
            &field_name(tensor),
            PlaneSlots::Linear,
            layer_tensor,
            &mut paths.tensors,
        )
    }
}

/// One down projection through experts (see [`Lowering::expert_down`]).
struct ExpertDown<'a> {
    tensor: &'a str,
    /// The activation buffer of its input rows.
    input: &'a str,
    experts: Experts,
    /// Where its prefill rows go in `moe_out`.
    rows: ExpertRows,
    /// What it is, for the comments.
    what: &'a str,
}

/// `blk.3.ffn_gate.0.weight` -> `blk.3`.
fn layer_prefix(tensor: &str) -> String {
    tensor.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// A step with its arguments in binding order.
fn step(comment: impl Into<String>, kernel: &crate::KernelInstance, mut args: Vec<Arg>) -> Step {
    args.sort_by_key(|a| a.index);
    Step::new(comment, kernel, args)
}
