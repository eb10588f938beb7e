//! Lowering of the epilogue: final RMSNorm and LM head, for the last token
//! (decode, and the end of a prefill) and for every token (logits mode).

use std::collections::BTreeMap;

use forge_ir::Op;

use super::{
    act, arg, field_name, matmul, matvec, model_tensor, rms_norm, unsupported, ArgSource,
    LowerError, Lowering, Row, Step,
};
use crate::kernels::weight_format::PlaneSlots;

pub(super) struct Epilogue {
    pub last: Vec<Step>,
    pub all: Vec<Step>,
    pub tensors: BTreeMap<String, String>,
}

impl Lowering<'_> {
    /// Returns the last-token steps, the all-token steps and the model tensor fields.
    pub(super) fn epilogue(&mut self) -> Result<Epilogue, LowerError> {
        let nodes = &self.model.graph.epilogue;
        let [norm, head] = nodes.as_slice() else {
            return unsupported("the graph does not end in a final norm and an LM head");
        };
        let (
            Op::RmsNorm {
                weight: norm_weight,
                eps,
                ..
            },
            Op::LmHead { weight, softcap },
        ) = (&norm.op, &head.op)
        else {
            return unsupported("the graph does not end in a final norm and an LM head");
        };
        if head.inputs != [norm.output] {
            return unsupported("the LM head does not read the final norm");
        }
        let x = self.loc(norm.inputs[0])?;
        let hidden = self.width(norm.inputs[0]);
        let vocab = self.width(head.output);
        let norm_tensor = self.plan_tensor(vec![norm_weight.clone()], false)?;
        let head_tensor = self.plan_tensor(vec![weight.clone()], true)?;
        let dtype = self.dtype_of(&head_tensor);
        let mut tensors = BTreeMap::new();
        let (norm_field, head_field) = (field_name(&norm_tensor), field_name(&head_tensor));
        tensors.insert(norm_field.clone(), norm_tensor);
        tensors.insert(head_field.clone(), head_tensor);
        self.buffer("logits", vocab);

        let mv = self.kernel(matvec::matvec(
            dtype,
            vocab,
            hidden,
            matvec::Epilogue::None,
            *softcap,
            Some(*eps),
        ));
        let head_args = self.weight_args(
            &tensors[&head_field].clone(),
            &head_field,
            PlaneSlots::Linear,
            model_tensor,
            &mut tensors,
        );
        let mut last_args = head_args.clone();
        last_args.extend([
            arg(
                1,
                ArgSource::Activation {
                    buffer: x.buffer.clone(),
                    column: x.column,
                    row: Row::Last,
                },
            ),
            act(2, "logits", 0),
            arg(
                4,
                ArgSource::ModelTensor {
                    field: norm_field.clone(),
                },
            ),
        ]);
        last_args.sort_by_key(|a| a.index);
        let last = vec![Step::new(
            "logits of the last token (final norm fused)",
            &mv,
            last_args,
        )];

        self.buffer("final_norm", hidden);
        let rn = self.kernel(rms_norm::rms_norm(hidden, hidden, *eps));
        let mm = self.kernel(matmul::matmul(
            dtype,
            vocab,
            hidden,
            matvec::Epilogue::None,
            *softcap,
        ));
        let all = vec![
            Step::new(
                "final norm of every token",
                &rn,
                vec![
                    act(0, &x.buffer, x.column),
                    arg(1, ArgSource::ModelTensor { field: norm_field }),
                    act(2, "final_norm", 0),
                    arg(7, ArgSource::Step),
                ],
            ),
            Step::new("logits of every token", &mm, {
                let mut args = head_args;
                args.extend([
                    act(1, "final_norm", 0),
                    act(2, "logits", 0),
                    arg(7, ArgSource::Step),
                ]);
                args.sort_by_key(|a| a.index);
                args
            }),
        ];
        Ok(Epilogue { last, all, tensors })
    }
}
