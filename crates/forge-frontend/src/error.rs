//! The one error type every reader returns: a file and what is wrong with it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with one input file. Displays as a single line,
/// `<path>: <problem>`, which is what the `forge` binary prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub path: PathBuf,
    pub message: String,
}

impl Error {
    pub fn new(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        let message: String = message.into();
        // Keep the promise of one line even when a message quotes input.
        let message = message.replace(['\n', '\r'], " ");
        Error {
            path: path.as_ref().to_path_buf(),
            message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
