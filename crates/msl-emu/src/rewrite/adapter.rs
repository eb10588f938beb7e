//! Generates the C++ that binds each kernel's parameters from the runtime's
//! per-thread arguments, one `extern "C"` entry per exported kernel, and the
//! table the runtime reads after loading the library.

use super::kernel::{Binding, Kernel};
use std::fmt::Write;

/// One kernel the library exports: a plain kernel or a template instantiation.
#[derive(Clone, Debug)]
pub struct Export {
    pub name: String,
    pub kernel: usize,
    /// Template arguments including the angle brackets, or empty.
    pub args: String,
    pub uses_sync: bool,
}

fn strip_ref(ty: &str) -> Option<&str> {
    ty.strip_suffix('&').map(str::trim_end)
}

/// Metal's alignment for a buffer bound at an offset: the bound type's own
/// (a `device float4*` needs 16-byte offsets); a buffer in the `constant`
/// address space bound with setBuffer needs 256-byte offsets on macOS.
fn offset_alignment(b: &Binding, ty: &str) -> String {
    let Binding::Buffer(_) = b else {
        return "1".to_string();
    };
    let own = match strip_ref(ty) {
        Some(base) => format!("alignof({base})"),
        None if ty.contains('*') => format!("__msl_pointee_align<{ty}>::value"),
        None => format!("alignof({ty})"),
    };
    if ty
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .any(|w| w == "constant")
    {
        format!("(({own}) > 256u ? ({own}) : 256u)")
    } else {
        own
    }
}

/// Kind codes of `__msl_param_kind` in msl_emu_abi.h.
fn kind_code(b: &Binding, ty: &str) -> u32 {
    match b {
        Binding::Buffer(_) if ty.contains('*') && strip_ref(ty).is_none() => 0,
        Binding::Buffer(_) => 1,
        Binding::Threadgroup(_) => 2,
        Binding::Builtin(_) => 3,
    }
}

pub fn generate(kernels: &[Kernel], exports: &[Export]) -> String {
    let mut out = String::from("\n# 1 \"<msl-emu adapters>\"\n");
    for (k, kernel) in kernels.iter().enumerate() {
        let header = kernel.template_header.as_deref().unwrap_or("");
        let targs = if kernel.template_header.is_some() {
            format!("<{}>", kernel.template_args.join(", "))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{header} static inline void __msl_adapt_{k}(const __msl_thread* __t) {{"
        );
        out.push_str("  const __msl_common* __c = __t->c; (void)__c;\n");
        let mut sizes = Vec::new();
        let mut aligns = Vec::new();
        for (i, p) in kernel.params.iter().enumerate() {
            aligns.push(offset_alignment(&p.binding, &p.ty));
            let ty = p.ty.as_str();
            let src = match &p.binding {
                Binding::Buffer(n) => Some(format!("__c->buffers[{n}]")),
                Binding::Threadgroup(n) => Some(format!("__c->tg[{n}]")),
                Binding::Builtin(_) => None,
            };
            match (&p.binding, src) {
                (Binding::Builtin(b), _) => {
                    let [x, y, z] = b.components();
                    let base = strip_ref(ty).unwrap_or(ty);
                    let _ = writeln!(out, "  {base} __p{i} = __msl_pos<{base}>({x}, {y}, {z});");
                    sizes.push("0".to_string());
                }
                (_, Some(src)) => {
                    if let Some(base) = strip_ref(ty) {
                        let _ = writeln!(out, "  {base}& __p{i} = *({base}*)({src});");
                        sizes.push(format!("sizeof({base})"));
                    } else if ty.contains('*') {
                        let _ = writeln!(out, "  {ty} __p{i} = ({ty})({src});");
                        sizes.push("0".to_string());
                    } else {
                        let _ = writeln!(out, "  {ty} __p{i} = *({ty}*)({src});");
                        sizes.push(format!("sizeof({ty})"));
                    }
                }
                (_, None) => unreachable!("buffer and threadgroup bindings have a source"),
            }
        }
        let args: Vec<String> = (0..kernel.params.len())
            .map(|i| format!("__p{i}"))
            .collect();
        let _ = writeln!(
            out,
            "  {}{}({});\n}}",
            kernel.qualified,
            targs,
            args.join(", ")
        );
        sizes.push("0".to_string());
        aligns.push("1".to_string());
        let _ = writeln!(
            out,
            "{header} static inline __msl_u64 __msl_psize_{k}(int __i) {{ const __msl_u64 __s[] = {{{}}}; return __s[__i]; }}",
            sizes.join(", ")
        );
        let _ = writeln!(
            out,
            "{header} static inline __msl_u64 __msl_palign_{k}(int __i) {{ const __msl_u64 __s[] = {{{}}}; return __s[__i]; }}",
            aligns.join(", ")
        );
    }
    for (e, ex) in exports.iter().enumerate() {
        let _ = writeln!(
            out,
            "extern \"C\" void __msl_entry_{e}(const __msl_thread* __t) {{ __msl_adapt_{}{}(__t); }}",
            ex.kernel, ex.args
        );
    }
    out.push_str(
        "extern \"C\" __attribute__((visibility(\"default\"), used)) const __msl_kernel_info* __msl_emu_kernels(__msl_u32* __n) {\n",
    );
    for (e, ex) in exports.iter().enumerate() {
        let kernel = &kernels[ex.kernel];
        let _ = write!(out, "  static const __msl_param_info __params_{e}[] = {{");
        for (i, p) in kernel.params.iter().enumerate() {
            let index = match p.binding {
                Binding::Buffer(n) | Binding::Threadgroup(n) => n,
                Binding::Builtin(_) => 0,
            };
            let _ = write!(
                out,
                "{{{}u, {index}u, __msl_psize_{k}{a}({i}), {}u, (__msl_u32)__msl_palign_{k}{a}({i}), \"{}\"}}, ",
                kind_code(&p.binding, &p.ty),
                p.optional as u32,
                p.name,
                k = ex.kernel,
                a = ex.args,
            );
        }
        out.push_str("{3u, 0u, 0u, 0u, 1u, \"\"}};\n");
    }
    out.push_str("  static const __msl_kernel_info __k[] = {");
    for (e, ex) in exports.iter().enumerate() {
        let kernel = &kernels[ex.kernel];
        let ns = kernel.namespace_prefix();
        let _ = write!(
            out,
            "{{\"{}\", __msl_entry_{e}, {}u, {}u, __params_{e}, {ns}__msl_tg_bytes_{k}{a}(), (__msl_u32){ns}__msl_max_threads_{k}{a}(), 0u}}, ",
            ex.name,
            ex.uses_sync as u32,
            kernel.params.len(),
            k = ex.kernel,
            a = ex.args,
        );
    }
    out.push_str("{\"\", nullptr, 0u, 0u, nullptr, 0u, 0u, 0u}};\n");
    let _ = writeln!(out, "  *__n = {}u;\n  return __k;\n}}", exports.len());
    out
}
