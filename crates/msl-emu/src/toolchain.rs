//! Finding clang, the on-disk cache, and running clang: the preprocessing
//! pass, the shared-object build and the strict syntax check. Diagnostics are
//! parsed from clang's `file:line:col: error: message` lines.

use crate::error::{Diagnostic, Diagnostics, Error};
use crate::hash::Hash128;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The shim headers, embedded so the crate works from anywhere.
const SHIM_FILES: &[(&str, &str)] = &[
    ("metal_stdlib", include_str!("../shim/metal_stdlib")),
    ("msl_emu_abi.h", include_str!("../shim/msl_emu_abi.h")),
    ("msl_emu_math.h", include_str!("../shim/msl_emu_math.h")),
    ("msl_emu_simd.h", include_str!("../shim/msl_emu_simd.h")),
    ("msl_emu_atomic.h", include_str!("../shim/msl_emu_atomic.h")),
    ("msl_emu_matrix.h", include_str!("../shim/msl_emu_matrix.h")),
    (
        "msl_emu_support.h",
        include_str!("../shim/msl_emu_support.h"),
    ),
];

/// Metal headers a kernel may include; the preprocessing pass sees them empty
/// (the shim is force-included into the real compile instead).
const METAL_HEADERS: &[&str] = &[
    "metal_stdlib",
    "metal_math",
    "metal_simdgroup",
    "metal_simdgroup_matrix",
    "metal_atomic",
    "metal_compute",
    "metal_integer",
    "metal_common",
    "metal_relational",
    "metal_geometric",
    "metal_numeric",
    "metal_types",
    "metal_matrix",
    "metal_pack",
    "metal_array",
    "metal_limits",
    "metal_type_traits",
    "metal_utility",
    "metal_graphics",
    "metal_texture",
    "metal_config",
    "metal_uniform",
];

/// The compile flags; part of the cache key.
const COMPILE_FLAGS: &[&str] = &[
    "-x",
    "c++",
    "-std=c++20",
    "-O2",
    "-fPIC",
    "-shared",
    "-fsigned-char",
    "-fno-exceptions",
    "-fno-rtti",
    "-fvisibility=hidden",
    "-fno-threadsafe-statics",
    "-Wl,-z,defs",
    "-fno-math-errno",
    "-ffp-contract=off",
    "-w",
    "-Xclang",
    "-ffloat16-excess-precision=none",
    "-Xclang",
    "-fbfloat16-excess-precision=none",
];

/// The widest x86-64 level this CPU runs, so half conversions and vector code
/// use F16C/AVX2 instead of library calls. Without -ffast-math and with
/// -ffp-contract=off the results do not depend on the level.
fn target_flags() -> &'static [&'static str] {
    #[cfg(target_arch = "x86_64")]
    {
        let v3 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("lzcnt")
            && is_x86_feature_detected!("movbe");
        let v2 = is_x86_feature_detected!("sse4.2")
            && is_x86_feature_detected!("popcnt")
            && is_x86_feature_detected!("ssse3");
        if v3 {
            return &["-march=x86-64-v3"];
        }
        if v2 {
            return &["-march=x86-64-v2"];
        }
    }
    &[]
}

/// $MSL_EMU_CLANG, else clang-19 on PATH, else clang on PATH if its major version is at least 17.
pub fn clang_path() -> Result<PathBuf, Error> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND.get_or_init(find_clang).clone().map_err(Error::msg)
}

fn find_clang() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MSL_EMU_CLANG") {
        let p = PathBuf::from(p);
        return match version_of(&p) {
            Some(_) => Ok(p),
            None => Err(format!(
                "MSL_EMU_CLANG={}: not a runnable clang",
                p.display()
            )),
        };
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
            .unwrap_or(None)
    };
    if let Some(p) = on_path("clang-19") {
        return Ok(p);
    }
    if let Some(p) = on_path("clang") {
        if let Some(v) = version_of(&p) {
            if major_version(&v).is_some_and(|m| m >= 17) {
                return Ok(p);
            }
            return Err(format!(
                "{} is too old for msl-emu ({v}); install clang-19 or set MSL_EMU_CLANG",
                p.display()
            ));
        }
    }
    Err("clang-19 not found on PATH; install clang-19 or set MSL_EMU_CLANG".to_string())
}

fn version_of(p: &Path) -> Option<String> {
    let out = Command::new(p).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| text.lines().next().unwrap_or("").to_string())
}

fn major_version(v: &str) -> Option<u32> {
    let at = v.find("version ")? + 8;
    v[at..].split('.').next()?.parse().ok()
}

fn clang_version() -> Result<String, Error> {
    static V: OnceLock<Option<String>> = OnceLock::new();
    let path = clang_path()?;
    V.get_or_init(|| version_of(&path))
        .clone()
        .ok_or_else(|| Error::msg(format!("{}: `--version` failed", path.display())))
}

/// $MSL_EMU_CACHE, else $XDG_CACHE_HOME/msl-emu, else ~/.cache/msl-emu, else the temp dir.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MSL_EMU_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("msl-emu");
    }
    if let Some(p) = std::env::var_os("HOME") {
        return PathBuf::from(p).join(".cache").join("msl-emu");
    }
    std::env::temp_dir().join("msl-emu")
}

fn shim_hash() -> Hash128 {
    let mut h = Hash128::new();
    for (name, text) in SHIM_FILES {
        h.str(name);
        h.str(text);
    }
    h
}

/// Writes a file atomically (temp name + rename) so concurrent runs never see half a file.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = temp_name(path);
    std::fs::write(&tmp, data)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::msg(format!("{}: cannot write: {e}", path.display())))
}

fn temp_name(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// The directory holding the shim headers (and `stub/` with empty Metal headers).
fn shim_dir() -> Result<PathBuf, Error> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = cache_dir().join(format!("shim-{}", shim_hash().hex()));
        let make = || -> Result<(), Error> {
            let stub = dir.join("stub");
            std::fs::create_dir_all(&stub)
                .map_err(|e| Error::msg(format!("{}: cannot create: {e}", stub.display())))?;
            for (name, text) in SHIM_FILES {
                let p = dir.join(name);
                if std::fs::read(&p)
                    .map(|d| d != text.as_bytes())
                    .unwrap_or(true)
                {
                    write_atomic(&p, text.as_bytes())?;
                }
            }
            for name in METAL_HEADERS {
                let p = stub.join(name);
                if !p.exists() {
                    write_atomic(&p, b"")?;
                }
            }
            Ok(())
        };
        make().map(|_| dir.clone()).map_err(|e| e.to_string())
    })
    .clone()
    .map_err(Error::msg)
}

/// One `file:line:col: kind: message` line of clang's stderr.
fn diagnostic_line(line: &str) -> Option<(String, u32, &str, String)> {
    for kind in ["fatal error", "error", "note"] {
        let marker = format!(": {kind}: ");
        if let Some(at) = line.find(&marker) {
            let loc = &line[..at];
            let message = line[at + marker.len()..].to_string();
            let mut parts = loc.rsplitn(3, ':');
            let (col, ln, file) = (parts.next(), parts.next(), parts.next());
            return Some(match (file, ln.and_then(|l| l.parse().ok()), col) {
                (Some(f), Some(l), Some(_)) => (f.to_string(), l, kind, message),
                _ => (loc.to_string(), 0, kind, message),
            });
        }
    }
    None
}

/// Whether a diagnostic location is msl-emu's own code (shim headers, generated adapters).
fn is_internal(file: &str) -> bool {
    file.starts_with("<msl-emu")
        || file.starts_with("<built-in")
        || SHIM_FILES
            .iter()
            .any(|(name, _)| file.ends_with(&format!("/{name}")) && file.contains("/shim-"))
}

/// Parses clang's stderr into errors. An error inside msl-emu's own headers is
/// reported at the first user line among its notes ("requested here"), since
/// that is the line the kernel author can change.
pub fn parse_diagnostics(stderr: &str) -> Diagnostics {
    let mut messages: Vec<Diagnostic> = Vec::new();
    let mut relocate: Option<usize> = None;
    for line in stderr.lines() {
        let Some((file, line_no, kind, message)) = diagnostic_line(line) else {
            continue;
        };
        if kind == "note" {
            if let Some(i) = relocate {
                if !is_internal(&file) {
                    messages[i].file = file;
                    messages[i].line = line_no;
                    relocate = None;
                }
            }
            continue;
        }
        relocate = is_internal(&file).then_some(messages.len());
        messages.push(Diagnostic {
            file,
            line: line_no,
            message,
        });
    }
    if messages.is_empty() && !stderr.trim().is_empty() {
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        messages.push(Diagnostic {
            file: "clang".to_string(),
            line: 0,
            message: first,
        });
    }
    Diagnostics { messages }
}

fn run_clang(args: &[String], stdin: &str) -> Result<(bool, Vec<u8>, String), Error> {
    let clang = clang_path()?;
    let mut child = Command::new(&clang)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::msg(format!("{}: cannot run: {e}", clang.display())))?;
    let mut input = child.stdin.take().expect("stdin is piped");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = child
        .wait_with_output()
        .map_err(|e| Error::msg(format!("{}: {e}", clang.display())))?;
    let _ = writer.join();
    Ok((
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs the preprocessor over the kernel source. `name` is what diagnostics
/// call the file; `dir` is searched for `#include "..."`.
pub fn preprocess(
    name: &str,
    source: &str,
    dir: Option<&Path>,
    defines: &[(String, String)],
) -> Result<String, Error> {
    let shim = shim_dir()?;
    let mut args: Vec<String> = [
        "-E",
        "-x",
        "c++",
        "-std=c++20",
        "-D__METAL_VERSION__=310",
        "-D__METAL_MACOS__=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("-D__HAVE_BFLOAT__=1".into());
    args.push("-D__MSL_EMU__=1".into());
    for (k, v) in defines {
        args.push(format!("-D{k}={v}"));
    }
    if let Some(d) = dir {
        args.push(format!("-I{}", d.display()));
    }
    args.push(format!("-I{}", shim.join("stub").display()));
    args.push("-".into());
    let (ok, stdout, stderr) = run_clang(&args, source)?;
    let fix_name = |s: &str| s.replace("<stdin>", name);
    if !ok {
        return Err(Error::compile(parse_diagnostics(&fix_name(&stderr))));
    }
    let text = String::from_utf8_lossy(&stdout);
    Ok(text
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                fix_name(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Builds (or finds in the cache) the shared object for rewritten source.
pub fn build_shared_object(source: &str, count_traffic: bool) -> Result<PathBuf, Error> {
    let shim = shim_dir()?;
    let mut key = shim_hash();
    key.str(&clang_version()?);
    for f in COMPILE_FLAGS.iter().chain(target_flags()) {
        key.str(f);
    }
    key.str(if count_traffic {
        "count_traffic"
    } else {
        "plain"
    });
    key.str(source);
    let dir = cache_dir().join("lib");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::msg(format!("{}: cannot create: {e}", dir.display())))?;
    let out = dir.join(format!("{}.so", key.hex()));
    if out.is_file() {
        return Ok(out);
    }
    let tmp = temp_name(&out);
    let mut args: Vec<String> = COMPILE_FLAGS
        .iter()
        .chain(target_flags())
        .map(|s| s.to_string())
        .collect();
    args.push("-include".into());
    args.push(shim.join("metal_stdlib").display().to_string());
    if count_traffic {
        args.push("-D__MSL_EMU_COUNT_TRAFFIC=1".into());
        args.push("-fsanitize-coverage=bb,trace-loads,trace-stores".into());
    }
    args.extend([
        "-o".to_string(),
        tmp.display().to_string(),
        "-".to_string(),
        "-lm".to_string(),
    ]);
    let (ok, _, stderr) = run_clang(&args, source)?;
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::compile(parse_diagnostics(&stderr)));
    }
    std::fs::rename(&tmp, &out)
        .map_err(|e| Error::msg(format!("{}: cannot write: {e}", out.display())))?;
    Ok(out)
}

/// `clang -fsyntax-only` with Metal address spaces mapped to clang's.
pub fn strict_syntax_check(source: &str) -> Result<(), Error> {
    let shim = shim_dir()?;
    let mut args: Vec<String> = [
        "-fsyntax-only",
        "-x",
        "c++",
        "-std=c++20",
        "-fsigned-char",
        "-w",
        "-D__MSL_EMU_STRICT=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("-include".into());
    args.push(shim.join("metal_stdlib").display().to_string());
    args.push("-".into());
    let (ok, _, stderr) = run_clang(&args, source)?;
    if ok {
        Ok(())
    } else {
        Err(Error::compile(parse_diagnostics(&stderr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_the_shim_move_to_the_kernel_line_that_caused_them() {
        let stderr = "In file included from <built-in>:1:\n/c/shim-ab/metal_stdlib:120:3: error: static assertion failed: as_type needs types of equal size\n  120 | x\n/c/shim-ab/metal_stdlib:118:1: note: declared here\nk.metal:7:12: note: in instantiation of function template specialization 'as_type<float, half>' requested here\nk.metal:9:1: error: use of undeclared identifier 'q'\n";
        let d = parse_diagnostics(stderr);
        assert_eq!(
            d.to_string(),
            "k.metal:7: static assertion failed: as_type needs types of equal size\nk.metal:9: use of undeclared identifier 'q'"
        );
    }
}
