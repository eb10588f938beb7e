//! The `argmax` kernel family (templates/metal/argmax.metal.j2).
