//! The MSL -> C++ source rewriter. It runs on clang's preprocessed output and
//! changes only what plain C++ cannot express: `kernel` functions get adapters,
//! `threadgroup` locals move into the per-threadgroup arena, vector
//! constructors and casts become value conversions, `h` literals become half,
//! `template [[host_name]]` instantiations become exported entries, function
//! constants become compile-time constants, and SIMD collectives get a call
//! site number. Unsupported constructs are errors at their original line.

mod adapter;
mod constructs;
mod edits;
mod kernel;
pub mod lexer;
mod syntax;

use crate::error::{Diagnostic, Diagnostics};
pub use adapter::Export;
use edits::{one_line, Edits};
use kernel::Kernel;
use lexer::{lex, Kind, Lexed};
use std::collections::HashSet;
use syntax::{match_angle, match_backward, match_forward, statement_end};

/// A `constant T name [[function_constant(i)]]` declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionConstant {
    pub name: String,
    pub index: u32,
    pub ty: String,
}

pub struct Rewritten {
    /// C++ source (still carrying the preprocessor's line markers), adapters appended.
    pub source: String,
    pub exports: Vec<Export>,
    pub function_constants: Vec<FunctionConstant>,
}

/// Collectives that take a call-site argument (and are sync points).
const SITED: &[&str] = &[
    "simd_sum",
    "simd_product",
    "simd_max",
    "simd_min",
    "simd_and",
    "simd_or",
    "simd_xor",
    "simd_prefix_exclusive_sum",
    "simd_prefix_inclusive_sum",
    "simd_prefix_exclusive_product",
    "simd_prefix_inclusive_product",
    "simd_shuffle",
    "simd_broadcast",
    "simd_shuffle_down",
    "simd_shuffle_up",
    "simd_shuffle_xor",
    "simd_shuffle_rotate_down",
    "simd_shuffle_rotate_up",
    "simd_shuffle_and_fill_down",
    "simd_shuffle_and_fill_up",
    "simd_broadcast_first",
    "quad_shuffle",
    "quad_broadcast",
    "quad_shuffle_xor",
    "quad_shuffle_down",
    "quad_shuffle_up",
    "quad_sum",
    "quad_max",
    "quad_min",
    "simd_ballot",
    "simd_all",
    "simd_any",
    "simd_active_threads_mask",
    "simd_is_first",
    "simdgroup_barrier",
    "simdgroup_load",
    "simdgroup_store",
];

const UNSUPPORTED: &[(&str, &str)] = &[
    ("double", "double is not supported by Metal"),
    ("texture1d", "textures are not emulated"),
    ("texture1d_array", "textures are not emulated"),
    ("texture2d", "textures are not emulated"),
    ("texture2d_array", "textures are not emulated"),
    ("texture2d_ms", "textures are not emulated"),
    ("texture3d", "textures are not emulated"),
    ("texturecube", "textures are not emulated"),
    ("texturecube_array", "textures are not emulated"),
    ("texture_buffer", "textures are not emulated"),
    ("depth2d", "textures are not emulated"),
    ("depth2d_array", "textures are not emulated"),
    ("depthcube", "textures are not emulated"),
    ("sampler", "samplers are not emulated"),
    ("imageblock", "imageblocks are not emulated"),
    ("visible_function_table", "function tables are not emulated"),
    (
        "intersection_function_table",
        "function tables are not emulated",
    ),
    ("acceleration_structure", "ray tracing is not emulated"),
];

/// C++ attributes kept as they are; every other `[[...]]` is Metal's and removed.
const CXX_ATTRIBUTES: &[&str] = &[
    "likely",
    "unlikely",
    "maybe_unused",
    "fallthrough",
    "nodiscard",
    "noreturn",
];

fn vector_type_names() -> HashSet<String> {
    let mut set = HashSet::new();
    for base in [
        "float", "half", "bfloat", "int", "uint", "short", "ushort", "char", "uchar", "long",
        "ulong", "bool",
    ] {
        for n in 2..=4 {
            set.insert(format!("{base}{n}"));
            if !matches!(base, "long" | "ulong" | "bool") {
                set.insert(format!("packed_{base}{n}"));
            }
        }
    }
    set
}

#[derive(Clone, Debug)]
enum Scope {
    Function { name: String, open: usize },
    Block,
    Namespace(String),
    Other,
}

struct Pass<'a> {
    lx: Lexed<'a>,
    edits: Edits,
    errors: Vec<Diagnostic>,
    vectors: HashSet<String>,
    aliases: HashSet<String>,
    scopes: Vec<Scope>,
    fn_depth: usize,
    /// (function name, body open, body close)
    functions: Vec<(String, usize, usize)>,
    kernels: Vec<Kernel>,
    exports: Vec<Export>,
    constants: Vec<FunctionConstant>,
    next_site: u32,
    next_tg_site: u32,
}

impl<'a> Pass<'a> {
    fn error(&mut self, i: usize, message: impl Into<String>) {
        let d = Diagnostic {
            file: self.lx.file_of(i).to_string(),
            line: self.lx.line_of(i),
            message: message.into(),
        };
        self.errors.push(d);
    }

    fn is_type(&self, name: &str) -> bool {
        self.vectors.contains(name) || self.aliases.contains(name)
    }

    fn span(&self, from: usize, to_inclusive: usize) -> &'a str {
        let t = &self.lx.tokens;
        &self.lx.text[t[from].start..t[to_inclusive].end]
    }

    fn prev(&self, i: usize) -> Option<usize> {
        (0..i)
            .rev()
            .find(|&j| self.lx.tokens[j].kind != Kind::Directive)
    }

    /// Type names introduced by typedef, using and template parameters: a call
    /// `T(x)` or cast `(T)x` with such a name must convert values, not bits.
    fn collect_aliases(&mut self) {
        let lx = &self.lx;
        for i in 0..lx.tokens.len() {
            match lx.text(i) {
                "typedef" => {
                    if let Some(end) = statement_end(lx, i) {
                        if end > 0 && lx.is_ident(end - 1) {
                            self.aliases.insert(lx.text(end - 1).to_string());
                        }
                    }
                }
                "using" if lx.is_ident(i + 1) && lx.is(i + 2, "=") => {
                    self.aliases.insert(lx.text(i + 1).to_string());
                }
                "typename" | "class"
                    if lx.is_ident(i + 1) && matches!(lx.text(i + 2), "," | ">" | "=") =>
                {
                    let inside_template = (0..i).rev().take(64).any(|j| lx.is(j, "template"));
                    if inside_template {
                        self.aliases.insert(lx.text(i + 1).to_string());
                    }
                }
                _ => {}
            }
        }
    }

    fn namespace(&self) -> String {
        self.scopes
            .iter()
            .filter_map(|s| {
                if let Scope::Namespace(n) = s {
                    Some(n.as_str())
                } else {
                    None
                }
            })
            .collect::<Vec<_>>()
            .join("::")
    }

    fn open_brace(&mut self, i: usize) {
        let lx = &self.lx;
        let scope = if self.fn_depth > 0 {
            Scope::Block
        } else {
            let mut p = self.prev(i);
            while let Some(j) = p {
                if matches!(
                    lx.text(j),
                    "const" | "noexcept" | "override" | "final" | "mutable"
                ) {
                    p = self.prev(j);
                } else {
                    break;
                }
            }
            match p {
                Some(j) if lx.is(j, ")") => {
                    let open = match_backward(lx, j);
                    let name = open
                        .and_then(|o| self.prev(o))
                        .filter(|&n| lx.is_ident(n))
                        .map(|n| lx.text(n).to_string())
                        .unwrap_or_default();
                    Scope::Function { name, open: i }
                }
                Some(j)
                    if lx.is_ident(j) && self.prev(j).is_some_and(|k| lx.is(k, "namespace")) =>
                {
                    Scope::Namespace(lx.text(j).to_string())
                }
                _ => Scope::Other,
            }
        };
        if matches!(scope, Scope::Function { .. }) {
            self.fn_depth += 1;
        }
        self.scopes.push(scope);
    }

    fn close_brace(&mut self, i: usize) {
        if let Some(Scope::Function { name, open }) = self.scopes.pop() {
            self.fn_depth -= 1;
            self.functions.push((name, open, i));
        }
    }

    fn run(&mut self) {
        self.collect_aliases();
        let n = self.lx.tokens.len();
        let mut i = 0;
        while i < n {
            let lx = &self.lx;
            let tok = lx.tokens[i];
            if tok.kind == Kind::Directive {
                i += 1;
                continue;
            }
            let s = lx.text(i);
            let in_fn = self.fn_depth > 0;
            match tok.kind {
                Kind::Number => self.number(i),
                Kind::Punct => match s {
                    "{" => self.open_brace(i),
                    "}" => self.close_brace(i),
                    "[" if lx.is(i + 1, "[") => {
                        i = self.attribute(i);
                        continue;
                    }
                    "(" if lx.is_ident(i + 1)
                        && lx.is(i + 2, ")")
                        && self.is_type(lx.text(i + 1)) =>
                    {
                        self.cast(i)
                    }
                    _ => {}
                },
                Kind::Ident => {
                    if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == s) {
                        self.error(i, format!("unsupported construct '{s}': {why}"));
                    } else if s == "kernel" && !in_fn {
                        let (a, b) = (tok.start, tok.end);
                        self.edits.replace(a, b, "");
                        self.kernel_at(i, i + 1);
                    } else if (s == "vertex" || s == "fragment")
                        && !in_fn
                        && lx.is_ident(i + 1)
                        && lx.is_ident(i + 2)
                        && lx.is(i + 3, "(")
                    {
                        self.error(
                            i,
                            format!(
                                "unsupported construct '{s}': only compute kernels are emulated"
                            ),
                        );
                    } else if s == "template" && !in_fn && !lx.is(i + 1, "<") {
                        i = self.instantiation(i);
                        continue;
                    } else if s == "constant" && !in_fn {
                        if let Some(next) = self.function_constant(i) {
                            i = next;
                            continue;
                        }
                    } else if s == "threadgroup"
                        && in_fn
                        && self
                            .prev(i)
                            .is_none_or(|p| matches!(lx.text(p), "{" | "}" | ";"))
                    {
                        self.threadgroup_local(i);
                    } else if s == "is_function_constant_defined"
                        && lx.is(i + 1, "(")
                        && lx.is(i + 3, ")")
                    {
                        let name = lx.text(i + 2);
                        if self.constants.iter().any(|c| c.name == name) {
                            let (a, b) = (tok.start, lx.tokens[i + 3].end);
                            self.edits.replace(a, b, format!("(__msl_fcdef_{name})"));
                        } else {
                            self.error(i, format!("'{name}' is not a function constant"));
                        }
                    } else if in_fn
                        && SITED.contains(&s)
                        && lx.is(i + 1, "(")
                        && !self
                            .prev(i)
                            .is_some_and(|p| matches!(lx.text(p), "." | "->"))
                    {
                        let site = self.next_site;
                        self.next_site += 1;
                        let sep = if lx.is(i + 2, ")") { "" } else { ", " };
                        self.edits
                            .insert(lx.tokens[i + 1].end, format!("__MSL_SITE({site}){sep}"));
                    } else if s == "static_cast"
                        && lx.is(i + 1, "<")
                        && lx.is_ident(i + 2)
                        && lx.is(i + 3, ">")
                        && self.is_type(lx.text(i + 2))
                    {
                        let (a, b) = (tok.start, tok.end);
                        self.edits.replace(a, b, "__msl_make");
                    } else if (s == "vec" || s == "packed_vec") && lx.is(i + 1, "<") {
                        if let Some(close) = match_angle(lx, i + 1).filter(|&c| lx.is(c + 1, "(")) {
                            let (a, b) = (tok.start, lx.tokens[close].end);
                            let rep = format!("__msl_make<metal::{}>", one_line(&lx.text[a..b]));
                            self.edits.replace(a, b, rep);
                            i = close + 1;
                            continue;
                        }
                    } else if lx.is(i + 1, "(") && self.is_type(s) {
                        self.constructor(i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// A function is a sync function when its body names a collective, a
    /// barrier or another sync function; kernels that are not run as plain calls.
    fn sync_analysis(&mut self) {
        let lx = &self.lx;
        let mut sync: HashSet<&str> = SITED.iter().copied().collect();
        sync.insert("threadgroup_barrier");
        let bodies: Vec<(&str, HashSet<&str>)> = self
            .functions
            .iter()
            .map(|(name, o, c)| {
                let ids = (*o..*c)
                    .filter(|&j| lx.is_ident(j))
                    .map(|j| lx.text(j))
                    .collect();
                (name.as_str(), ids)
            })
            .collect();
        loop {
            let mut changed = false;
            for (name, ids) in &bodies {
                if !name.is_empty() && !sync.contains(name) && ids.iter().any(|x| sync.contains(x))
                {
                    sync.insert(name);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let kernel_sync: Vec<bool> = self
            .kernels
            .iter()
            .map(|k| {
                let close = match_forward(lx, k.body_open).unwrap_or(k.body_open);
                (k.body_open..close).any(|j| lx.is_ident(j) && sync.contains(lx.text(j)))
            })
            .collect();
        for e in &mut self.exports {
            e.uses_sync = kernel_sync[e.kernel];
        }
    }
}

/// Metal's per-threadgroup limits, checked where clang can see them.
const MAX_THREADGROUP_MEMORY: u32 = 32768;
const MAX_THREADS_PER_THREADGROUP: u32 = 1024;

impl Pass<'_> {
    /// Before each kernel, constexpr functions giving its static threadgroup
    /// memory (its threadgroup variables, laid out in order with their
    /// alignments) and its declared `max_total_threads_per_threadgroup`; at
    /// the top of its body, static_asserts of Metal's limits on both, so a
    /// kernel over them fails to compile at its own line, as with Metal.
    fn resource_limits(&mut self) {
        for (n, k) in self.kernels.iter().enumerate() {
            let header = k.template_header.as_deref().unwrap_or("");
            let layout: String = k
                .threadgroup_vars
                .iter()
                .map(|t| format!(" __o = __msl_tg_next(__o, sizeof({t}), alignof({t}));"))
                .collect();
            let max = k
                .max_threads
                .clone()
                .unwrap_or_else(|| MAX_THREADS_PER_THREADGROUP.to_string());
            let companions = format!(
                "{header} constexpr __msl_u64 __msl_tg_bytes_{n}() {{ __msl_u64 __o = 0;{layout} return __o; }} \
                 {header} constexpr __msl_u64 __msl_max_threads_{n}() {{ return (__msl_u64)({max}); }} "
            );
            self.edits.insert(self.lx.tokens[k.start].start, companions);
            let name = k.host_name.as_deref().unwrap_or(k.base_name());
            let args = k.own_template_args();
            let checks = format!(
                " static_assert(__msl_tg_bytes_{n}{args}() <= {MAX_THREADGROUP_MEMORY}u, \
                 \"kernel '{name}': its threadgroup variables take more than the {MAX_THREADGROUP_MEMORY} bytes \
                 of threadgroup memory Metal allows (maxThreadgroupMemoryLength)\"); \
                 static_assert(__msl_max_threads_{n}{args}() >= 1u && __msl_max_threads_{n}{args}() <= {MAX_THREADS_PER_THREADGROUP}u, \
                 \"kernel '{name}': max_total_threads_per_threadgroup must be 1 to {MAX_THREADS_PER_THREADGROUP}\");"
            );
            self.edits.insert(self.lx.tokens[k.body_open].end, checks);
        }
    }
}

/// Rewrites preprocessed MSL. `strict` leaves out the adapters (the strict
/// syntax check only judges the kernel source).
pub fn rewrite(text: &str, display_name: &str, strict: bool) -> Result<Rewritten, Diagnostics> {
    let mut pass = Pass {
        lx: lex(text, display_name),
        edits: Edits::new(),
        errors: Vec::new(),
        vectors: vector_type_names(),
        aliases: HashSet::new(),
        scopes: Vec::new(),
        fn_depth: 0,
        functions: Vec::new(),
        kernels: Vec::new(),
        exports: Vec::new(),
        constants: Vec::new(),
        next_site: 0,
        next_tg_site: 0,
    };
    pass.run();
    // Plain kernels are exported under their (host) name, templates only through instantiations.
    let mut plain = Vec::new();
    for (n, k) in pass.kernels.iter().enumerate() {
        if k.template_header.is_none() {
            let name = k
                .host_name
                .clone()
                .unwrap_or_else(|| k.qualified.rsplit("::").next().unwrap_or("").to_string());
            plain.push(Export {
                name,
                kernel: n,
                args: String::new(),
                uses_sync: false,
            });
        }
    }
    plain.append(&mut pass.exports);
    pass.exports = plain;
    let mut seen = HashSet::new();
    let duplicates: Vec<(usize, String)> = pass
        .exports
        .iter()
        .filter(|e| !seen.insert(e.name.clone()))
        .map(|e| (pass.kernels[e.kernel].body_open, e.name.clone()))
        .collect();
    for (tok, name) in duplicates {
        pass.error(tok, format!("two kernels are exported as '{name}'"));
    }
    if !pass.errors.is_empty() {
        return Err(Diagnostics {
            messages: pass.errors,
        });
    }
    pass.sync_analysis();
    pass.resource_limits();
    let adapters = if strict {
        String::new()
    } else {
        adapter::generate(&pass.kernels, &pass.exports)
    };
    let Pass {
        lx,
        edits,
        exports,
        constants,
        ..
    } = pass;
    let mut source = edits.apply(lx.text);
    source.push_str(&adapters);
    Ok(Rewritten {
        source,
        exports,
        function_constants: constants,
    })
}

#[cfg(test)]
mod tests;
