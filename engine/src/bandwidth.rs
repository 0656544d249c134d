//! The GPU's memory bandwidth, measured: a large buffer-to-buffer copy. Benchmarks divide by
//! this figure (model bandwidth utilisation), so it is measured on the same GPU, not read off a
//! datasheet.

use std::time::Instant;

use crate::error::Result;
use crate::{DType, Gpu, Recorder, Tensor};

/// Copy bandwidth in bytes per second, counting what memory moves: each byte read once and
/// written once (2 x bytes copied / time). Copies `bytes` (capped by the device's binding
/// limit) `reps` times, both with the `copy` kernel and with the driver's buffer copy, and
/// returns the faster: on the H200 through Vulkan the driver's copy ran at a fifth of the shader
/// copy's speed, on lavapipe the shader copy is the slower one.
pub fn copy_bandwidth(gpu: &Gpu, bytes: u64, reps: usize) -> Result<f64> {
    Ok(measure(gpu, bytes, reps, true)?.max(measure(gpu, bytes, reps, false)?))
}

fn measure(gpu: &Gpu, bytes: u64, reps: usize, shader: bool) -> Result<f64> {
    let bytes = bytes.min(gpu.info().max_binding_bytes).max(1 << 20) & !255;
    let words = (bytes / 4) as usize;
    let src = Tensor::empty(gpu, &[words], DType::U32)?;
    let dst = Tensor::empty(gpu, &[words], DType::U32)?;
    src.write_words(gpu, &vec![0x3C00_3C00; words])?;
    let op = crate::kernels::copy::copy(gpu, &src, &dst)?;
    let record = |n: usize| -> Result<Recorder<'_>> {
        let mut rec = Recorder::new(gpu);
        for _ in 0..n {
            if shader {
                rec.run(&op);
            } else {
                rec.copy(&src, &dst)?;
            }
        }
        Ok(rec)
    };
    record(2)?.submit()?;
    gpu.wait()?;
    let reps = reps.max(1);
    if gpu.info().features.timestamp_query {
        let times = record(reps)?.submit_timed()?;
        let mut secs: Vec<f64> = times.iter().map(|t| t.seconds).filter(|&s| s > 0.0).collect();
        if !secs.is_empty() {
            secs.sort_by(f64::total_cmp);
            return Ok(2.0 * bytes as f64 / secs[secs.len() / 2]);
        }
    }
    let t = Instant::now();
    record(reps)?.submit()?;
    gpu.wait()?;
    Ok(2.0 * bytes as f64 * reps as f64 / t.elapsed().as_secs_f64())
}
