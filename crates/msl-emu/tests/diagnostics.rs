//! Strict mode (address spaces and Metal's language rules checked by clang
//! -fsyntax-only) and the error paths: compile errors name the original .metal
//! line, and bad dispatches are errors, not panics.

mod common;

use std::path::Path;

use common::*;
use msl_emu::{
    check_syntax, check_syntax_source, clang_path, dispatch_threadgroups, Buffer, CompileOptions,
    Diagnostics, FunctionConstants, Library,
};

/// 1-based line of the `// expect-error` marker in an invalid kernel file.
fn marked_line(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap();
    let index = text
        .lines()
        .position(|l| l.contains("// expect-error"))
        .unwrap_or_else(|| panic!("{} has no expect-error marker", path.display()));
    index as u32 + 1
}

fn assert_reported_at(diags: &Diagnostics, file_name: &str, line: u32) {
    let hit = diags
        .messages
        .iter()
        .any(|d| d.file.ends_with(file_name) && d.line == line && !d.message.is_empty());
    assert!(
        hit,
        "expected a diagnostic at {file_name}:{line}, got:\n{diags}"
    );
    let shown = diags.to_string();
    assert!(
        shown
            .lines()
            .any(|l| l.contains(&format!("{file_name}:{line}: "))),
        "Display should give file:line: message, got:\n{shown}"
    );
}

fn strict_rejects(file: &str) -> Diagnostics {
    let path = kernel_path(&format!("invalid/{file}"));
    let diags = match check_syntax(&path) {
        Ok(()) => panic!("strict mode accepted {file}"),
        Err(d) => d,
    };
    assert_reported_at(&diags, file, marked_line(&path));
    diags
}

#[test]
fn strict_mode_rejects_address_space_mismatch() {
    strict_rejects("address_space_mismatch.metal");
}

#[test]
fn strict_mode_rejects_undeclared_identifier() {
    let diags = strict_rejects("undeclared_identifier.metal");
    assert!(
        diags.messages.iter().any(|d| d.message.contains("bias")),
        "{diags}"
    );
}

#[test]
fn strict_mode_rejects_double() {
    strict_rejects("double_type.metal");
}

#[test]
fn strict_mode_accepts_every_valid_kernel() {
    let dir = kernel_path("");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "metal") {
            if let Err(d) = check_syntax(&path) {
                panic!("strict mode rejected {}:\n{d}", path.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 12,
        "only {checked} kernels found in {}",
        dir.display()
    );
}

#[test]
fn strict_mode_accepts_vector_conversion_of_a_device_value() {
    // The minimal form of what matvec_f16.metal does: converting a half4 read
    // straight from device memory. Metal accepts it, so strict mode must too.
    let src = "#include <metal_stdlib>\nusing namespace metal;\n\
               kernel void widen(device const half4 *w [[buffer(0)]],\n\
                                 device float4 *y [[buffer(1)]],\n\
                                 uint i [[thread_position_in_grid]]) {\n\
                   y[i] = float4(w[i]);\n\
               }\n";
    if let Err(d) = check_syntax_source("widen.metal", src) {
        panic!("strict mode rejected float4(device half4):\n{d}");
    }
}

#[test]
fn strict_check_of_source_names_the_given_file() {
    let path = kernel_path("invalid/undeclared_identifier.metal");
    let source = std::fs::read_to_string(&path).unwrap();
    let diags = check_syntax_source("inline_kernel.metal", &source).unwrap_err();
    assert_reported_at(&diags, "inline_kernel.metal", marked_line(&path));
}

#[test]
fn strict_library_build_rejects_address_space_mismatch() {
    let path = kernel_path("invalid/address_space_mismatch.metal");
    let options = CompileOptions {
        strict: true,
        ..CompileOptions::default()
    };
    let err = match Library::from_file(&path, &options) {
        Ok(_) => panic!("strict build accepted an address-space mismatch"),
        Err(e) => e.to_string(),
    };
    let at = format!("address_space_mismatch.metal:{}", marked_line(&path));
    assert!(err.contains(&at), "error should name {at}: {err}");
}

#[test]
fn compile_error_names_the_original_metal_line() {
    // The source rewriter changes the text clang sees; the error must still point
    // at the line in the user's file.
    let path = kernel_path("invalid/undeclared_identifier.metal");
    let err = match Library::from_file(&path, &CompileOptions::default()) {
        Ok(_) => panic!("a kernel using an undeclared identifier compiled"),
        Err(e) => e.to_string(),
    };
    let at = format!("undeclared_identifier.metal:{}", marked_line(&path));
    assert!(err.contains(&at), "error should name {at}: {err}");
}

#[test]
fn error_inside_a_stdlib_template_names_the_kernel_line() {
    // The user can do nothing with a line number in the emulator's own header.
    let path = kernel_path("invalid/as_type_size_mismatch.metal");
    let at = format!("as_type_size_mismatch.metal:{}", marked_line(&path));
    let err = match Library::from_file(&path, &CompileOptions::default()) {
        Ok(_) => panic!("as_type<float>(half) compiled"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&at), "error should name {at}: {err}");
    let diags = check_syntax(&path).unwrap_err();
    assert_reported_at(&diags, "as_type_size_mismatch.metal", marked_line(&path));
}

#[test]
fn missing_source_file_is_a_one_line_error() {
    let path = kernel_path("no_such_kernel.metal");
    let err = match Library::from_file(&path, &CompileOptions::default()) {
        Ok(_) => panic!("compiled a file that does not exist"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("no_such_kernel.metal"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn clang_is_found() {
    let clang = clang_path().unwrap();
    assert!(
        clang.exists() || clang.components().count() == 1,
        "{}",
        clang.display()
    );
}

fn matvec() -> msl_emu::Pipeline {
    load("matvec_f32.metal")
        .pipeline("matvec_f32", &FunctionConstants::default())
        .unwrap()
}

fn one_line_error(result: Result<msl_emu::DispatchStats, msl_emu::Error>, what: &str) -> String {
    match result {
        Ok(_) => panic!("{what}: dispatch succeeded"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "{what}: not one line: {msg}"
            );
            msg
        }
    }
}

#[test]
fn unknown_kernel_name_is_an_error() {
    let lib = load("matvec_f32.metal");
    let msg = match lib.pipeline("matvec_f64", &FunctionConstants::default()) {
        Ok(_) => panic!("made a pipeline for a kernel that does not exist"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("matvec_f64"), "{msg}");
}

#[test]
fn missing_buffer_binding_is_an_error() {
    let (w, x) = (Buffer::new(64 * 4), Buffer::new(16));
    let params = words(&[Word::U(4), Word::U(4)]);
    // Output buffer 2 is not bound.
    let msg = one_line_error(
        dispatch_threadgroups(
            &matvec(),
            1u32.into(),
            32u32.into(),
            &[buf(0, &w), buf(1, &x), bytes(3, &params)],
        ),
        "missing buffer(2)",
    );
    assert!(msg.contains('2'), "should name the missing index: {msg}");
}

#[test]
fn threadgroup_over_1024_threads_is_an_error() {
    let (w, x, y) = (Buffer::new(64 * 4), Buffer::new(16), Buffer::new(16));
    let params = words(&[Word::U(4), Word::U(4)]);
    one_line_error(
        dispatch_threadgroups(
            &matvec(),
            1u32.into(),
            1056u32.into(),
            &[buf(0, &w), buf(1, &x), buf(2, &y), bytes(3, &params)],
        ),
        "1056 threads per threadgroup",
    );
}

#[test]
fn constant_struct_larger_than_its_bytes_is_an_error() {
    let (w, x, y) = (Buffer::new(64 * 4), Buffer::new(16), Buffer::new(16));
    // MatvecParams is two uints; only one is supplied.
    let short = 4u32.to_le_bytes();
    one_line_error(
        dispatch_threadgroups(
            &matvec(),
            1u32.into(),
            32u32.into(),
            &[buf(0, &w), buf(1, &x), buf(2, &y), bytes(3, &short)],
        ),
        "4-byte MatvecParams",
    );
}

#[test]
fn missing_threadgroup_memory_binding_is_an_error() {
    let pipe = load("transpose_dynamic_tg.metal")
        .pipeline("transpose_f32", &FunctionConstants::default())
        .unwrap();
    let (a, b) = (Buffer::new(64 * 4), Buffer::new(64 * 4));
    let params = words(&[Word::U(8), Word::U(8)]);
    one_line_error(
        dispatch_threadgroups(
            &pipe,
            1u32.into(),
            (8u32, 8u32).into(),
            &[buf(0, &a), buf(1, &b), bytes(2, &params)],
        ),
        "no [[threadgroup(0)]] length",
    );
}

#[test]
fn bindings_are_checked_before_running() {
    // A failed dispatch must not have run part of the grid.
    let (w, x, y) = (
        Buffer::from_slice(&[1.0f32; 16]),
        Buffer::from_slice(&[1.0f32; 4]),
        Buffer::new(16),
    );
    let short = 4u32.to_le_bytes();
    let _ = dispatch_threadgroups(
        &matvec(),
        1u32.into(),
        32u32.into(),
        &[buf(0, &w), buf(1, &x), buf(2, &y), bytes(3, &short)],
    );
    assert_eq!(y.read::<f32>(), vec![0.0; 4]);
    // And the same pipeline still works afterwards.
    let params = words(&[Word::U(4), Word::U(4)]);
    dispatch_threadgroups(
        &matvec(),
        1u32.into(),
        32u32.into(),
        &[buf(0, &w), buf(1, &x), buf(2, &y), bytes(3, &params)],
    )
    .unwrap();
    assert_eq!(y.read::<f32>(), vec![4.0; 4]);
}
