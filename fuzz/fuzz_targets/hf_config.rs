//! Feeds arbitrary bytes to the config.json parser: it must return a config or
//! a one-line error, and an accepted config must pass or fail validation cleanly.
#![no_main]

use std::path::Path;

use forge_frontend::hf::{config, json::JsonObject};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = JsonObject::parse(Path::new("config.json"), data).and_then(|obj| config::parse(&obj));
    match parsed {
        Ok(cfg) => {
            // A config that validates must also yield a graph without panicking.
            match forge_ir::validate::validate_config(&cfg) {
                Ok(()) => drop(forge_frontend::graph_builder::build_graph(&cfg)),
                Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
});
