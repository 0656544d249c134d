//! `Readback`: a small mappable buffer, made once, that a recorded step copies a result into
//! (a sampled token id), so reading it back allocates nothing per step.

use crate::error::{Error, Result};
use crate::{Gpu, Tensor};

pub struct Readback {
    buffer: wgpu::Buffer,
    bytes: u64,
}

impl Readback {
    /// A readback buffer for up to `bytes` bytes (rounded up to whole words).
    pub fn new(gpu: &Gpu, bytes: u64) -> Readback {
        let bytes = bytes.max(4).next_multiple_of(4);
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Readback { buffer, bytes }
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub(crate) fn check(&self, src: &Tensor) -> Result<u64> {
        if !src.is_contiguous() {
            return Err(Error::shape("readback", "source", "a whole range", "a row view of a packed tensor"));
        }
        let n = src.byte_size();
        if n > self.bytes {
            return Err(Error::shape("readback", "source bytes", self.bytes, n));
        }
        Ok(n)
    }

    /// Waits for the submitted work that filled the buffer and returns its first `words` words.
    pub fn read_words(&self, gpu: &Gpu, words: usize) -> Result<Vec<u32>> {
        let n = (4 * words as u64).min(self.bytes);
        let slice = self.buffer.slice(..n);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.wait()?;
        let gpu_err = |m: String| Error::Gpu { op: "readback".into(), message: m };
        rx.recv().map_err(|e| gpu_err(e.to_string()))?.map_err(|e| gpu_err(e.to_string()))?;
        let view = slice.get_mapped_range().map_err(|e| gpu_err(e.to_string()))?;
        let out = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        self.buffer.unmap();
        Ok(out)
    }
}
