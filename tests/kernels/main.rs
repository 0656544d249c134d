//! Every kernel against its CPU reference (engine::reference), on seeded random data, at several
//! shapes including odd ones, checking every element. Outputs are poisoned with NaN before each
//! run so an element the kernel forgot to write fails. Each case runs on every path the adapter
//! offers (the fast path with subgroups / f16 arithmetic, and the portable path).
//!
//! One module per kernel, same stem as the kernel.

mod common;

mod add;
mod argmax;
mod attention_decode;
mod attention_decode_batched;
mod attention_prefill;
mod cross_entropy;
mod copy_rows;
mod embedding;
mod matmul;
mod matmul_coop;
mod matvec;
mod matvec_batch;
mod quant;
mod rms_norm;
mod rms_norm_matvec;
mod rms_norm_matvec_rope_kv_cache;
mod rms_norm_matvec_swiglu;
mod rope;
mod rope_kv_cache;
mod rope_kv_cache_batched;
mod sample;
mod silu_mul;
mod softmax;
mod sparse;
mod swiglu;
mod tensor;
