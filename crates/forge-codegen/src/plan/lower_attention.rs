//! Lowering of an attention node: the per-head q/k norms and rotations that
//! feed it become one `rope_store` dispatch (which also fills the KV cache),
//! followed by the decode or prefill attention kernel.

use forge_ir::{Node, Op, RopeConfig, RopeLayout, TensorTransform, ValueId};

use crate::kernels::attention_decode::AttentionShape;

use super::{
    act, arg, attention_decode, attention_prefill, field_name, rope_store, unsupported, ArgSource,
    AttentionCache, LowerError, Lowering, Paths, Step,
};

/// A rotated input of the attention, traced back to the projection.
struct Rotated {
    rope: RopeConfig,
    /// Per-head RMSNorm before the rotation: (weight tensor, eps).
    /// The RMSNorm before the rotation: weight, eps and its group.
    norm: Option<(String, f32, u64)>,
    /// The projection's output.
    raw: ValueId,
}

fn producer(nodes: &[Node], v: ValueId) -> Option<&Node> {
    nodes.iter().find(|n| n.output == v)
}

fn rotated(nodes: &[Node], v: ValueId, what: &str) -> Result<Rotated, LowerError> {
    let Some(Node {
        op: Op::Rope { rope, .. },
        inputs,
        ..
    }) = producer(nodes, v)
    else {
        return unsupported(format!("attention {what} is not rotated by RoPE"));
    };
    let input = inputs[0];
    match producer(nodes, input) {
        Some(Node {
            op: Op::RmsNorm { weight, eps, group },
            inputs,
            ..
        }) => Ok(Rotated {
            rope: rope.clone(),
            norm: Some((weight.clone(), *eps, *group)),
            raw: inputs[0],
        }),
        _ => Ok(Rotated {
            rope: rope.clone(),
            norm: None,
            raw: input,
        }),
    }
}

impl Lowering<'_> {
    pub(super) fn attention(
        &mut self,
        nodes: &[Node],
        node: &Node,
        layer: u64,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let Op::Attention {
            heads,
            kv_heads,
            head_dim,
            scale,
            window,
            softcap,
        } = node.op.clone()
        else {
            unreachable!("called for attention nodes")
        };
        let q = rotated(nodes, node.inputs[0], "query")?;
        let k = rotated(nodes, node.inputs[1], "key")?;
        let v = node.inputs[2];
        let (ql, kl, vl) = (self.loc(q.raw)?, self.loc(k.raw)?, self.loc(v)?);
        let (qw, kw) = (heads * head_dim, kv_heads * head_dim);
        if ql.column != 0
            || kl.buffer != ql.buffer
            || kl.column != qw
            || vl.buffer != ql.buffer
            || vl.column != qw + kw
        {
            return unsupported(format!(
                "layer {layer}: attention needs q, k and v from one fused projection"
            ));
        }
        // GGUF llama checkpoints store q/k rows for interleaved rotation; keep them
        // when whole heads rotate.
        let mut rope = q.rope.clone();
        if let Some(Node {
            op: Op::Linear { weight, .. },
            ..
        }) = producer(nodes, q.raw)
        {
            let kept = self.interleaved_rope_kept()
                && self
                    .spec(weight)?
                    .transforms
                    .iter()
                    .any(|t| matches!(t, TensorTransform::UnpermuteRopeRows { .. }));
            if kept {
                rope.layout = RopeLayout::Interleaved;
            }
        }
        let cache = AttentionCache {
            kv_heads,
            head_dim,
            dtype: self.kv_dtype,
        };
        match &self.cache {
            Some(c) if *c != cache => {
                return unsupported(format!(
                    "layer {layer}: KV cache shape differs between layers"
                ))
            }
            _ => self.cache = Some(cache),
        }

        let mut rope_args = vec![
            act(0, &ql.buffer, 0),
            arg(1, ArgSource::KeyCache),
            arg(2, ArgSource::ValueCache),
        ];
        let qk_eps = match (&q.norm, &k.norm) {
            (Some((qn, eps, qg)), Some((kn, _, kg))) => {
                // rope_store normalises each head on its own.
                if *qg != head_dim || *kg != head_dim {
                    return unsupported(format!(
                        "layer {layer}: q/k norms over groups of {qg} and {kg}, not heads of {head_dim}"
                    ));
                }
                for (index, weight) in [(3, qn), (4, kn)] {
                    let t = self.plan_tensor(vec![weight.clone()], false)?;
                    let field = field_name(&t);
                    paths.tensors.insert(field.clone(), t);
                    rope_args.push(arg(index, ArgSource::LayerTensor { field }));
                }
                Some(*eps)
            }
            (None, None) => None,
            _ => return unsupported(format!("layer {layer}: only one of q and k is normalised")),
        };
        rope_args.push(arg(7, ArgSource::Step));
        let rs = self.kernel(rope_store::rope_store(
            heads,
            kv_heads,
            head_dim,
            &rope,
            qk_eps,
            self.kv_dtype,
            self.context,
        ));
        let rope_step = Step::new(
            "rotate q and k, append k and v to the cache",
            &rs,
            rope_args,
        );
        paths.decode.push(rope_step.clone());
        paths.prefill.push(rope_step);

        let out = self.own_buffer(node.output);
        let args = |with_scratch: bool| {
            let mut a = vec![
                act(0, &ql.buffer, 0),
                arg(1, ArgSource::KeyCache),
                arg(2, ArgSource::ValueCache),
                act(3, &out.buffer, 0),
            ];
            if with_scratch {
                a.push(arg(4, ArgSource::AttentionScratch));
            }
            a.push(arg(7, ArgSource::Step));
            a
        };
        let shape = AttentionShape {
            q_heads: heads,
            kv_heads,
            head_dim,
            context: self.context,
            scale,
            window,
            softcap,
            kv_dtype: self.kv_dtype,
        };
        let decode = attention_decode::attention_decode(&shape);
        self.scratch = self.scratch.max(decode.scratch_bytes);
        let pass = self.kernel(decode.pass);
        let reduce = self.kernel(decode.reduce);
        let pass_step = Step::new(
            "attention over the cache, split over positions",
            &pass,
            args(true),
        );
        // The reduce runs only when pass 1 had more than one split (grid y).
        let mut combine = Step::new("combine the splits", &reduce, args(true));
        combine.condition = Some(format!("{} > 1", pass_step.grid[1]));
        paths.decode.push(pass_step);
        paths.decode.push(combine);
        let prefill = self.kernel(attention_prefill::attention_prefill(&shape));
        paths.prefill.push(Step::new(
            "causal attention of the chunk over the cache",
            &prefill,
            args(false),
        ));
        Ok(())
    }
}
