//! `Readback`: a small mappable buffer, made once, that a recorded step copies a result into
//! (a sampled token id), so reading it back allocates nothing per step.
//!
//! Two ways to read it. [`Readback::read_words`] waits for everything submitted, then reads.
//! For a pipeline of steps, [`Readback::request`] (right after the submit that fills it) asks for
//! the mapping, and [`Readback::finish`] waits for that one submission only, so the host can
//! submit the next step first and read this one while the GPU runs it. A model keeps two or more
//! readbacks in a ring, one per step in flight.

use std::sync::mpsc;

use crate::error::{Error, Result};
use crate::{Gpu, Tensor};

type MapResult = std::result::Result<(), wgpu::BufferAsyncError>;

pub struct Readback {
    buffer: wgpu::Buffer,
    bytes: u64,
    /// Set between `request` and `finish`: where the mapping's outcome arrives.
    pending: Option<(mpsc::Receiver<MapResult>, u64)>,
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
        Readback { buffer, bytes, pending: None }
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

    /// Whether a read was requested and not yet finished (the buffer may not be recorded into
    /// again until it is).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Asks for the first `words` words to be mapped once the submitted work that fills the buffer
    /// is done. Call after the submit; read them with [`Readback::finish`].
    pub fn request(&mut self, words: usize) -> Result<()> {
        if self.pending.is_some() {
            return Err(Error::Gpu { op: "readback".into(), message: "a read is already pending".into() });
        }
        let n = (4 * words as u64).clamp(4, self.bytes);
        let (tx, rx) = mpsc::channel();
        self.buffer.slice(..n).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.pending = Some((rx, n));
        Ok(())
    }

    /// Waits for `submission` (the one that filled the buffer, or a later one) and returns the
    /// words [`Readback::request`] asked for. Work submitted after it keeps running.
    pub fn finish(&mut self, gpu: &Gpu, submission: wgpu::SubmissionIndex) -> Result<Vec<u32>> {
        self.wait_and_read(gpu, Some(submission))
    }

    /// Waits for all submitted work and returns the buffer's first `words` words.
    pub fn read_words(&mut self, gpu: &Gpu, words: usize) -> Result<Vec<u32>> {
        self.request(words)?;
        self.wait_and_read(gpu, None)
    }

    fn wait_and_read(&mut self, gpu: &Gpu, submission: Option<wgpu::SubmissionIndex>) -> Result<Vec<u32>> {
        let gpu_err = |m: String| Error::Gpu { op: "readback".into(), message: m };
        let (rx, n) = self.pending.take().ok_or_else(|| gpu_err("no read was requested".into()))?;
        // The mapping callback runs inside the poll that sees its submission done.
        let wait = wgpu::PollType::Wait { submission_index: submission, timeout: None };
        gpu.device.poll(wait).map_err(|e| gpu_err(e.to_string()))?;
        let mapped = match rx.try_recv() {
            Ok(r) => r,
            // Asked to wait for a submission before the buffer's last use: wait for everything.
            Err(_) => {
                gpu.wait()?;
                rx.recv().map_err(|e| gpu_err(e.to_string()))?
            }
        };
        mapped.map_err(|e| gpu_err(e.to_string()))?;
        let view = self.buffer.slice(..n).get_mapped_range().map_err(|e| gpu_err(e.to_string()))?;
        let out = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        self.buffer.unmap();
        Ok(out)
    }
}

/// Readbacks in a ring, one per submitted step not yet read: a step copies its result into
/// [`ReadbackRing::slot`], the host [`ReadbackRing::push`]es its submission, and
/// [`ReadbackRing::pop`] later returns the oldest step's words, waiting only for that step.
pub struct ReadbackRing {
    slots: Vec<Readback>,
    /// (submission, slot) of each step in flight, oldest first.
    in_flight: std::collections::VecDeque<(wgpu::SubmissionIndex, usize)>,
    next: usize,
    words: usize,
}

impl ReadbackRing {
    /// `slots` readbacks (at least 1) of `words` words each: up to `slots` steps in flight.
    pub fn new(gpu: &Gpu, words: usize, slots: usize) -> ReadbackRing {
        let slots = (0..slots.max(1)).map(|_| Readback::new(gpu, 4 * words as u64)).collect();
        ReadbackRing { slots, in_flight: Default::default(), next: 0, words }
    }

    /// The readback the next step should copy its result into. Fails when every slot is in
    /// flight (pop one first).
    pub fn slot(&self) -> Result<&Readback> {
        if self.in_flight.len() == self.slots.len() {
            let message = format!("all {} readbacks are in flight", self.slots.len());
            return Err(Error::Gpu { op: "readback".into(), message });
        }
        Ok(&self.slots[self.next])
    }

    /// Records that `submission` fills the current slot, and moves to the next.
    pub fn push(&mut self, submission: wgpu::SubmissionIndex) -> Result<()> {
        self.slot()?;
        self.slots[self.next].request(self.words)?;
        self.in_flight.push_back((submission, self.next));
        self.next = (self.next + 1) % self.slots.len();
        Ok(())
    }

    /// Steps submitted and not yet popped.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits for the oldest step in flight and returns its words (`None` when none is).
    pub fn pop(&mut self, gpu: &Gpu) -> Result<Option<Vec<u32>>> {
        let Some((submission, slot)) = self.in_flight.pop_front() else { return Ok(None) };
        self.slots[slot].finish(gpu, submission).map(Some)
    }

    /// Waits for every step in flight and drops their results.
    pub fn clear(&mut self, gpu: &Gpu) -> Result<()> {
        while self.pop(gpu)?.is_some() {}
        Ok(())
    }
}
