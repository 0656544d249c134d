//! Model configuration (config.json, or GGUF metadata). Not yet written.

/// Hyper-parameters of a Llama-family decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {}
