//! The GPU's memory bandwidth, measured: a large buffer-to-buffer copy. Benchmarks divide by
//! this figure (model bandwidth utilisation), so it is measured on the same GPU, not read off a
//! datasheet.

use std::time::Instant;

use crate::error::Result;
use crate::{DType, Gpu, Recorder, Tensor};

/// Copy bandwidth in bytes per second, counting what memory moves: each byte read once and
/// written once (2 x bytes copied / time). Copies `bytes` (capped by the device) `reps` times
/// after a warm-up; GPU timestamps where available, else wall clock.
pub fn copy_bandwidth(gpu: &Gpu, bytes: u64, reps: usize) -> Result<f64> {
    let bytes = bytes.min(gpu.info().max_buffer_bytes / 2).max(1 << 20) & !255;
    let words = (bytes / 4) as usize;
    let src = Tensor::empty(gpu, &[words], DType::U32)?;
    let dst = Tensor::empty(gpu, &[words], DType::U32)?;
    src.write_words(gpu, &vec![0x3C00_3C00; words])?;
    let record = |n: usize| -> Result<Recorder<'_>> {
        let mut rec = Recorder::new(gpu);
        for _ in 0..n {
            rec.copy(&src, &dst)?;
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
