//! safetensors reader. Not yet written.
