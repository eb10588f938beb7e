//! Renders the generated project's `src/weights.rs`, the reader of the file
//! [`export_weights`](super::export_weights) writes.

use serde::Serialize;

#[derive(Serialize)]
struct ReaderContext {
    fingerprint_literal: String,
    flags_literal: String,
    model_hint_literal: String,
}

/// The source of `src/weights.rs` for a project whose plan has `fingerprint`;
/// `dtype` (as `--dtype` takes it, empty when the compile used the default) and `model_hint` (the checkpoint path) go
/// into the message that tells how to re-create mismatched weights.
pub fn weights_reader_source(
    fingerprint: &str,
    dtype: &str,
    model_hint: &str,
) -> Result<String, minijinja::Error> {
    // Debug formatting of a str is a valid Rust string literal with every escape it needs.
    let context = ReaderContext {
        fingerprint_literal: format!("{fingerprint:?}"),
        flags_literal: match dtype {
            "" => "\"\"".to_string(),
            d => format!("{:?}", format!(" --dtype {d}")),
        },
        model_hint_literal: format!("{model_hint:?}"),
    };
    crate::templates::render("host/weights.rs.j2", context)
}
