//! Feeds arbitrary bytes to the GGUF header parser: it must return Ok or a
//! one-line error, and every tensor it accepts must lie inside the input.
#![no_main]

use std::path::Path;

use forge_frontend::gguf::parse_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_bytes(Path::new("fuzz.gguf"), data) {
        Ok(header) => {
            for t in &header.tensors {
                let end = t.offset.checked_add(t.n_bytes).expect("range overflow");
                assert!(
                    end <= data.len() as u64,
                    "tensor '{}' outside the input",
                    t.name
                );
                assert_eq!(t.offset % header.alignment, 0);
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
});
