//! The `embedding` kernel family (templates/metal/embedding.metal.j2).
