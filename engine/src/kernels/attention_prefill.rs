//! attention_prefill: see shaders/attention_prefill.wgsl (not yet written).
