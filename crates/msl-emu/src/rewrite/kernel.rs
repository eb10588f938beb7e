//! Kernel signatures: the parameters and their Metal attributes, read from the
//! tokens of a `kernel` function definition.

use super::edits::one_line;
use super::lexer::{Kind, Lexed};
use super::syntax::{match_backward, match_forward, split_top_level};
use crate::error::Diagnostic;

/// Values a kernel parameter can be bound to, besides buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    ThreadPositionInGrid,
    ThreadgroupPositionInGrid,
    ThreadPositionInThreadgroup,
    ThreadIndexInThreadgroup,
    ThreadsPerThreadgroup,
    ThreadgroupsPerGrid,
    ThreadsPerGrid,
    ThreadIndexInSimdgroup,
    SimdgroupIndexInThreadgroup,
    SimdgroupsPerThreadgroup,
    ThreadsPerSimdgroup,
    ThreadIndexInQuadgroup,
    QuadgroupIndexInThreadgroup,
    QuadgroupsPerThreadgroup,
    GridOrigin,
}

impl Builtin {
    fn from_name(name: &str) -> Option<Builtin> {
        Some(match name {
            "thread_position_in_grid" => Builtin::ThreadPositionInGrid,
            "threadgroup_position_in_grid" => Builtin::ThreadgroupPositionInGrid,
            "thread_position_in_threadgroup" => Builtin::ThreadPositionInThreadgroup,
            "thread_index_in_threadgroup" => Builtin::ThreadIndexInThreadgroup,
            "threads_per_threadgroup" | "dispatch_threads_per_threadgroup" => {
                Builtin::ThreadsPerThreadgroup
            }
            "threadgroups_per_grid" => Builtin::ThreadgroupsPerGrid,
            "threads_per_grid" | "grid_size" => Builtin::ThreadsPerGrid,
            "thread_index_in_simdgroup" => Builtin::ThreadIndexInSimdgroup,
            "simdgroup_index_in_threadgroup" => Builtin::SimdgroupIndexInThreadgroup,
            "simdgroups_per_threadgroup" | "dispatch_simdgroups_per_threadgroup" => {
                Builtin::SimdgroupsPerThreadgroup
            }
            "threads_per_simdgroup" | "thread_execution_width" => Builtin::ThreadsPerSimdgroup,
            "thread_index_in_quadgroup" => Builtin::ThreadIndexInQuadgroup,
            "quadgroup_index_in_threadgroup" => Builtin::QuadgroupIndexInThreadgroup,
            "quadgroups_per_threadgroup" => Builtin::QuadgroupsPerThreadgroup,
            "grid_origin" => Builtin::GridOrigin,
            _ => return None,
        })
    }

    /// C++ expressions for the x, y, z components, in terms of the adapter's
    /// `__t` (per-thread) and `__c` (per-threadgroup) pointers.
    pub fn components(self) -> [String; 3] {
        let per = |f: &dyn Fn(usize) -> String| [f(0), f(1), f(2)];
        let sg_count = "((__c->tptg[0] * __c->tptg[1] * __c->tptg[2] + 31u) / 32u)";
        let scalar = |s: &str| [s.to_string(), "0u".to_string(), "0u".to_string()];
        match self {
            Builtin::ThreadPositionInGrid => {
                per(&|i| format!("(__c->tgpig[{i}] * __c->tptg[{i}] + __t->tid[{i}])"))
            }
            Builtin::ThreadgroupPositionInGrid => per(&|i| format!("__c->tgpig[{i}]")),
            Builtin::ThreadPositionInThreadgroup => per(&|i| format!("__t->tid[{i}]")),
            Builtin::ThreadIndexInThreadgroup => scalar("__t->index"),
            Builtin::ThreadsPerThreadgroup => per(&|i| format!("__c->tptg[{i}]")),
            Builtin::ThreadgroupsPerGrid => per(&|i| format!("__c->tgpg[{i}]")),
            Builtin::ThreadsPerGrid => per(&|i| format!("(__c->tgpg[{i}] * __c->tptg[{i}])")),
            Builtin::ThreadIndexInSimdgroup => scalar("(__t->index & 31u)"),
            Builtin::SimdgroupIndexInThreadgroup => scalar("(__t->index >> 5)"),
            Builtin::SimdgroupsPerThreadgroup => scalar(sg_count),
            Builtin::ThreadsPerSimdgroup => scalar("32u"),
            Builtin::ThreadIndexInQuadgroup => scalar("(__t->index & 3u)"),
            Builtin::QuadgroupIndexInThreadgroup => scalar("(__t->index >> 2)"),
            Builtin::QuadgroupsPerThreadgroup => {
                scalar("((__c->tptg[0] * __c->tptg[1] * __c->tptg[2] + 3u) / 4u)")
            }
            Builtin::GridOrigin => scalar("0u"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    Buffer(u32),
    Threadgroup(u32),
    Builtin(Builtin),
}

#[derive(Clone, Debug)]
pub struct Param {
    pub ty: String,
    pub name: String,
    pub binding: Binding,
    /// Guarded by `[[function_constant(x)]]`: the binding may be absent.
    pub optional: bool,
}

#[derive(Clone, Debug)]
pub struct Kernel {
    /// Name to call from global scope (namespace-qualified).
    pub qualified: String,
    pub host_name: Option<String>,
    pub template_header: Option<String>,
    pub template_args: Vec<String>,
    pub params: Vec<Param>,
    /// Token index of the body's `{`.
    pub body_open: usize,
    /// Token index where the definition starts (its template header or first attribute).
    pub start: usize,
    /// The expression of `[[max_total_threads_per_threadgroup(N)]]`, if declared.
    pub max_threads: Option<String>,
    /// `T[N]` of every threadgroup variable the body declares, in order.
    pub threadgroup_vars: Vec<String>,
}

impl Kernel {
    /// The plain name, without namespaces.
    pub fn base_name(&self) -> &str {
        self.qualified
            .rsplit("::")
            .next()
            .unwrap_or(&self.qualified)
    }

    /// `ns::` for a kernel in namespace `ns`, else empty.
    pub fn namespace_prefix(&self) -> &str {
        &self.qualified[..self.qualified.len() - self.base_name().len()]
    }

    /// `<T, N>` for a template kernel (its parameter names), else empty.
    pub fn own_template_args(&self) -> String {
        if self.template_header.is_some() {
            format!("<{}>", self.template_args.join(", "))
        } else {
            String::new()
        }
    }
}

fn diag(lx: &Lexed, i: usize, message: String) -> Diagnostic {
    Diagnostic {
        file: lx.file_of(i).to_string(),
        line: lx.line_of(i),
        message,
    }
}

/// The string argument of `host_name("...")` inside `from..to`, if any.
pub fn host_name_in(lx: &Lexed, from: usize, to: usize) -> Option<String> {
    (from..to).find_map(|j| {
        (lx.is(j, "host_name")
            && lx.is(j + 1, "(")
            && lx.tokens.get(j + 2).is_some_and(|t| t.kind == Kind::Str))
        .then(|| lx.text(j + 2).trim_matches('"').to_string())
    })
}

fn parse_index(lx: &Lexed, j: usize, what: &str) -> Result<u32, Diagnostic> {
    let t = lx.text(j).trim_end_matches(['u', 'U']);
    t.parse::<u32>().map_err(|_| {
        diag(
            lx,
            j,
            format!(
                "{what} index must be an integer literal, found '{}'",
                lx.text(j)
            ),
        )
    })
}

/// The argument of `max_total_threads_per_threadgroup(...)` inside `from..to`, if any.
fn max_threads_in(lx: &Lexed, from: usize, to: usize) -> Option<String> {
    (from..to).find_map(|j| {
        if !(lx.is(j, "max_total_threads_per_threadgroup") && lx.is(j + 1, "(")) {
            return None;
        }
        let close = match_forward(lx, j + 1)?;
        (close > j + 2).then(|| {
            let t = &lx.tokens;
            one_line(&lx.text[t[j + 2].start..t[close - 1].end])
        })
    })
}

/// Names of the parameters of a `template <...>` header (`T`, `N`, `Ts...`).
fn template_param_names(lx: &Lexed, open: usize, close: usize) -> Vec<String> {
    split_top_level(lx, open + 1, close)
        .into_iter()
        .filter_map(|(s, e)| {
            let end = (s..e).find(|&j| lx.is(j, "=")).unwrap_or(e);
            let name = (s..end).rev().find(|&j| lx.is_ident(j))?;
            let pack = (s..name).any(|j| lx.is(j, "."));
            Some(if pack {
                format!("{}...", lx.text(name))
            } else {
                lx.text(name).to_string()
            })
        })
        .collect()
}

/// Parses a kernel definition whose return type is the token at `ret`
/// (`kernel void name(...) {`). Returns None for a declaration or something
/// that is not a kernel definition.
pub fn parse_kernel(
    lx: &Lexed,
    kernel_tok: usize,
    ret: usize,
    namespace: &str,
) -> Result<Option<Kernel>, Diagnostic> {
    if !lx.is_ident(ret) || !lx.is_ident(ret + 1) {
        return Ok(None);
    }
    let name_tok = ret + 1;
    let mut open = name_tok + 1;
    while lx.is(open, "[") && lx.is(open + 1, "[") {
        open = match_forward(lx, open).map(|j| j + 1).unwrap_or(open + 1);
        if lx.is(open, "]") {
            open += 1;
        }
    }
    if !lx.is(open, "(") {
        return Ok(None);
    }
    let close = match_forward(lx, open)
        .ok_or_else(|| diag(lx, open, "unbalanced '(' in kernel signature".into()))?;
    if !lx.is(close + 1, "{") {
        return Ok(None);
    }
    // Attributes and a template header may precede the `kernel` keyword.
    let mut j = kernel_tok as isize - 1;
    let mut attr_from = kernel_tok;
    while j >= 1 && lx.is(j as usize, "]") && lx.is(j as usize - 1, "]") {
        // The outer `]` matches the outer `[`, the first of the attribute's tokens.
        match match_backward(lx, j as usize) {
            Some(o) => {
                attr_from = o;
                j = o as isize - 1;
            }
            None => break,
        }
    }
    while j >= 0 && matches!(lx.text(j as usize), "static" | "inline") {
        j -= 1;
    }
    let mut template_header = None;
    let mut template_args = Vec::new();
    // The first token of the definition: `static`/`inline`, an attribute or `kernel` itself.
    let mut start = (j + 1) as usize;
    if j >= 0 && lx.is(j as usize, ">") {
        if let Some(o) = match_backward(lx, j as usize) {
            if o >= 1 && lx.is(o - 1, "template") {
                let t = &lx.tokens;
                template_header = Some(one_line(&lx.text[t[o - 1].start..t[j as usize].end]));
                template_args = template_param_names(lx, o, j as usize);
                start = o - 1;
            }
        }
    }
    let host_name = host_name_in(lx, attr_from, open);
    let max_threads = max_threads_in(lx, attr_from, open);
    let name = lx.text(name_tok);
    let qualified = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}::{name}")
    };
    let mut params = Vec::new();
    for (s, e) in split_top_level(lx, open + 1, close) {
        params.push(parse_param(lx, s, e, name)?);
    }
    Ok(Some(Kernel {
        qualified,
        host_name,
        template_header,
        template_args,
        params,
        body_open: close + 1,
        start,
        max_threads,
        threadgroup_vars: Vec::new(),
    }))
}

fn parse_param(lx: &Lexed, s: usize, e: usize, kernel: &str) -> Result<Param, Diagnostic> {
    let attr = (s..e).find(|&j| lx.is(j, "[") && lx.is(j + 1, "["));
    let decl_end = attr.unwrap_or(e);
    let name_tok = decl_end
        .checked_sub(1)
        .filter(|&j| j >= s && lx.is_ident(j));
    let Some(name_tok) = name_tok.filter(|&j| j > s) else {
        return Err(diag(
            lx,
            s,
            format!("kernel '{kernel}': every parameter needs a name and a type"),
        ));
    };
    let t = &lx.tokens;
    let ty = one_line(&lx.text[t[s].start..t[name_tok - 1].end]);
    let name = lx.text(name_tok).to_string();
    let Some(a) = attr else {
        return Err(diag(
            lx,
            name_tok,
            format!("kernel '{kernel}': parameter '{name}' has no Metal attribute"),
        ));
    };
    let a_close =
        match_forward(lx, a).ok_or_else(|| diag(lx, a, "unbalanced '[[' in attribute".into()))?;
    let mut binding = None;
    let mut optional = false;
    for (is, ie) in split_top_level(lx, a + 2, a_close - 1) {
        let key = lx.text(is);
        let arg = if lx.is(is + 1, "(") && is + 2 < ie {
            Some(is + 2)
        } else {
            None
        };
        match (key, arg) {
            ("buffer", Some(k)) => binding = Some(Binding::Buffer(parse_index(lx, k, "buffer")?)),
            ("threadgroup", Some(k)) => {
                binding = Some(Binding::Threadgroup(parse_index(lx, k, "threadgroup")?))
            }
            ("function_constant", Some(_)) => optional = true,
            ("raster_order_group", _) => {}
            (k, None) if Builtin::from_name(k).is_some() => {
                binding = Builtin::from_name(k).map(Binding::Builtin)
            }
            _ => {
                let text = one_line(&lx.text[t[is].start..t[ie - 1].end]);
                return Err(diag(
                    lx,
                    is,
                    format!("unsupported kernel parameter attribute [[{text}]] on '{name}'"),
                ));
            }
        }
    }
    let binding = binding.ok_or_else(|| {
        diag(
            lx,
            name_tok,
            format!("kernel '{kernel}': parameter '{name}' has no binding attribute"),
        )
    })?;
    Ok(Param {
        ty,
        name,
        binding,
        optional,
    })
}
