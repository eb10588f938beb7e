//! The `attention_prefill` kernel family (templates/metal/attention_prefill.metal.j2).
