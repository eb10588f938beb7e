//! The template environment: every file of `templates/`, embedded at build
//! time, loaded into one minijinja environment.

use minijinja::{Environment, UndefinedBehavior};
use std::sync::OnceLock;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use embedded::{FORGE_RUNTIME_SOURCES, MSL_EMU_SOURCES};

/// The shared environment. Undefined variables are errors, so a template that
/// asks for a parameter the planner did not provide fails loudly.
pub fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        for (name, source) in embedded::TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not parse: {e:#}"));
        }
        env.add_filter("f32", format_f32);
        env.add_filter("rust_str", |s: String| format!("{s:?}"));
        env.add_function(
            "raise",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env
    })
}

/// An f32 as an MSL float literal that round-trips exactly (`1.5f`, `1e-06f`).
fn format_f32(value: f64) -> String {
    let v = value as f32;
    if v.is_infinite() {
        return if v > 0.0 {
            "INFINITY".into()
        } else {
            "(-INFINITY)".into()
        };
    }
    let text = format!("{v:?}");
    if text.contains('.') || text.contains('e') {
        format!("{text}f")
    } else {
        format!("{text}.0f")
    }
}

/// A file of `templates/` as written, for files copied into projects unrendered.
pub fn raw_template(name: &str) -> Option<&'static str> {
    embedded::TEMPLATES
        .iter()
        .find(|(path, _)| *path == name)
        .map(|(_, source)| *source)
}

/// Renders one template with a serialisable context.
pub fn render<S: serde::Serialize>(name: &str, context: S) -> Result<String, minijinja::Error> {
    environment()
        .get_template(name)?
        .render(minijinja::value::Serde(&context))
}
