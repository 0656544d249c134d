//! CPU reference for attention_decode (not yet written).
