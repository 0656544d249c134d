//! attention_decode: see shaders/attention_decode.wgsl (not yet written).
