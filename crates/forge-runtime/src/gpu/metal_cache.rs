//! What a second start reuses on Metal, kept in `~/Library/Caches/forge/` under
//! an FNV-1a hash of the kernels' source: the kernels compiled to a metallib
//! by Apple's offline compiler (`xcrun metal`), so the library is not compiled
//! again, and a binary archive of their pipelines, so the GPU code is not
//! compiled again either. Without the offline compiler (it ships with Xcode,
//! not with the Command Line Tools) the library is compiled from source at
//! every start, as Metal alone allows.

use anyhow::{anyhow, Result};
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::ProtocolObject;
use objc2_foundation::{NSString, NSURL};
use objc2_metal::{
    MTLBinaryArchive, MTLBinaryArchiveDescriptor, MTLCompileOptions, MTLDevice, MTLLibrary,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

type Library = Retained<ProtocolObject<dyn MTLLibrary>>;

/// The cache files of one version of the kernels.
pub(super) struct KernelCache {
    /// `~/Library/Caches/forge/<hash>`, to which each file adds its extension.
    stem: PathBuf,
}

/// An FNV-1a hash of the kernels' source.
fn source_hash(source: &str) -> u64 {
    source.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn file_url(path: &Path) -> Retained<NSURL> {
    NSURL::fileURLWithPath(&NSString::from_str(&path.to_string_lossy()))
}

impl KernelCache {
    /// The cache of `source`, or none when there is no home directory to keep it in.
    pub(super) fn new(source: &str) -> Option<KernelCache> {
        let home = std::env::var_os("HOME")?;
        let dir = PathBuf::from(home).join("Library/Caches/forge");
        std::fs::create_dir_all(&dir).ok()?;
        Some(KernelCache {
            stem: dir.join(format!("{:016x}", source_hash(source))),
        })
    }

    fn path(&self, extension: &str) -> PathBuf {
        self.stem.with_extension(extension)
    }

    /// The binary archive's file (read by `open_archive`, written by the caller).
    pub(super) fn archive_path(&self) -> PathBuf {
        self.path("metalar")
    }

    /// The library of `source`: the cached metallib, or one the offline
    /// compiler writes into the cache now, or (without it) compiled from source.
    pub(super) fn library(
        &self,
        device: &ProtocolObject<dyn MTLDevice>,
        source: &str,
    ) -> Result<Library> {
        let metallib = self.path("metallib");
        if let Some(library) = load_metallib(device, &metallib) {
            return Ok(library);
        }
        // A stale or unreadable metallib is compiled again.
        let _ = std::fs::remove_file(&metallib);
        let no_compiler = self.path("no-offline-compiler");
        if !no_compiler.exists() {
            match compile_offline(source, &metallib) {
                Ok(()) => {
                    if let Some(library) = load_metallib(device, &metallib) {
                        return Ok(library);
                    }
                }
                Err(reason) => {
                    // Said once per version of the kernels; the marker spares later starts the attempt.
                    eprintln!(
                        "note: {reason}; the kernels are compiled from source at every start"
                    );
                    let _ = std::fs::write(&no_compiler, format!("{reason}\n"));
                }
            }
        }
        compile_source(device, source)
    }
}

/// The metallib at `path`, when there is one Metal can load.
fn load_metallib(device: &ProtocolObject<dyn MTLDevice>, path: &Path) -> Option<Library> {
    if !path.is_file() {
        return None;
    }
    autoreleasepool(|_| device.newLibraryWithURL_error(&file_url(path)).ok())
}

/// Compiles `source` with `xcrun metal` into `metallib`, written whole or not
/// at all (staged under this process's id, then renamed into place).
fn compile_offline(source: &str, metallib: &Path) -> std::result::Result<(), String> {
    let staged =
        |extension: &str| metallib.with_extension(format!("{}.{extension}", std::process::id()));
    let (input, output) = (staged("metal"), staged("metallib"));
    std::fs::write(&input, source).map_err(|e| format!("cannot write {}: {e}", input.display()))?;
    // IEEE float semantics, as compile_source asks of the runtime compiler.
    let status = Command::new("xcrun")
        .args(["-sdk", "macosx", "metal", "-fno-fast-math", "-o"])
        .arg(&output)
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_file(&input);
    let result = match status {
        Ok(status) if status.success() => std::fs::rename(&output, metallib)
            .map_err(|e| format!("cannot write {}: {e}", metallib.display())),
        Ok(_) => Err(
            "Metal's offline compiler (xcrun -sdk macosx metal) is not installed or failed".into(),
        ),
        Err(e) => Err(format!("xcrun could not be run ({e})")),
    };
    let _ = std::fs::remove_file(&output);
    result
}

/// Compiles `source` with the runtime compiler.
pub(super) fn compile_source(
    device: &ProtocolObject<dyn MTLDevice>,
    source: &str,
) -> Result<Library> {
    let options = MTLCompileOptions::new();
    // IEEE float semantics, as msl-emu executes them, so both backends compute the same logits.
    #[allow(deprecated)]
    options.setFastMathEnabled(false);
    autoreleasepool(|_| {
        device
            .newLibraryWithSource_options_error(&NSString::from_str(source), Some(&options))
            .map_err(|e| {
                anyhow!(
                    "compiling shaders/kernels.metal with Metal: {}",
                    e.localizedDescription()
                )
            })
    })
}

/// The binary archive at `path`, read when it exists and created empty otherwise.
pub(super) fn open_archive(
    device: &ProtocolObject<dyn MTLDevice>,
    path: &Path,
) -> Option<Retained<ProtocolObject<dyn MTLBinaryArchive>>> {
    let descriptor = MTLBinaryArchiveDescriptor::new();
    if path.is_file() {
        descriptor.setUrl(Some(&file_url(path)));
    }
    // A stale or unreadable archive only costs a compile: start an empty one.
    device
        .newBinaryArchiveWithDescriptor_error(&descriptor)
        .or_else(|_| {
            device.newBinaryArchiveWithDescriptor_error(&MTLBinaryArchiveDescriptor::new())
        })
        .ok()
}

/// Writes `archive` to `path` (best effort: a failure only costs a compile next time).
pub(super) fn store_archive(archive: &ProtocolObject<dyn MTLBinaryArchive>, path: &Path) -> bool {
    archive.serializeToURL_error(&file_url(path)).is_ok()
}
