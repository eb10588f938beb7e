//! The `rope_store` kernel family (templates/metal/rope_store.metal.j2).
