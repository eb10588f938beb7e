//! The `top_candidates` kernel family (templates/metal/top_candidates.metal.j2).
