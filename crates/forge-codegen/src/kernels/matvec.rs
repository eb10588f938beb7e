//! The `matvec` kernel family (templates/metal/matvec.metal.j2).
