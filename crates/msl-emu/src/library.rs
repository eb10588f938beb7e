//! Libraries and pipelines: MSL source -> preprocess -> rewrite -> clang ->
//! shared object (cached on disk by content hash, and in memory) -> dlopen.
//! Function constants specialise the source, so each distinct set of constant
//! values is its own (cached) shared object with the values folded in.

use crate::abi::{EntryFn, KernelInfo, RuntimeTable, Traffic, ABI_VERSION};
use crate::error::{Diagnostics, Error};
use crate::exec::{rt_barrier, rt_fail, rt_record_load, rt_simd_exchange, rt_tg_alloc};
use crate::hash::Hash128;
use crate::rewrite::{rewrite, FunctionConstant, Rewritten};
use crate::toolchain;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// Also run the strict address-space syntax check (see `check_syntax`) and fail on its errors.
    pub strict: bool,
    /// Build with load/store instrumentation so dispatches report bytes per buffer (slower).
    pub count_traffic: bool,
    /// Preprocessor definitions, as `-D name=value`.
    pub defines: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ConstantValue {
    Bool(bool),
    I32(i32),
    U32(u32),
    F32(f32),
}

/// Values for a kernel's `[[function_constant(index)]]` declarations.
#[derive(Clone, Debug, Default)]
pub struct FunctionConstants {
    values: BTreeMap<u32, ConstantValue>,
}

impl FunctionConstants {
    pub fn new() -> FunctionConstants {
        FunctionConstants::default()
    }
    pub fn set_bool(&mut self, index: u32, v: bool) {
        self.values.insert(index, ConstantValue::Bool(v));
    }
    pub fn set_i32(&mut self, index: u32, v: i32) {
        self.values.insert(index, ConstantValue::I32(v));
    }
    pub fn set_u32(&mut self, index: u32, v: u32) {
        self.values.insert(index, ConstantValue::U32(v));
    }
    pub fn set_f32(&mut self, index: u32, v: f32) {
        self.values.insert(index, ConstantValue::F32(v));
    }

    /// `#define`s giving each declared constant its value (0 and "not defined" when unset).
    fn prologue(&self, declared: &[FunctionConstant]) -> String {
        let mut out = String::new();
        let mut seen = std::collections::HashSet::new();
        for c in declared {
            if !seen.insert(c.index) {
                continue;
            }
            let (def, val) = match self.values.get(&c.index) {
                None => (0, "0".to_string()),
                Some(ConstantValue::Bool(b)) => (1, (*b as u32).to_string()),
                Some(ConstantValue::I32(v)) => (1, format!("({v})")),
                Some(ConstantValue::U32(v)) => (1, format!("{v}u")),
                Some(ConstantValue::F32(v)) => (
                    1,
                    format!("__builtin_bit_cast(float, 0x{:08x}u)", v.to_bits()),
                ),
            };
            out += &format!(
                "#define __MSL_FC_DEF_{} {def}\n#define __MSL_FC_VAL_{} {val}\n",
                c.index, c.index
            );
        }
        out
    }
}

pub(crate) struct ParamMeta {
    pub kind: u32,
    pub index: u32,
    pub size: u64,
    pub optional: bool,
    /// A buffer's binding offset must be a multiple of this.
    pub align: u64,
    pub name: String,
}

pub(crate) struct KernelMeta {
    pub name: String,
    pub entry: EntryFn,
    pub uses_sync: bool,
    pub params: Vec<ParamMeta>,
    /// Bytes of the kernel's own threadgroup variables.
    pub tg_static_bytes: u64,
    /// The kernel's declared `max_total_threads_per_threadgroup`, else 1024.
    pub max_threads: u32,
}

/// A loaded shared object.
pub(crate) struct LoadedLib {
    handle: *mut c_void,
    kernels: Vec<KernelMeta>,
    set_traffic: unsafe extern "C" fn(*mut Traffic),
    count_traffic: bool,
}

// The handle and entry points are immutable once loaded.
unsafe impl Send for LoadedLib {}
unsafe impl Sync for LoadedLib {}

impl Drop for LoadedLib {
    fn drop(&mut self) {
        unsafe { libc::dlclose(self.handle) };
    }
}

static RUNTIME: RuntimeTable = RuntimeTable {
    barrier: rt_barrier,
    simd_exchange: rt_simd_exchange,
    tg_alloc: rt_tg_alloc,
    fail: rt_fail,
    record_load: rt_record_load,
};

fn dl_error() -> String {
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown dlopen error".to_string()
    } else {
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

unsafe fn symbol(handle: *mut c_void, name: &str, path: &Path) -> Result<*mut c_void, Error> {
    let c = CString::new(name).expect("symbol names have no NUL");
    let p = libc::dlsym(handle, c.as_ptr());
    if p.is_null() {
        return Err(Error::msg(format!(
            "{}: missing symbol {name}",
            path.display()
        )));
    }
    Ok(p)
}

fn load(path: &Path, count_traffic: bool) -> Result<Arc<LoadedLib>, Error> {
    let cpath = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::msg(format!("{}: path contains NUL", path.display())))?;
    unsafe {
        let handle = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err(Error::msg(format!(
                "{}: cannot load: {}",
                path.display(),
                dl_error()
            )));
        }
        let mut lib = LoadedLib {
            handle,
            kernels: Vec::new(),
            set_traffic: noop_traffic,
            count_traffic,
        };
        let init: unsafe extern "C" fn(*const RuntimeTable) -> u32 =
            std::mem::transmute(symbol(handle, "__msl_emu_init", path)?);
        if init(&RUNTIME) != ABI_VERSION {
            return Err(Error::msg(format!(
                "{}: built for another msl-emu ABI version",
                path.display()
            )));
        }
        lib.set_traffic = std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut Traffic)>(
            symbol(handle, "__msl_emu_set_traffic", path)?,
        );
        let table: unsafe extern "C" fn(*mut u32) -> *const KernelInfo =
            std::mem::transmute(symbol(handle, "__msl_emu_kernels", path)?);
        let mut n = 0u32;
        let infos = table(&mut n);
        for k in 0..n as usize {
            let info = &*infos.add(k);
            let params = (0..info.nparams as usize)
                .map(|i| {
                    let p = &*info.params.add(i);
                    ParamMeta {
                        kind: p.kind,
                        index: p.index,
                        size: p.size,
                        optional: p.optional != 0,
                        align: u64::from(p.align.max(1)),
                        name: CStr::from_ptr(p.name).to_string_lossy().into_owned(),
                    }
                })
                .collect();
            lib.kernels.push(KernelMeta {
                name: CStr::from_ptr(info.name).to_string_lossy().into_owned(),
                entry: info.entry.ok_or_else(|| {
                    Error::msg(format!("{}: kernel without entry", path.display()))
                })?,
                uses_sync: info.uses_sync != 0,
                params,
                tg_static_bytes: info.tg_static_bytes,
                max_threads: info.max_threads,
            });
        }
        Ok(Arc::new(lib))
    }
}

unsafe extern "C" fn noop_traffic(_: *mut Traffic) {}

struct LibraryInner {
    name: String,
    rewritten: Rewritten,
    count_traffic: bool,
    base: Arc<LoadedLib>,
    specialised: Mutex<HashMap<u128, Arc<LoadedLib>>>,
}

/// Compiled MSL: the kernels of one source file.
#[derive(Clone)]
pub struct Library {
    inner: Arc<LibraryInner>,
}

/// One kernel ready to dispatch (with its function constants applied).
#[derive(Clone)]
pub struct Pipeline {
    lib: Arc<LoadedLib>,
    kernel: usize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pipeline({})", self.name())
    }
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Library({}: {})",
            self.inner.name,
            self.function_names().join(", ")
        )
    }
}

impl Pipeline {
    pub fn name(&self) -> &str {
        &self.lib.kernels[self.kernel].name
    }
    pub(crate) fn kernel(&self) -> &KernelMeta {
        &self.lib.kernels[self.kernel]
    }
    pub(crate) fn counts_traffic(&self) -> bool {
        self.lib.count_traffic
    }
    pub(crate) fn set_traffic_fn(&self) -> unsafe extern "C" fn(*mut Traffic) {
        self.lib.set_traffic
    }
    /// Whether the kernel runs its threads as fibers (it has barriers or SIMD collectives).
    pub fn uses_sync(&self) -> bool {
        self.kernel().uses_sync
    }
    /// Bytes of threadgroup memory the kernel's own threadgroup variables take
    /// (Metal's `staticThreadgroupMemoryLength`).
    pub fn static_threadgroup_memory(&self) -> u64 {
        self.kernel().tg_static_bytes
    }
    /// The threads a threadgroup may have: the kernel's declared
    /// `max_total_threads_per_threadgroup`, else Metal's 1024.
    pub fn max_total_threads_per_threadgroup(&self) -> u32 {
        self.kernel().max_threads
    }
}

/// Preprocesses and rewrites for the strict check; returns the source to check.
fn strict_source(
    name: &str,
    source: &str,
    dir: Option<&Path>,
    defines: &[(String, String)],
) -> Result<String, Error> {
    let pre = toolchain::preprocess(name, source, dir, defines)?;
    let rewritten = rewrite(&pre, name, true).map_err(Error::compile)?;
    Ok(FunctionConstants::default().prologue(&rewritten.function_constants) + &rewritten.source)
}

impl Library {
    /// Compiles MSL source; diagnostics call it `<msl source>`.
    pub fn from_source(msl: &str, options: &CompileOptions) -> Result<Library, Error> {
        Library::compile("<msl source>", msl, None, options)
    }

    /// Compiles a `.metal` file; diagnostics name this path and its lines.
    pub fn from_file(path: &Path, options: &CompileOptions) -> Result<Library, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::msg(format!("{}: cannot read: {e}", path.display())))?;
        Library::compile(
            &path.display().to_string(),
            &text,
            include_dir(path),
            options,
        )
    }

    fn compile(
        name: &str,
        source: &str,
        dir: Option<&Path>,
        options: &CompileOptions,
    ) -> Result<Library, Error> {
        static CACHE: OnceLock<Mutex<HashMap<u128, Library>>> = OnceLock::new();
        let mut key = Hash128::new();
        key.str(name);
        key.str(source);
        key.str(&format!("{options:?}"));
        let cache = CACHE.get_or_init(Default::default);
        // Included files may change between calls, so only sources without includes are memoised.
        let memoise = !source.contains("#include \"");
        if memoise {
            if let Some(lib) = cache.lock().ok().and_then(|c| c.get(&key.value()).cloned()) {
                return Ok(lib);
            }
        }
        if options.strict {
            toolchain::strict_syntax_check(&strict_source(name, source, dir, &options.defines)?)?;
        }
        let pre = toolchain::preprocess(name, source, dir, &options.defines)?;
        let rewritten = rewrite(&pre, name, false).map_err(Error::compile)?;
        let text = FunctionConstants::default().prologue(&rewritten.function_constants)
            + &rewritten.source;
        let so = toolchain::build_shared_object(&text, options.count_traffic)?;
        let base = load(&so, options.count_traffic)?;
        if base.kernels.len() != rewritten.exports.len() {
            return Err(Error::msg(format!(
                "{}: {} is stale (kernel table mismatch)",
                name,
                so.display()
            )));
        }
        let lib = Library {
            inner: Arc::new(LibraryInner {
                name: name.to_string(),
                rewritten,
                count_traffic: options.count_traffic,
                base,
                specialised: Mutex::new(HashMap::new()),
            }),
        };
        if memoise {
            if let Ok(mut c) = cache.lock() {
                c.insert(key.value(), lib.clone());
            }
        }
        Ok(lib)
    }

    pub fn function_names(&self) -> Vec<String> {
        self.inner
            .base
            .kernels
            .iter()
            .map(|k| k.name.clone())
            .collect()
    }

    /// The kernel `name` with `constants` applied to the library's function constants.
    pub fn pipeline(&self, name: &str, constants: &FunctionConstants) -> Result<Pipeline, Error> {
        let inner = &self.inner;
        let lib = if inner.rewritten.function_constants.is_empty() {
            inner.base.clone()
        } else {
            let prologue = constants.prologue(&inner.rewritten.function_constants);
            let mut key = Hash128::new();
            key.str(&prologue);
            let mut map = inner
                .specialised
                .lock()
                .map_err(|_| Error::msg("library lock poisoned"))?;
            match map.get(&key.value()) {
                Some(l) => l.clone(),
                None => {
                    let so = toolchain::build_shared_object(
                        &(prologue + &inner.rewritten.source),
                        inner.count_traffic,
                    )?;
                    let l = load(&so, inner.count_traffic)?;
                    map.insert(key.value(), l.clone());
                    l
                }
            }
        };
        match lib.kernels.iter().position(|k| k.name == name) {
            Some(kernel) => Ok(Pipeline { lib, kernel }),
            None => Err(Error::msg(format!(
                "{}: no kernel named '{name}' (kernels: {})",
                inner.name,
                self.function_names().join(", ")
            ))),
        }
    }
}

fn to_diagnostics(file: &str, e: Error) -> Diagnostics {
    match e.diagnostics() {
        Some(d) => d.clone(),
        None => Diagnostics::single(file, 0, e.to_string()),
    }
}

/// The directory a file's `#include "..."`s resolve from: `.` for a bare
/// file name, whose parent is the empty path (an empty `-I` would swallow
/// the next flag).
fn include_dir(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(dir) if dir.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

/// The strict check of a `.metal` file: Metal's address spaces become clang
/// address spaces and `double` is rejected, so `clang -fsyntax-only` reports
/// what the Metal compiler would about them, at the file's own lines.
pub fn check_syntax(path: &Path) -> Result<(), Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostics::single(&file, 0, format!("cannot read: {e}")))?;
    strict_source(&file, &text, include_dir(path), &[])
        .and_then(|s| toolchain::strict_syntax_check(&s))
        .map_err(|e| to_diagnostics(&file, e))
}

/// `check_syntax` for source text; `name` is what diagnostics call it.
pub fn check_syntax_source(name: &str, msl: &str) -> Result<(), Diagnostics> {
    strict_source(name, msl, None, &[])
        .and_then(|s| toolchain::strict_syntax_check(&s))
        .map_err(|e| to_diagnostics(name, e))
}
