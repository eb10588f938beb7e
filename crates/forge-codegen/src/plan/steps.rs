//! Dispatches as the plan records them: which kernel, over which grid, with
//! which buffers bound where. The model.rs template renders each `Step` as
//! one `batch.dispatch(...)` call.

use serde::Serialize;

/// Where a kernel argument comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArgSource {
    /// An activation buffer, at `column` (f32 columns), on the row `row`
    /// (`first`, or `last` = the pass's last token).
    Activation {
        buffer: String,
        column: u64,
        row: Row,
    },
    /// A tensor of the current layer (`Layer` struct field).
    LayerTensor {
        field: String,
    },
    /// A tensor outside the layers (`token_embd`, `output_norm`, ...).
    ModelTensor {
        field: String,
    },
    /// The current layer's key or value cache.
    KeyCache,
    ValueCache,
    /// Scratch for split attention partials.
    AttentionScratch,
    /// The current layer's causal-conv state and scan state (state-space layers).
    ConvState,
    ScanState,
    /// `Step { n_tokens, pos }` of the pass, as bytes.
    Step,
    /// The token ids of the pass.
    Tokens,
    /// `{ n_recent, repeat_penalty }` of the sampler, as bytes.
    Penalty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Row {
    First,
    Last,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arg {
    pub index: u32,
    pub source: ArgSource,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// What this dispatch computes, for the comment above it.
    pub comment: String,
    /// Kernel (pipeline) name.
    pub kernel: String,
    pub threads: [u32; 3],
    /// Threadgroups, Rust expressions over `pass.n` and `pass.pos`.
    pub grid: [String; 3],
    pub args: Vec<Arg>,
    /// Dispatched only when the expression holds (the attention reduce runs
    /// only when there is more than one split).
    pub condition: Option<String>,
}

impl Step {
    pub fn new(comment: impl Into<String>, kernel: &crate::KernelInstance, args: Vec<Arg>) -> Step {
        Step {
            comment: comment.into(),
            kernel: kernel.name.clone(),
            threads: kernel.threads,
            grid: kernel.grid.clone().map(|g| qualify_pass_vars(&g)),
            args,
            condition: None,
        }
    }
}

impl Step {
    /// Whether the dispatch reads the pass (`pass.n`, `pass.step()`, its last row).
    pub fn uses_pass(&self) -> bool {
        self.grid
            .iter()
            .chain(&self.condition)
            .any(|e| e.contains("pass."))
            || self.args.iter().any(|a| {
                matches!(
                    a.source,
                    ArgSource::Step | ArgSource::Activation { row: Row::Last, .. }
                )
            })
    }
}

/// Rewrites the bare `n` and `pos` of a kernel's grid expression to the
/// generated code's `pass.n` and `pass.pos`.
pub fn qualify_pass_vars(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len() + 8);
    let mut word = String::new();
    // A word right after `.` is a field or method, never a pass variable.
    let flush = |word: &mut String, out: &mut String| {
        if (word == "n" || word == "pos") && !out.ends_with('.') {
            out.push_str("pass.");
        }
        out.push_str(word);
        word.clear();
    };
    for ch in expr.chars() {
        if ch.is_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

pub fn act(index: u32, buffer: &str, column: u64) -> Arg {
    Arg {
        index,
        source: ArgSource::Activation {
            buffer: buffer.into(),
            column,
            row: Row::First,
        },
    }
}

pub fn arg(index: u32, source: ArgSource) -> Arg {
    Arg { index, source }
}

#[cfg(test)]
mod tests {
    use super::qualify_pass_vars;

    #[test]
    fn pass_variables_are_qualified_as_whole_words() {
        assert_eq!(qualify_pass_vars("(n + 7) / 8"), "(pass.n + 7) / 8");
        assert_eq!(
            qualify_pass_vars("(pos + 1).div_ceil(256)"),
            "(pass.pos + 1).div_ceil(256)"
        );
        assert_eq!(
            qualify_pass_vars("n_rows + npos + x.n"),
            "n_rows + npos + x.n"
        );
    }
}
