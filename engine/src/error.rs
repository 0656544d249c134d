//! One error type for the engine. Each variant names the operation and shows what was expected
//! against what was given, so a caller (or a person reading a CLI message) can see the problem.

use crate::DType;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched (or none exists at all).
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),

    /// The adapter exists but refused to open a device.
    #[error("could not open a device on adapter {adapter:?}: {reason}")]
    Device { adapter: String, reason: String },

    /// A tensor's shape does not fit the operation.
    #[error("{op}: {what}: expected {expected}, got {got}")]
    Shape { op: &'static str, what: String, expected: String, got: String },

    /// A tensor's element type does not fit the operation.
    #[error("{op}: {what} has dtype {got}, expected {expected}")]
    DType { op: &'static str, what: String, expected: String, got: DType },

    /// A buffer or binding would exceed what the device allows.
    #[error("{what} needs {bytes} bytes, but the device allows at most {limit} bytes")]
    TooLarge { what: String, bytes: u64, limit: u64 },

    /// WGSL that did not compile, or a pipeline the device rejected.
    #[error("shader {name}: {message}")]
    Shader { name: String, message: String },

    /// A validation error or device loss reported by wgpu.
    #[error("GPU error in {op}: {message}")]
    Gpu { op: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for a shape mismatch; `expected` and `got` are formatted with Debug.
    pub fn shape(
        op: &'static str,
        what: impl Into<String>,
        expected: impl std::fmt::Debug,
        got: impl std::fmt::Debug,
    ) -> Error {
        Error::Shape { op, what: what.into(), expected: format!("{expected:?}"), got: format!("{got:?}") }
    }

    /// Shorthand for a dtype mismatch; `expected` lists what the op accepts.
    pub fn dtype(op: &'static str, what: impl Into<String>, expected: &[DType], got: DType) -> Error {
        let expected = expected.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" or ");
        Error::DType { op, what: what.into(), expected, got }
    }
}
