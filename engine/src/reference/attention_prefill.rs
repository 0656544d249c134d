//! CPU reference for attention_prefill (not yet written).
