//! Lowering of state-space mixers (Mamba-1 and Mamba-2): column slices of
//! the in-projection stay where they are, the causal conv and the scans keep
//! per-layer recurrent state, and what the scans' neighbours compute is
//! fused into them: Mamba-1's dt projection, softplus, D skip and SiLU(z)
//! gate (and Jamba's RMSNorms over dt, B and C) into the selective scan; Mamba-2's dt bias, softplus and limits into
//! the SSD kernels, and the SiLU(z) gate into its grouped RMSNorm.

use std::collections::HashSet;

use forge_ir::{Activation, Node, Op, ValueId};
use serde::Serialize;

use super::{act, arg, field_name, unsupported, ArgSource, Loc, LowerError, Lowering, Paths, Step};
use crate::kernels::causal_conv1d::{causal_conv1d, gated_short_conv};
use crate::kernels::gated_rms_norm::gated_rms_norm;
use crate::kernels::matvec::GatedNorm;
use crate::kernels::selective_scan::{selective_scan, selective_scan_normed};
use crate::kernels::ssd::{ssd_decode, ssd_prefill, SsdShape};

/// One dimension of a state buffer, with what it counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateDim {
    pub size: u64,
    pub what: &'static str,
}

/// Shape of each state-space layer's recurrent state (f32, whatever the
/// weight dtype, as transformers keeps it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SsmState {
    /// The causal conv's last inputs: `[kernel - 1, channels]`.
    pub conv: Vec<StateDim>,
    /// The scan's state: `[channels, d_state]` (Mamba-1) or `[heads,
    /// head_dim, d_state]` (Mamba-2).
    pub ssm: Vec<StateDim>,
}

impl SsmState {
    pub fn conv_bytes(&self) -> u64 {
        4 * self.conv.iter().map(|d| d.size).product::<u64>()
    }

    /// 0 for a short convolution, which has no scan.
    pub fn ssm_bytes(&self) -> u64 {
        if self.ssm.is_empty() {
            return 0;
        }
        4 * self.ssm.iter().map(|d| d.size).product::<u64>()
    }

    /// One line for docs: both buffers' shapes and the bytes per layer.
    pub fn describe(&self) -> String {
        let shape = |dims: &[StateDim]| {
            let parts: Vec<String> = dims
                .iter()
                .map(|d| format!("{} {}", d.size, d.what))
                .collect();
            format!("[{}]", parts.join(", "))
        };
        format!(
            "f32 per layer: conv {}, scan {} ({} bytes)",
            shape(&self.conv),
            shape(&self.ssm),
            self.conv_bytes() + self.ssm_bytes()
        )
    }
}

fn dim(size: u64, what: &'static str) -> StateDim {
    StateDim { size, what }
}

fn producer(nodes: &[Node], v: ValueId) -> Option<&Node> {
    nodes.iter().find(|n| n.output == v)
}

/// What `v` is before a whole-row RMSNorm that produced it, with the norm's
/// weight and epsilon; `v` itself when no such norm did.
fn through_norm(nodes: &[Node], v: ValueId, width: u64) -> (ValueId, Option<(String, f32)>) {
    match producer(nodes, v) {
        Some(Node {
            op: Op::RmsNorm { weight, eps, group },
            inputs,
            ..
        }) if *group == width => (inputs[0], Some((weight.clone(), *eps))),
        _ => (v, None),
    }
}

impl Lowering<'_> {
    /// A column slice is the same rows, read from a later column.
    pub(super) fn slice(&mut self, node: &Node) -> Result<(), LowerError> {
        let Op::Slice { start, .. } = node.op else {
            unreachable!("called for slices")
        };
        let source = self.loc(node.inputs[0])?;
        self.locs.insert(
            node.output,
            Loc {
                column: source.column + start,
                ..source
            },
        );
        Ok(())
    }

    /// Adds to the state of the layer being lowered (see [`Lowering::block`]).
    fn record_state(&mut self, update: impl FnOnce(&mut SsmState)) {
        let state = self.layer_state.get_or_insert_with(|| SsmState {
            conv: Vec::new(),
            ssm: Vec::new(),
        });
        update(state);
    }

    /// A layer vector or small matrix the SSM kernels read as f32.
    fn f32_tensor(&mut self, name: &str, paths: &mut Paths) -> Result<ArgSource, LowerError> {
        let tensor = self.plan_f32(name)?;
        let field = field_name(&tensor);
        paths.tensors.insert(field.clone(), tensor);
        Ok(ArgSource::LayerTensor { field })
    }

    pub(super) fn causal_conv(
        &mut self,
        node: &Node,
        layer: u64,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let Op::CausalConv1d {
            weight,
            bias,
            kernel,
        } = &node.op
        else {
            unreachable!("called for convolutions")
        };
        let channels = self.width(node.output);
        if !crate::kernels::causal_conv1d::KERNEL_WIDTHS.contains(kernel) {
            return unsupported(format!(
                "layer {layer}: causal conv1d of width {kernel} (supported: 2 to 32)"
            ));
        }
        let input = self.loc(node.inputs[0])?;
        let out = self.own_buffer(node.output);
        let k = self.kernel(causal_conv1d(
            channels,
            *kernel,
            input.stride,
            bias.is_some(),
        ));
        let mut args = vec![
            act(0, &input.buffer, input.column),
            arg(1, self.f32_tensor(weight, paths)?),
            act(2, &out.buffer, 0),
        ];
        if let Some(b) = bias {
            args.push(arg(3, self.f32_tensor(b, paths)?));
        }
        args.extend([arg(4, ArgSource::ConvState), arg(7, ArgSource::Step)]);
        let kernel = *kernel;
        self.record_state(|s| {
            s.conv = vec![
                dim(kernel - 1, "previous inputs"),
                dim(channels, "channels"),
            ]
        });
        let step = Step::new(
            format!(
                "{} = silu(causal conv{kernel}), shifting the conv state",
                out.buffer
            ),
            &k,
            args,
        );
        paths.decode.push(step.clone());
        paths.prefill.push(step);
        Ok(())
    }

    /// LFM2's gated short convolution: B, C and x are column slices of one
    /// projection, read in place; both gating products happen in the conv.
    pub(super) fn short_conv(
        &mut self,
        node: &Node,
        layer: u64,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let Op::ShortConv {
            weight,
            bias,
            kernel,
        } = &node.op
        else {
            unreachable!("called for short convolutions")
        };
        let kernel = *kernel;
        if !crate::kernels::causal_conv1d::KERNEL_WIDTHS.contains(&kernel) {
            return unsupported(format!(
                "layer {layer}: short convolution of width {kernel} (supported: 2 to 32)"
            ));
        }
        let [b, c, x] = [0, 1, 2].map(|i| self.loc(node.inputs[i]));
        let (b, c, x) = (b?, c?, x?);
        if b.buffer != x.buffer || c.buffer != x.buffer || b.stride != x.stride {
            return unsupported(format!(
                "layer {layer}: the short convolution's B, C and x are not slices of one projection"
            ));
        }
        let channels = self.width(node.output);
        let out = self.own_buffer(node.output);
        let k = self.kernel(gated_short_conv(channels, kernel, x.stride, bias.is_some()));
        let mut args = vec![
            act(0, &x.buffer, x.column),
            arg(1, self.f32_tensor(weight, paths)?),
            act(2, &out.buffer, 0),
        ];
        if let Some(bias) = bias {
            args.push(arg(3, self.f32_tensor(bias, paths)?));
        }
        args.extend([
            arg(4, ArgSource::ConvState),
            act(5, &b.buffer, b.column),
            act(6, &c.buffer, c.column),
            arg(7, ArgSource::Step),
        ]);
        self.record_state(|s| {
            s.conv = vec![dim(kernel - 1, "previous B·x"), dim(channels, "channels")]
        });
        let step = Step::new(
            format!(
                "{} = C · conv{kernel}(B · x), shifting the conv state",
                out.buffer
            ),
            &k,
            args,
        );
        paths.decode.push(step.clone());
        paths.prefill.push(step);
        Ok(())
    }

    /// A linear layer computed inside Mamba-1's selective scan: the dt
    /// projection, read only by the scan.
    pub(super) fn is_scan_dt(&self, node: &Node) -> bool {
        match self.consumers.get(&node.output).map(Vec::as_slice) {
            Some([scan]) => {
                matches!(scan.op, Op::SelectiveScan { .. }) && scan.inputs[1] == node.output
            }
            _ => false,
        }
    }

    /// An RMSNorm computed inside Mamba-1's selective scan (Jamba's): over
    /// B or C read only by the scan, or over dt_low read only by the dt
    /// projection the scan computes.
    pub(super) fn is_scan_norm(&self, node: &Node) -> bool {
        let Op::RmsNorm { group, .. } = node.op else {
            return false;
        };
        if group != self.width(node.output) {
            return false;
        }
        match self.consumers.get(&node.output).map(Vec::as_slice) {
            Some(
                [scan @ Node {
                    op: Op::SelectiveScan { .. },
                    ..
                }],
            ) => scan.inputs[2] == node.output || scan.inputs[3] == node.output,
            Some(
                [dt @ Node {
                    op: Op::Linear { .. },
                    ..
                }],
            ) => self.is_scan_dt(dt),
            _ => false,
        }
    }

    pub(super) fn mamba_scan(
        &mut self,
        nodes: &[Node],
        node: &Node,
        layer: u64,
        done: &mut HashSet<ValueId>,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let Op::SelectiveScan { a, d, d_state } = &node.op else {
            unreachable!("called for selective scans")
        };
        let d_state = *d_state;
        let [x, dt, b, c] = node.inputs[..] else {
            return unsupported(format!(
                "layer {layer}: a selective scan without x, dt, B and C"
            ));
        };
        let fail = |what: &str| unsupported(format!("layer {layer}: selective scan {what}"));
        let Some(Node {
            op:
                Op::Linear {
                    weight: dt_weight,
                    bias: Some(dt_bias),
                },
            inputs: dt_inputs,
            ..
        }) = producer(nodes, dt)
        else {
            return fail("whose dt is not a biased linear projection");
        };
        let dt_rank = self.width(dt_inputs[0]);
        // Jamba's norms: all three or none, read by the scan from the x projection's columns.
        let (dt_low, dt_norm) = through_norm(nodes, dt_inputs[0], dt_rank);
        let (b, b_norm) = through_norm(nodes, b, d_state);
        let (c, c_norm) = through_norm(nodes, c, d_state);
        let norms = match (dt_norm, b_norm, c_norm) {
            (None, None, None) => None,
            (Some((dt_w, eps)), Some((b_w, b_eps)), Some((c_w, c_eps)))
                if eps == b_eps && eps == c_eps =>
            {
                Some((eps, [dt_w, b_w, c_w]))
            }
            _ => return fail("with RMSNorms over some but not all of dt, B and C"),
        };
        let (low, bl, cl) = (self.loc(dt_low)?, self.loc(b)?, self.loc(c)?);
        let adjacent = low.buffer == bl.buffer
            && bl.buffer == cl.buffer
            && bl.column == low.column + dt_rank
            && cl.column == bl.column + d_state
            && low.stride == dt_rank + 2 * d_state;
        if !adjacent {
            return fail("whose dt, B and C are not the columns of one projection");
        }
        let gate = match self.consumers.get(&node.output).map(Vec::as_slice) {
            Some(
                [g @ Node {
                    op:
                        Op::GatedActivation {
                            activation: Activation::Silu,
                        },
                    ..
                }],
            ) if g.inputs[1] == node.output => g.clone(),
            _ => return fail("whose output is not gated by SiLU(z)"),
        };
        let channels = self.width(x);
        let xl = self.dense(x)?;
        let z = self.loc(gate.inputs[0])?;
        done.insert(gate.output);
        let out = self.own_buffer(gate.output);
        let k = self.kernel(match &norms {
            Some((eps, _)) => selective_scan_normed(channels, d_state, dt_rank, z.stride, *eps),
            None => selective_scan(channels, d_state, dt_rank, z.stride),
        });
        let mut args = vec![
            act(0, &xl.buffer, xl.column),
            act(1, &low.buffer, low.column),
            act(2, &z.buffer, z.column),
            act(3, &out.buffer, 0),
            arg(4, self.f32_tensor(dt_weight, paths)?),
            arg(5, self.f32_tensor(dt_bias, paths)?),
            arg(6, self.f32_tensor(a, paths)?),
            arg(7, ArgSource::Step),
            arg(8, self.f32_tensor(d, paths)?),
            arg(9, ArgSource::ScanState),
        ];
        if let Some((_, weights)) = &norms {
            for (index, w) in (10..).zip(weights) {
                args.push(arg(index, self.f32_tensor(w, paths)?));
            }
        }
        self.record_state(|s| s.ssm = vec![dim(channels, "channels"), dim(d_state, "states")]);
        let fused = if norms.is_some() {
            "dt/B/C rms_norms, dt projection, softplus, D skip, SiLU(z) gate fused"
        } else {
            "dt projection, softplus, D skip, SiLU(z) gate fused"
        };
        let step = Step::new(
            format!("{} = selective scan ({fused})", out.buffer),
            &k,
            args,
        );
        paths.decode.push(step.clone());
        paths.prefill.push(step);
        Ok(())
    }

    pub(super) fn mamba2_scan(
        &mut self,
        node: &Node,
        layer: u64,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let Op::SsdScan {
            a,
            d,
            dt_bias,
            heads,
            head_dim,
            groups,
            d_state,
            chunk_size,
            dt_limit,
        } = &node.op
        else {
            unreachable!("called for SSD scans")
        };
        let [x, dt, b, c] = node.inputs[..] else {
            return unsupported(format!("layer {layer}: an SSD scan without x, dt, B and C"));
        };
        let (xl, bl, cl, dl) = (self.loc(x)?, self.loc(b)?, self.loc(c)?, self.loc(dt)?);
        let inner = heads * head_dim;
        let bc = groups * d_state;
        let adjacent = xl.buffer == bl.buffer
            && bl.buffer == cl.buffer
            && bl.column == xl.column + inner
            && cl.column == bl.column + bc
            && xl.stride == inner + 2 * bc;
        if !adjacent {
            return unsupported(format!(
                "layer {layer}: SSD scan whose x, B and C are not the columns of one convolution"
            ));
        }
        if *groups == 0 || !heads.is_multiple_of(*groups) {
            return unsupported(format!(
                "layer {layer}: {heads} heads do not split into {groups} groups"
            ));
        }
        let shape = SsdShape {
            heads: *heads,
            head_dim: *head_dim,
            d_state: *d_state,
            groups: *groups,
            chunk: *chunk_size,
            dt_stride: dl.stride,
            dt_limit: *dt_limit,
        };
        if crate::kernels::ssd::prefill_chunk(*chunk_size, *d_state).is_none() {
            return unsupported(format!(
                "layer {layer}: {d_state} SSM states do not fit threadgroup memory"
            ));
        }
        let out = self.own_buffer(node.output);
        let mut args = vec![
            act(0, &xl.buffer, xl.column),
            act(1, &dl.buffer, dl.column),
            act(2, &out.buffer, 0),
            arg(3, self.f32_tensor(a, paths)?),
            arg(4, self.f32_tensor(d, paths)?),
            arg(5, self.f32_tensor(dt_bias, paths)?),
            arg(6, ArgSource::ScanState),
        ];
        let (heads, head_dim, d_state) = (*heads, *head_dim, *d_state);
        self.record_state(|s| {
            s.ssm = vec![
                dim(heads, "heads"),
                dim(head_dim, "channels"),
                dim(d_state, "states"),
            ]
        });
        let decode = self.kernel(ssd_decode(&shape));
        paths.decode.push(Step::new(
            format!(
                "{} = one SSD step (dt bias, softplus, D skip fused)",
                out.buffer
            ),
            &decode,
            args.clone(),
        ));
        let prefill = self.kernel(ssd_prefill(&shape));
        args.push(arg(7, ArgSource::Step));
        paths.prefill.push(Step::new(
            format!("{} = chunked SSD scan over the pass", out.buffer),
            &prefill,
            args,
        ));
        Ok(())
    }

    pub(super) fn gated_norm(&mut self, node: &Node, paths: &mut Paths) -> Result<(), LowerError> {
        let Op::GatedRmsNorm {
            weight,
            eps,
            group,
            norm_before_gate,
        } = &node.op
        else {
            unreachable!("called for gated norms")
        };
        let width = self.width(node.output);
        if *group == 0 || !width.is_multiple_of(*group) {
            return unsupported(format!(
                "gated RMSNorm {weight}: groups of {group} do not divide {width} columns"
            ));
        }
        let y = self.dense(node.inputs[0])?;
        let z = self.loc(node.inputs[1])?;
        let out = self.own_buffer(node.output);
        let k = self.kernel(gated_rms_norm(
            width,
            *group,
            *eps,
            z.stride,
            *norm_before_gate,
        ));
        let weight_field = match self.f32_tensor(weight, paths)? {
            ArgSource::LayerTensor { field } => field,
            _ => unreachable!("f32_tensor makes layer tensors"),
        };
        let step = Step::new(
            format!(
                "{} = grouped rms_norm of {} gated by SiLU(z)",
                out.buffer, y.buffer
            ),
            &k,
            vec![
                act(0, &y.buffer, y.column),
                arg(
                    1,
                    ArgSource::LayerTensor {
                        field: weight_field.clone(),
                    },
                ),
                act(2, &out.buffer, 0),
                act(3, &z.buffer, z.column),
                arg(7, ArgSource::Step),
            ],
        );
        paths.prefill.push(step.clone());
        // Decode: the out projection's matvec computes the norm itself where
        // it can (it decides, knowing its dtype), else dispatches this step.
        let feeds_linears = self
            .consumers
            .get(&node.output)
            .is_some_and(|c| c.iter().all(|n| matches!(n.op, Op::Linear { .. })));
        if feeds_linears {
            self.gated_norms.insert(
                node.output,
                FusedGatedNorm {
                    y,
                    z,
                    weight_field,
                    norm: GatedNorm {
                        eps: *eps,
                        group: *group,
                        norm_before_gate: *norm_before_gate,
                    },
                    step,
                },
            );
        } else {
            paths.decode.push(step);
        }
        Ok(())
    }
}

/// A Mamba-2 gated norm the decode matvecs reading its output may fold in.
#[derive(Clone, Debug)]
pub(super) struct FusedGatedNorm {
    pub y: Loc,
    pub z: Loc,
    pub weight_field: String,
    pub norm: GatedNorm,
    /// Its own dispatch, for a matvec that cannot fold it in.
    pub step: Step,
}
