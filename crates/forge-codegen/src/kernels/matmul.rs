//! The `matmul` kernel family (templates/metal/matmul.metal.j2).
