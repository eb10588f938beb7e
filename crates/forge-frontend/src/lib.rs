//! forge-frontend: reads checkpoints from disk into forge-ir models.

pub mod error;

pub use error::{Error, Result};
