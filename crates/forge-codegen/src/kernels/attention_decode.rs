//! The `attention_decode` kernel family (templates/metal/attention_decode.metal.j2).
