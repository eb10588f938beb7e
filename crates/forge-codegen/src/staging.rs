//! Outputs built under a temporary name beside their destination and
//! renamed into place only when complete (tempfile removes them otherwise),
//! so a failed compile or export leaves nothing half-written.

use std::io;
use std::path::Path;

use tempfile::{NamedTempFile, TempDir};

/// A temporary file beside `dest`, to be persisted as `dest`.
pub(crate) fn file_beside(dest: &Path) -> io::Result<NamedTempFile> {
    let name = name_of(dest)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(&name).suffix(".forge-tmp");
    plain_permissions(&mut builder, 0o666);
    builder.tempfile_in(parent(dest))
}

/// A temporary directory beside `dest`, to be renamed to `dest`.
pub(crate) fn dir_beside(dest: &Path) -> io::Result<TempDir> {
    let name = name_of(dest)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(&name).suffix(".forge-tmp");
    plain_permissions(&mut builder, 0o777);
    builder.tempdir_in(parent(dest))
}

/// The directory `dest` is created in (`.` for a bare name).
pub(crate) fn parent(dest: &Path) -> &Path {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `.NAME.` for `dest`: hidden, and named after what it becomes.
fn name_of(dest: &Path) -> io::Result<String> {
    let name = dest
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    Ok(format!(".{}.", name.to_string_lossy()))
}

/// The permissions a plain create gives (`mode` less the umask) rather than
/// tempfile's owner-only ones, since the output is kept.
fn plain_permissions(builder: &mut tempfile::Builder, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (builder, mode);
}
