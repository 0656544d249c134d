//! Errors of the shaderlm library: each names the file or input and the problem, for people.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file that could not be opened or read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A checkpoint, config or tokenizer file whose contents are wrong: truncated, malformed,
    /// inconsistent, or of a kind we do not support.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    /// A required tensor is absent from the checkpoint.
    #[error("{path}: tensor {name} is missing")]
    MissingTensor { path: PathBuf, name: String },

    /// A tensor has the wrong shape for the config.
    #[error("{path}: tensor {name} has shape {got:?}, expected {expected:?}")]
    TensorShape { path: PathBuf, name: String, expected: Vec<usize>, got: Vec<usize> },

    /// Input the user gave that cannot be used (a prompt longer than the context, a bad flag).
    #[error("{0}")]
    Input(String),

    /// The model does not fit the GPU.
    #[error("the model needs {needed} bytes of GPU memory but the device allows {available}: {what}")]
    OutOfMemory { what: String, needed: u64, available: u64 },

    /// Tokenizer or chat-template failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// An engine error (shape check, GPU failure).
    #[error(transparent)]
    Engine(#[from] shaderlm_engine::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A format error in `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Format { path: path.into(), message: message.into() }
    }
}
