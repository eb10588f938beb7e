//! The rewriter's handlers for individual MSL constructs: attributes, kernels,
//! template instantiations, function constants, threadgroup variables, vector
//! constructors and casts, and half literals.

use super::edits::one_line;
use super::kernel::{host_name_in, parse_kernel};
use super::syntax::{self, match_angle, match_forward, starts_operand, statement_end, unary_end};
use super::{Export, FunctionConstant, Pass, CXX_ATTRIBUTES};
use std::collections::HashMap;

impl Pass<'_> {
    /// `[[...]]`: Metal attributes are removed (their meaning is read where it
    /// matters); `[[kernel]]` marks a kernel like the keyword.
    pub(super) fn attribute(&mut self, i: usize) -> usize {
        let lx = &self.lx;
        let Some(close) = match_forward(lx, i) else {
            self.error(i, "unbalanced '[[' attribute");
            return i + 1;
        };
        let inner = if close > i + 2 {
            lx.text(i + 2).to_string()
        } else {
            String::new()
        };
        if CXX_ATTRIBUTES.contains(&inner.as_str()) {
            return close + 1;
        }
        let (s, e) = (lx.tokens[i].start, lx.tokens[close].end);
        self.edits.replace(s, e, "");
        if inner == "kernel" && self.fn_depth == 0 {
            self.kernel_at(i, close + 1);
        }
        close + 1
    }

    pub(super) fn kernel_at(&mut self, kernel_tok: usize, ret: usize) {
        let ns = self.namespace();
        match parse_kernel(&self.lx, kernel_tok, ret, &ns) {
            Ok(Some(k)) => self.kernels.push(k),
            Ok(None) => {}
            Err(d) => self.errors.push(d),
        }
    }

    /// `template [[host_name("x")]] kernel decltype(k<float>) k<float>;`
    pub(super) fn instantiation(&mut self, i: usize) -> usize {
        let lx = &self.lx;
        let Some(end) = statement_end(lx, i) else {
            return i + 1;
        };
        let Some(host) = host_name_in(lx, i, end) else {
            return i + 1;
        };
        let templates: HashMap<String, usize> = self
            .kernels
            .iter()
            .enumerate()
            .filter(|(_, k)| k.template_header.is_some())
            .map(|(n, k)| {
                (
                    k.qualified
                        .rsplit("::")
                        .next()
                        .unwrap_or(&k.qualified)
                        .to_string(),
                    n,
                )
            })
            .collect();
        let found = (i..end).rev().find_map(|j| {
            let n = *templates.get(lx.text(j))?;
            if !lx.is(j + 1, "<") {
                return None;
            }
            let close = match_angle(lx, j + 1)?;
            Some((n, self.span(j + 1, close).to_string()))
        });
        match found {
            Some((kernel, args)) => {
                let args = one_line(&args);
                self.exports.push(Export {
                    name: host,
                    kernel,
                    args,
                    uses_sync: false,
                });
                let (s, e) = (lx.tokens[i].start, lx.tokens[end].end);
                self.edits.replace_region(s, e, "");
            }
            None => self.error(
                i,
                format!("template instantiation '{host}' names no kernel template defined above"),
            ),
        }
        end + 1
    }

    /// `constant T name [[function_constant(i)]];`
    pub(super) fn function_constant(&mut self, i: usize) -> Option<usize> {
        let lx = &self.lx;
        let end = statement_end(lx, i)?;
        let attr = (i..end)
            .find(|&j| lx.is(j, "[") && lx.is(j + 1, "[") && lx.is(j + 2, "function_constant"))?;
        if attr < i + 3 || !lx.is_ident(attr - 1) {
            self.error(i, "function constant declaration needs a type and a name");
            return Some(end + 1);
        }
        let name = lx.text(attr - 1).to_string();
        let ty = one_line(self.span(i + 1, attr - 2));
        let idx_tok = attr + 4;
        let Ok(index) = lx.text(idx_tok).trim_end_matches(['u', 'U']).parse::<u32>() else {
            self.error(
                idx_tok,
                format!("function_constant index of '{name}' must be an integer literal"),
            );
            return Some(end + 1);
        };
        let rep = format!(
            "static constexpr {ty} {name} = ({ty})(__MSL_FC_VAL_{index}); static constexpr bool __msl_fcdef_{name} = __MSL_FC_DEF_{index};"
        );
        let (s, e) = (lx.tokens[i].start, lx.tokens[end].end);
        self.edits.replace_region(s, e, rep);
        self.constants.push(FunctionConstant { name, index, ty });
        Some(end + 1)
    }

    /// `threadgroup T name[N];` inside a kernel becomes a reference into the
    /// threadgroup's arena, and its `T[N]` counts toward the kernel's static
    /// threadgroup memory; pointer and reference declarations stay as they are.
    pub(super) fn threadgroup_local(&mut self, i: usize) {
        let lx = &self.lx;
        let kernel = self.scopes.iter().find_map(|s| match s {
            super::Scope::Function { open, .. } => {
                self.kernels.iter().position(|k| k.body_open == *open)
            }
            _ => None,
        });
        let Some(end) = statement_end(lx, i) else {
            return;
        };
        let mut depth = 0i32;
        let mut first = None;
        for j in i + 1..end {
            match lx.text(j) {
                "<" => depth += 1,
                ">" => depth -= 1,
                "*" | "&" | "(" | "[" | "," | "=" if depth == 0 => {
                    first = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let first = first.unwrap_or(end);
        if matches!(lx.text(first), "*" | "&" | "(") {
            return;
        }
        if first < i + 3 || !lx.is_ident(first - 1) {
            self.error(i, "threadgroup declaration needs a type and a name");
            return;
        }
        let ty = one_line(self.span(i + 1, first - 2));
        let mut rep = String::new();
        for (s, e) in syntax::split_top_level(lx, first - 1, end) {
            if !lx.is_ident(s) {
                self.error(
                    s,
                    "threadgroup declarators must be plain names (one pointer per declaration)",
                );
                return;
            }
            let name = lx.text(s);
            if (s..e).any(|j| lx.is(j, "=")) {
                self.error(
                    s,
                    format!("threadgroup variable '{name}' cannot have an initializer"),
                );
                return;
            }
            let dims = if e > s + 1 {
                one_line(self.span(s + 1, e - 1))
            } else {
                String::new()
            };
            let Some(k) = kernel else {
                self.error(
                    s,
                    format!(
                        "threadgroup variable '{name}' is declared outside a kernel function; \
                         Metal allows threadgroup variables only in kernels (pass helpers a threadgroup pointer)"
                    ),
                );
                return;
            };
            self.kernels[k].threadgroup_vars.push(format!("{ty}{dims}"));
            let site = self.next_tg_site;
            self.next_tg_site += 1;
            let alloc =
                format!("__msl_rt.tg_alloc({site}u, sizeof({ty}{dims}), alignof({ty}{dims}))");
            if dims.is_empty() {
                rep += &format!("threadgroup {ty} &{name} = *(threadgroup {ty} *){alloc}; ");
            } else {
                rep += &format!(
                    "threadgroup {ty} (&{name}){dims} = *(threadgroup {ty} (*){dims}){alloc}; "
                );
            }
        }
        let (s, e) = (lx.tokens[i].start, lx.tokens[end].end);
        self.edits.replace_region(s, e, rep.trim_end().to_string());
    }

    /// `float4(a, b)`, `T(x)` (T an alias) -> `__msl_make<float4>(a, b)`.
    pub(super) fn constructor(&mut self, i: usize) {
        let lx = &self.lx;
        let prev = self.prev(i);
        if prev.is_some_and(|p| matches!(lx.text(p), "." | "->" | "operator")) {
            return;
        }
        // `T (*p)(...)` / `T (&r)[4]` are declarators, not calls.
        if matches!(lx.text(i + 2), "*" | "&") && lx.is_ident(i + 3) && lx.is(i + 4, ")") {
            return;
        }
        let mut start = lx.tokens[i].start;
        if let Some(p) = prev.filter(|&p| lx.is(p, "::")) {
            match self.prev(p) {
                Some(q) if lx.is(q, "metal") => start = lx.tokens[q].start,
                _ => return,
            }
        }
        self.edits.replace(
            start,
            lx.tokens[i].end,
            format!("__msl_make<{}>", lx.text(i)),
        );
    }

    /// `(float4)x` -> `__msl_make<float4>(x)`.
    pub(super) fn cast(&mut self, i: usize) {
        let lx = &self.lx;
        if let Some(p) = self.prev(i) {
            let pt = lx.text(p);
            let keyword_before = matches!(
                pt,
                "return" | "case" | "else" | "do" | "throw" | "co_return"
            );
            if (lx.is_ident(p) && !keyword_before) || matches!(pt, ")" | "]" | ">") {
                return;
            }
        }
        if !starts_operand(lx, i + 3) {
            return;
        }
        let is_type = |s: &str| self.is_type(s);
        let Some(end) = unary_end(lx, i + 3, &is_type) else {
            return;
        };
        let (s, e) = (lx.tokens[i].start, lx.tokens[i + 2].end);
        let rep = format!("__msl_make<{}>(", lx.text(i + 1));
        let at = lx.tokens[end].end;
        self.edits.replace(s, e, rep);
        self.edits.insert(at, ")");
    }

    pub(super) fn number(&mut self, i: usize) {
        let t = self.lx.text(i);
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("0x") {
            return;
        }
        let (num, ty) = if let Some(n) = lower.strip_suffix("bf") {
            (&t[..n.len()], "bfloat")
        } else if let Some(n) = lower.strip_suffix('h') {
            (&t[..n.len()], "half")
        } else {
            return;
        };
        let tok = self.lx.tokens[i];
        self.edits
            .replace(tok.start, tok.end, format!("(({ty}){num})"));
    }
}
