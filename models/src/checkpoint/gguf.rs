//! GGUF reader. Not yet written.
