//! The `add` kernel family (templates/metal/add.metal.j2).
