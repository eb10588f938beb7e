//! The `rms_norm` kernel family (templates/metal/rms_norm.metal.j2).
