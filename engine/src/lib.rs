//! shaderlm-engine: a small tensor runtime whose kernels are WGSL compute shaders run through wgpu.
//!
//! The tour, in the order data moves:
//! - [`Gpu`] opens an adapter (Vulkan, Metal, DX12; lavapipe where there is no GPU), reports its
//!   features and limits, and caches compiled pipelines.
//! - [`Tensor`] is a shape, a [`DType`] and a range of a GPU buffer; upload and download are
//!   explicit.
//! - [`kernels`]: one module per WGSL file in `shaders/`. Each function checks shapes and dtypes
//!   and returns an [`Op`], a ready-to-record dispatch that can be replayed any number of times.
//! - [`Recorder`] records many ops into one command buffer and submits once.
//! - [`reference`]: the CPU version of every kernel (plain loops, f64 accumulation), used by tests.
//!
//! The engine knows nothing about language models: it offers tensors and the ops they need.
//!
//! ```no_run
//! use shaderlm_engine::{kernels, DType, Gpu, Recorder, Tensor};
//! # fn main() -> shaderlm_engine::Result<()> {
//! let gpu = Gpu::new()?;
//! let w = Tensor::from_f32(&gpu, &[2, 3], DType::F16, &[1., 2., 3., 4., 5., 6.])?;
//! let x = Tensor::from_f32(&gpu, &[3], DType::F32, &[1., 0., -1.])?;
//! let y = Tensor::empty(&gpu, &[2], DType::F32)?;
//! let op = kernels::matvec::matvec(&gpu, &w, &x, &y)?;
//! let mut rec = Recorder::new(&gpu);
//! rec.run(&op);
//! rec.submit()?;
//! assert_eq!(y.to_f32(&gpu)?, vec![-2.0, -2.0]);
//! # Ok(()) }
//! ```

pub mod bandwidth;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod kernels;
pub mod recorder;
pub mod readback;
pub mod reference;
pub mod tensor;

pub use dtype::DType;
pub use error::{Error, Result};
pub use gpu::{Gpu, GpuInfo, GpuOptions};
pub use kernels::Op;
pub use readback::{Readback, ReadbackRing};
pub use recorder::{DispatchTime, Recorder};
pub use tensor::Tensor;
