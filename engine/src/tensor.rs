//! `Tensor`: a shape, a dtype and a range of a GPU buffer.
//!
//! Upload and download are explicit (`from_f32`, `write_f32`, `to_f32`). Shapes are row-major,
//! outermost first: a weight `[N, K]` stores row `n` at elements `n*K .. n*K+K`.
//!
//! A tensor may be larger than the largest range one storage binding can cover
//! (`GpuInfo::max_binding_bytes`: 128 MiB on lavapipe, 2 GiB on NVIDIA). Kernels that take such
//! tensors bind them in row chunks (`row_chunks`), each chunk a view of the same buffer.
//!
//! A packed (quantized) tensor is two arrays in one buffer, quants then scales (see `dtype`);
//! a row view of it is two ranges, its rows' quants and its rows' scales. Kernels bind the two
//! separately; only a whole packed tensor can be written or read back as words.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::{DType, Gpu};

#[derive(Clone)]
pub struct Tensor {
    buffer: Arc<wgpu::Buffer>,
    /// Byte offset of element 0 in `buffer` (for packed dtypes: of the quants of row 0).
    offset: u64,
    /// Packed dtypes: byte offset in `buffer` of the scales of row 0. Unused (0) otherwise.
    scales: u64,
    /// False for a row view of a packed tensor (two ranges, not one).
    contiguous: bool,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {})", self.shape, self.dtype)
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

impl Tensor {
    /// An uninitialised tensor (contents unspecified until written).
    pub fn empty(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let numel = checked_numel(shape)?;
        dtype.check_shape("tensor", shape)?;
        let bytes = dtype.bytes_for(numel).max(4);
        let limit = gpu.info().max_buffer_bytes;
        if bytes > limit {
            return Err(Error::TooLarge { what: format!("tensor {shape:?} {dtype}"), bytes, limit });
        }
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.next_multiple_of(4),
            usage: STORAGE,
            mapped_at_creation: false,
        });
        let scales = dtype.scales_offset(numel);
        Ok(Tensor { buffer: Arc::new(buffer), offset: 0, scales, contiguous: true, shape: shape.to_vec(), dtype })
    }

    /// Uploads f32 values, converting them to `dtype` (F32 or F16, or packing them 2:4 sparse
    /// for S24F16 / S24Q4).
    pub fn from_f32(gpu: &Gpu, shape: &[usize], dtype: DType, data: &[f32]) -> Result<Tensor> {
        let t = Tensor::empty(gpu, shape, dtype)?;
        t.write_f32(gpu, data)?;
        Ok(t)
    }

    /// Uploads u32 values (token ids, positions).
    pub fn from_u32(gpu: &Gpu, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        let t = Tensor::empty(gpu, shape, DType::U32)?;
        t.write_u32(gpu, data)?;
        Ok(t)
    }

    /// Uploads raw storage words as they will sit in the buffer (already packed for `dtype`).
    pub fn from_words(gpu: &Gpu, shape: &[usize], dtype: DType, words: &[u32]) -> Result<Tensor> {
        let t = Tensor::empty(gpu, shape, dtype)?;
        t.write_words(gpu, words)?;
        Ok(t)
    }

    /// Overwrites the contents with f32 values converted to this tensor's dtype (2:4 sparse
    /// dtypes: packed on the CPU; only a whole tensor).
    pub fn write_f32(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        self.check_len("write_f32", data.len())?;
        match self.dtype {
            DType::F32 => self.write_words(gpu, bytemuck::cast_slice(data)),
            DType::F16 => {
                // An odd count ends mid-word. Inside a buffer the word's other half is the next
                // element, which a whole-word write would zero; at the buffer's end it is padding.
                if data.len() % 2 == 1 && self.offset + self.byte_size() < self.buffer.size() {
                    let what = "f16 view length (odd only at the end of its buffer)";
                    return Err(Error::shape("write_f32", what, "even", data.len()));
                }
                self.write_words(gpu, &crate::dtype::pack_f16(data))
            }
            // 2:4 sparse values are packed on the CPU (a group with more than two non-zeros errs).
            DType::S24F16 | DType::S24Q4 => {
                let k = self.shape.last().copied().unwrap_or(1).max(1);
                let words = if self.dtype == DType::S24F16 {
                    crate::dtype::pack_s24_f16(data, data.len() / k, k)?
                } else {
                    crate::dtype::pack_s24_q4(data, data.len() / k, k)?
                };
                self.write_words(gpu, &words)
            }
            other => {
                let floats = [DType::F32, DType::F16, DType::S24F16, DType::S24Q4];
                Err(Error::dtype("write_f32", "tensor", &floats, other))
            }
        }
    }

    pub fn write_u32(&self, gpu: &Gpu, data: &[u32]) -> Result<()> {
        self.check_len("write_u32", data.len())?;
        if self.dtype != DType::U32 {
            return Err(Error::dtype("write_u32", "tensor", &[DType::U32], self.dtype));
        }
        self.write_words(gpu, data)
    }

    /// Writes raw storage words from the start of the tensor.
    pub fn write_words(&self, gpu: &Gpu, words: &[u32]) -> Result<()> {
        self.check_contiguous("write_words")?;
        let bytes = 4 * words.len() as u64;
        if bytes > self.byte_size() {
            return Err(Error::shape("write_words", "word count", self.byte_size() / 4, words.len()));
        }
        gpu.queue.write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(words));
        Ok(())
    }

    /// Fills every word with `word` (tests poison outputs with NaN so an unwritten element fails).
    pub fn fill_words(&self, gpu: &Gpu, word: u32) -> Result<()> {
        self.write_words(gpu, &vec![word; (self.byte_size() / 4) as usize])
    }

    /// Downloads and converts to f32 (F32 or F16 tensors; packed ones are dequantized on the
    /// CPU). Waits for the GPU.
    pub fn to_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let words = self.to_words(gpu)?;
        match self.dtype {
            DType::F32 => Ok(bytemuck::cast_slice(&words[..self.numel()]).to_vec()),
            DType::F16 => Ok(crate::dtype::unpack_f16(&words, self.numel())),
            d if d.is_packed() => {
                let k = self.shape.last().copied().unwrap_or(1);
                crate::dtype::dequantize(d, &words, self.numel() / k.max(1), k)
            }
            other => Err(Error::dtype("to_f32", "tensor", &[DType::F32, DType::F16], other)),
        }
    }

    /// Downloads a U32 tensor. Waits for the GPU.
    pub fn to_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        if self.dtype != DType::U32 {
            return Err(Error::dtype("to_u32", "tensor", &[DType::U32], self.dtype));
        }
        let mut words = self.to_words(gpu)?;
        words.truncate(self.numel());
        Ok(words)
    }

    /// Downloads the raw storage words. Waits for the GPU.
    pub fn to_words(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        self.check_contiguous("to_words")?;
        let size = self.byte_size();
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.buffer, self.offset, &staging, 0, size);
        gpu.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.wait()?;
        let mapped = rx.recv().map_err(|e| Error::Gpu { op: "download".into(), message: e.to_string() })?;
        mapped.map_err(|e| Error::Gpu { op: "download".into(), message: e.to_string() })?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu { op: "download".into(), message: e.to_string() })?;
        let words = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(words)
    }

    /// Wraps an existing buffer (engine-internal: query resolves, staging).
    pub(crate) fn from_buffer(buffer: wgpu::Buffer, dtype: DType, numel: usize) -> Tensor {
        Tensor { buffer: Arc::new(buffer), offset: 0, scales: 0, contiguous: true, shape: vec![numel], dtype }
    }

    /// Same storage, another shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if checked_numel(shape)? != self.numel() {
            return Err(Error::shape("reshape", "element count", self.numel(), shape));
        }
        self.dtype.check_shape("reshape", shape)?;
        Ok(Tensor { shape: shape.to_vec(), ..self.clone() })
    }

    /// Rows `start .. start + rows` along the first axis, as a view of the same buffer.
    /// The view's byte offset must meet the device's binding alignment if it is to be bound.
    pub fn rows(&self, start: usize, rows: usize) -> Result<Tensor> {
        let n = *self.shape.first().unwrap_or(&1);
        if start + rows > n {
            return Err(Error::shape("rows", "row range end", n, start + rows));
        }
        let row_numel = self.numel() / n.max(1);
        let first = start * row_numel;
        if self.dtype == DType::F16 && !first.is_multiple_of(2) {
            return Err(Error::shape("rows", "f16 view start (must be even)", "even", first));
        }
        let mut shape = self.shape.clone();
        shape[0] = rows;
        if self.dtype.is_packed() {
            if (start, rows) == (0, n) {
                return Ok(self.clone());
            }
            // Rows are whole groups; the view's scales must still start on a 32-bit word.
            let scale_bytes = self.dtype.scale_bytes(first);
            if !scale_bytes.is_multiple_of(4) {
                return Err(Error::shape("rows", "packed view's scales start (whole words)", "a multiple of 4", scale_bytes));
            }
            let offset = self.offset + self.dtype.quant_bytes(first);
            let scales = self.scales + scale_bytes;
            return Ok(Tensor { buffer: self.buffer.clone(), offset, scales, contiguous: false, shape, dtype: self.dtype });
        }
        let offset = self.offset + self.dtype.bytes_for(first);
        Ok(Tensor { buffer: self.buffer.clone(), offset, scales: 0, contiguous: true, shape, dtype: self.dtype })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of storage the tensor covers (whole 32-bit words).
    pub fn byte_size(&self) -> u64 {
        self.dtype.bytes_for(self.numel()).max(4)
    }

    /// Byte offset of the tensor in its buffer (packed dtypes: of its quants).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Packed dtypes: byte offset of the tensor's scales in its buffer.
    pub fn scales_offset(&self) -> u64 {
        self.scales
    }

    /// False for a row view of a packed tensor, whose quants and scales are two separate ranges.
    pub fn is_contiguous(&self) -> bool {
        self.contiguous
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// True when both tensors are views of the same buffer.
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buffer, &other.buffer)
    }

    /// The binding for a kernel. Fails if the range exceeds the device's binding limit
    /// (kernels that accept larger tensors bind `row_chunks` instead).
    pub(crate) fn binding(&self, gpu: &Gpu, op: &'static str) -> Result<wgpu::BindingResource<'_>> {
        self.check_contiguous(op)?;
        self.range_binding(gpu, op, "", self.offset, self.byte_size())
    }

    /// Packed dtypes: the binding of the quants (a whole number of 16-byte words per row).
    pub(crate) fn quants_binding(&self, gpu: &Gpu, op: &'static str) -> Result<wgpu::BindingResource<'_>> {
        let size = self.dtype.quant_bytes(self.numel()).next_multiple_of(4);
        self.range_binding(gpu, op, " quants", self.offset, size)
    }

    /// Packed dtypes: the binding of the scales (rounded up to a whole word; for Q8 with an odd
    /// group count that is the next row's first scale or the array's padding, never read).
    pub(crate) fn scales_binding(&self, gpu: &Gpu, op: &'static str) -> Result<wgpu::BindingResource<'_>> {
        let size = self.dtype.scale_bytes(self.numel()).next_multiple_of(4);
        self.range_binding(gpu, op, " scales", self.scales, size)
    }

    fn range_binding(
        &self,
        gpu: &Gpu,
        op: &'static str,
        part: &str,
        offset: u64,
        size: u64,
    ) -> Result<wgpu::BindingResource<'_>> {
        let size = size.max(4);
        let limit = gpu.info().max_binding_bytes;
        if size > limit {
            return Err(Error::TooLarge { what: format!("{op}: binding of {self:?}{part}"), bytes: size, limit });
        }
        if !offset.is_multiple_of(gpu.info().binding_alignment) {
            let what = format!("binding offset alignment{part}");
            return Err(Error::shape(op, what, gpu.info().binding_alignment, offset));
        }
        Ok(wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset,
            size: std::num::NonZeroU64::new(size),
        }))
    }

    fn check_contiguous(&self, op: &'static str) -> Result<()> {
        if !self.is_contiguous() {
            let what = format!("{self:?} (a row view of a packed tensor is two ranges)");
            return Err(Error::shape(op, what, "a whole packed tensor", "a row view"));
        }
        Ok(())
    }

    /// Splits the first axis into chunks that each fit one binding and start at an aligned
    /// offset. Returns `(first_row, view)` pairs; a tensor that fits is one chunk.
    pub fn row_chunks(&self, gpu: &Gpu) -> Result<Vec<(usize, Tensor)>> {
        self.row_chunks_of_at_most(gpu, usize::MAX)
    }

    /// `row_chunks` with at most `max_rows` rows per chunk (a kernel that binds another
    /// tensor's rows beside these bounds the chunk by that tensor's row size too).
    pub fn row_chunks_of_at_most(&self, gpu: &Gpu, max_rows: usize) -> Result<Vec<(usize, Tensor)>> {
        let n = *self.shape.first().unwrap_or(&1);
        if self.dtype.is_packed() {
            return self.packed_row_chunks(gpu, max_rows.max(1));
        }
        if (self.byte_size() <= gpu.info().max_binding_bytes && n <= max_rows) || n <= 1 {
            return Ok(vec![(0, self.clone())]);
        }
        let row_numel = self.numel() / n;
        let row_bytes = self.dtype.bytes_per_element() * row_numel as f64;
        // Rows per chunk: a multiple of `step`, so every chunk starts on an aligned byte offset.
        let align = gpu.info().binding_alignment;
        let mut step = 1usize;
        while (!self.dtype.bytes_for(step * row_numel).is_multiple_of(align)
            || (self.dtype == DType::F16 && !(step * row_numel).is_multiple_of(2)))
            && step < 4096
        {
            step += 1;
        }
        let fit = ((gpu.info().max_binding_bytes as f64 / row_bytes).floor() as usize).min(max_rows);
        let per = fit / step * step;
        if per == 0 || !self.offset.is_multiple_of(align) {
            return Err(Error::TooLarge {
                what: format!("one aligned row chunk of {self:?}"),
                bytes: (row_bytes * step as f64) as u64,
                limit: gpu.info().max_binding_bytes,
            });
        }
        (0..n).step_by(per).map(|r| Ok((r, self.rows(r, per.min(n - r))?))).collect()
    }

    /// Row chunks of a packed tensor: both the quants and the scales of every chunk must fit
    /// one binding and start on an aligned offset.
    fn packed_row_chunks(&self, gpu: &Gpu, max_rows: usize) -> Result<Vec<(usize, Tensor)>> {
        let n = *self.shape.first().unwrap_or(&1);
        let limit = gpu.info().max_binding_bytes;
        let (quants, scales) = (self.dtype.quant_bytes(self.numel()), self.dtype.scale_bytes(self.numel()));
        if (quants.max(scales.next_multiple_of(4)) <= limit && n <= max_rows) || n <= 1 {
            return Ok(vec![(0, self.clone())]);
        }
        let row_numel = self.numel() / n;
        let (row_quants, row_scales) = (self.dtype.quant_bytes(row_numel), self.dtype.scale_bytes(row_numel));
        // Rows per chunk: a multiple of `step`, so every chunk's quants and scales start aligned.
        let align = gpu.info().binding_alignment;
        let step = (1..=align as usize)
            .find(|&s| (s as u64 * row_quants).is_multiple_of(align) && (s as u64 * row_scales).is_multiple_of(align))
            .unwrap_or(align as usize);
        let fit = ((limit / row_quants.max(1)) as usize).min(max_rows);
        let per = fit / step * step;
        if per == 0 || !self.offset.is_multiple_of(align) || !self.scales.is_multiple_of(align) {
            return Err(Error::TooLarge {
                what: format!("one aligned row chunk of {self:?}"),
                bytes: row_quants * step as u64,
                limit,
            });
        }
        (0..n).step_by(per).map(|r| Ok((r, self.rows(r, per.min(n - r))?))).collect()
    }

    fn check_len(&self, op: &'static str, len: usize) -> Result<()> {
        if len != self.numel() {
            return Err(Error::shape(op, format!("element count for {:?}", self.shape), self.numel(), len));
        }
        Ok(())
    }
}

fn checked_numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::shape("tensor", "element count", "< usize::MAX", shape))
}
