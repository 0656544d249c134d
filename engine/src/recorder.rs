//! `Recorder`: many ops recorded into one command buffer, submitted once.
//!
//! Ops are collected in order and encoded at `submit`: consecutive dispatches share one compute
//! pass (wgpu places the barriers a dispatch needs on the previous one's writes); a copy closes
//! the pass. The recorder holds references to the ops' dispatches (a decode step records a few
//! hundred every token), so nothing is cloned or allocated per dispatch: pipelines and bind
//! groups were made when the op was built, and the list itself is the only allocation.
//!
//! `SHADERLM_DEBUG=1` prints each dispatch (label, grid, bytes bound) at submit;
//! `SHADERLM_DEBUG=2` also times each dispatch with timestamp queries and prints ms and GB/s.

use crate::error::{Error, Result};
use crate::kernels::{Dispatch, Op};
use crate::readback::Readback;
use crate::{Gpu, Tensor};

enum Command<'a> {
    Dispatch(&'a Dispatch),
    Copy(BufferCopy),
    Readback(BufferCopy),
}

/// `bytes` bytes from `src` at `src_offset` to `dst` at `dst_offset`.
struct BufferCopy {
    src: wgpu::Buffer,
    src_offset: u64,
    dst: wgpu::Buffer,
    dst_offset: u64,
    bytes: u64,
}

impl BufferCopy {
    fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_buffer(&self.src, self.src_offset, &self.dst, self.dst_offset, self.bytes);
    }
}

/// Records ops that live at least as long as the recorder (`'a`), and submits them at once.
pub struct Recorder<'a> {
    gpu: &'a Gpu,
    commands: Vec<Command<'a>>,
}

/// GPU time of one dispatch, from timestamp queries.
#[derive(Clone, Debug)]
pub struct DispatchTime {
    pub label: String,
    pub seconds: f64,
    pub bytes: u64,
}

impl<'a> Recorder<'a> {
    pub fn new(gpu: &'a Gpu) -> Recorder<'a> {
        Recorder { gpu, commands: Vec::new() }
    }

    /// A recorder with room for `commands` commands (a step that knows its size allocates once).
    pub fn with_capacity(gpu: &'a Gpu, commands: usize) -> Recorder<'a> {
        Recorder { gpu, commands: Vec::with_capacity(commands) }
    }

    /// Records every dispatch of `op`, in order (by reference: nothing is cloned).
    pub fn run(&mut self, op: &'a Op) {
        self.commands.extend(op.dispatches.iter().map(Command::Dispatch));
    }

    /// Records a list of ops, in order.
    pub fn run_all(&mut self, ops: impl IntoIterator<Item = &'a Op>) {
        for op in ops {
            self.run(op);
        }
    }

    /// Copies all of `src` into the start of `dst` (same byte size or smaller).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        if !src.is_contiguous() || !dst.is_contiguous() {
            return Err(Error::shape("copy", "tensors", "whole ranges", "a row view of a packed tensor"));
        }
        let bytes = src.byte_size();
        if bytes > dst.byte_size() {
            return Err(Error::shape("copy", "destination bytes", bytes, dst.byte_size()));
        }
        self.commands.push(Command::Copy(BufferCopy {
            src: src.buffer().clone(),
            src_offset: src.offset(),
            dst: dst.buffer().clone(),
            dst_offset: dst.offset(),
            bytes,
        }));
        Ok(())
    }

    /// Copies `src` into a [`Readback`] buffer, to be read after the submission finishes.
    pub fn readback(&mut self, src: &Tensor, dst: &Readback) -> Result<()> {
        let bytes = dst.check(src)?;
        self.commands.push(Command::Readback(BufferCopy {
            src: src.buffer().clone(),
            src_offset: src.offset(),
            dst: dst.buffer().clone(),
            dst_offset: 0,
            bytes,
        }));
        Ok(())
    }

    /// Number of commands (dispatches and copies) recorded so far.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Encodes everything into one command buffer and submits it. Does not wait.
    pub fn submit(self) -> Result<wgpu::SubmissionIndex> {
        if self.gpu.debug >= 2 && self.gpu.info().features.timestamp_query {
            let gpu = self.gpu;
            let index = gpu.queue.submit([]);
            for t in self.submit_timed()? {
                eprintln!(
                    "[gpu] {:<40} {:>9.3} ms {:>9.1} GB/s",
                    t.label,
                    t.seconds * 1e3,
                    t.bytes as f64 / t.seconds.max(1e-12) / 1e9
                );
            }
            return Ok(index);
        }
        if self.gpu.debug >= 1 {
            self.print();
        }
        let encoder = self.encode(None);
        Ok(self.gpu.queue.submit([encoder.finish()]))
    }

    /// Submits, waits, and returns the GPU seconds from the start of the first dispatch to the
    /// end of the last: the work and the gaps between dispatches, as `submit` runs them (one
    /// compute pass). Needs the timestamp-query feature.
    pub fn submit_gpu_span(self) -> Result<f64> {
        let gpu = self.gpu;
        if !gpu.info().features.timestamp_query {
            return Err(Error::Gpu { op: "submit_gpu_span".into(), message: "adapter has no timestamp queries".into() });
        }
        if !self.commands.iter().any(|c| matches!(c, Command::Dispatch(_))) {
            return Err(Error::Gpu { op: "submit_gpu_span".into(), message: "nothing to time: no dispatch".into() });
        }
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("span"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("span"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mut encoder = self.encode(Some(&queries));
        encoder.resolve_query_set(&queries, 0..2, &resolve, 0);
        gpu.queue.submit([encoder.finish()]);
        let raw = Tensor::from_buffer(resolve, crate::DType::U32, 4).to_words(gpu)?;
        let ticks = (raw[2] as u64 | (raw[3] as u64) << 32).saturating_sub(raw[0] as u64 | (raw[1] as u64) << 32);
        Ok(ticks as f64 * gpu.queue.get_timestamp_period() as f64 * 1e-9)
    }

    /// Encodes the commands: copies as they come, each run of dispatches in one compute pass.
    /// With `span`, the first pass stamps query 0 at its start and the last query 1 at its end.
    fn encode(&self, span: Option<&wgpu::QuerySet>) -> wgpu::CommandEncoder {
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        let first_pass = self.commands.iter().position(|c| matches!(c, Command::Dispatch(_)));
        let last_pass = self.commands.iter().rposition(|c| matches!(c, Command::Dispatch(_)));
        let mut i = 0;
        while i < self.commands.len() {
            match &self.commands[i] {
                Command::Copy(c) | Command::Readback(c) => {
                    c.encode(&mut encoder);
                    i += 1;
                }
                Command::Dispatch(_) => {
                    let start = i;
                    while let Some(Command::Dispatch(_)) = self.commands.get(i) {
                        i += 1;
                    }
                    let timestamp_writes = span.map(|query_set| wgpu::ComputePassTimestampWrites {
                        query_set,
                        beginning_of_pass_write_index: (first_pass == Some(start)).then_some(0),
                        end_of_pass_write_index: (last_pass == Some(i - 1)).then_some(1),
                    });
                    let mut pass =
                        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
                    for c in &self.commands[start..i] {
                        if let Command::Dispatch(d) = c {
                            record(&mut pass, d);
                        }
                    }
                }
            }
        }
        encoder
    }

    /// Submits with one timestamped pass per dispatch, waits, and returns each dispatch's GPU
    /// time. Needs the timestamp-query feature; slower than `submit` (one pass per dispatch).
    pub fn submit_timed(self) -> Result<Vec<DispatchTime>> {
        let gpu = self.gpu;
        if !gpu.info().features.timestamp_query {
            return Err(Error::Gpu { op: "submit_timed".into(), message: "adapter has no timestamp queries".into() });
        }
        let n = self.commands.len().max(1) as u32;
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * n,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: 16 * n as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        // A copy is not a pass: it is stamped on the encoder, where the device allows that.
        let stamp_copies = gpu.device.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let mut labels = Vec::new();
        for (i, c) in self.commands.iter().enumerate() {
            let i = i as u32;
            let timestamp_writes = Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * i),
                end_of_pass_write_index: Some(2 * i + 1),
            });
            match c {
                Command::Dispatch(d) => {
                    let mut pass =
                        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
                    record(&mut pass, d);
                    labels.push((d.label.clone(), d.bytes));
                }
                Command::Copy(c) if stamp_copies => {
                    encoder.write_timestamp(&queries, 2 * i);
                    c.encode(&mut encoder);
                    encoder.write_timestamp(&queries, 2 * i + 1);
                    labels.push(("copy".into(), 2 * c.bytes));
                }
                Command::Copy(c) => {
                    // Every query must be written before it is resolved: stamp an empty pass.
                    drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes }));
                    c.encode(&mut encoder);
                    labels.push(("copy (untimed)".into(), 2 * c.bytes));
                }
                Command::Readback(c) => {
                    // Every query must be written before it is resolved: stamp an empty pass.
                    drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes }));
                    c.encode(&mut encoder);
                    labels.push(("readback".into(), c.bytes));
                }
            }
        }
        encoder.resolve_query_set(&queries, 0..2 * n, &resolve, 0);
        gpu.queue.submit([encoder.finish()]);
        let raw = Tensor::from_buffer(resolve, crate::DType::U32, 4 * n as usize).to_words(gpu)?;
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(labels
            .into_iter()
            .enumerate()
            .map(|(i, (label, bytes))| {
                let t = |k: usize| raw[2 * k] as u64 | (raw[2 * k + 1] as u64) << 32;
                let ticks = t(2 * i + 1).saturating_sub(t(2 * i));
                DispatchTime { label, seconds: ticks as f64 * period, bytes }
            })
            .collect())
    }

    fn print(&self) {
        for c in &self.commands {
            match c {
                Command::Dispatch(d) => {
                    eprintln!("[gpu] {:<40} grid {:?} {:>12} bytes", d.label, d.workgroups, d.bytes)
                }
                Command::Copy(c) => eprintln!("[gpu] {:<40} {:>12} bytes", "copy", c.bytes),
                Command::Readback(c) => eprintln!("[gpu] {:<40} {:>12} bytes", "readback", c.bytes),
            }
        }
    }
}

fn record(pass: &mut wgpu::ComputePass, d: &Dispatch) {
    pass.set_pipeline(&d.pipeline);
    pass.set_bind_group(0, &d.bind_group, &[]);
    let [x, y, z] = d.workgroups;
    pass.dispatch_workgroups(x, y, z);
}
