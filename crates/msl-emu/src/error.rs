//! Error and diagnostic types: every failure is one line, compile failures are
//! `file:line: message` lines pointing into the original `.metal` source.

use std::fmt;

/// One compiler or rewriter message located in a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub message: String,
}

/// All error messages of one compile or syntax check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub messages: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.messages.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostics {
    pub fn single(file: &str, line: u32, message: impl Into<String>) -> Diagnostics {
        Diagnostics {
            messages: vec![Diagnostic {
                file: file.to_string(),
                line,
                message: message.into(),
            }],
        }
    }
}

/// An msl-emu failure: a one-line message, or the diagnostics of a failed compile.
#[derive(Debug)]
pub struct Error {
    message: String,
    diagnostics: Option<Diagnostics>,
}

impl Error {
    pub(crate) fn msg(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            diagnostics: None,
        }
    }

    pub(crate) fn compile(diagnostics: Diagnostics) -> Error {
        Error {
            message: String::new(),
            diagnostics: Some(diagnostics),
        }
    }

    /// The compiler diagnostics when this is a compile error.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        self.diagnostics.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.diagnostics {
            Some(d) if !d.messages.is_empty() => write!(f, "{d}"),
            _ => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for Error {}
