//! CPU references: the plain-loop version of every kernel, accumulating in f64, taking the same
//! parameters as the GPU op. Tests compare each kernel with its reference on seeded random data.
//! One file per kernel, same stem as `kernels/<op>.rs`.

pub mod add;
pub mod argmax;
pub mod attention_decode;
pub mod attention_prefill;
pub mod cross_entropy;
pub mod copy_rows;
pub mod embedding;
pub mod matmul;
pub mod matvec;
pub mod rms_norm;
pub mod rms_norm_matvec;
pub mod rms_norm_matvec_rope_kv_cache;
pub mod rms_norm_matvec_swiglu;
pub mod rope;
pub mod rope_kv_cache;
pub mod rope_kv_cache_batched;
pub mod sample;
pub mod silu_mul;
pub mod softmax;
pub mod swiglu;
