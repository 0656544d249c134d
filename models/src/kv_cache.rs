//! `KvCache`: keys and values of every past position, per layer, on the GPU.
//!
//! Allocated once at load for `capacity` positions (the context cap, never a huge config
//! value). Writing a position is a kernel (`copy_rows`) that stores the new rows in place; nothing
//! is concatenated or reallocated per token. `tokens` remembers which ids fill the cache so a
//! new request that shares a prefix (the next turn of a chat) only prefills what is new.

use shaderlm_engine::{DType, Gpu, Tensor};

use crate::Result;

pub struct KvCache {
    /// Per layer: K (capacity, n_kv_heads * head_dim), row p = position p.
    pub k: Vec<Tensor>,
    /// Per layer: V (capacity, n_kv_heads * head_dim).
    pub v: Vec<Tensor>,
    pub capacity: usize,
    /// Token ids whose keys and values are in the cache, in position order.
    pub tokens: Vec<u32>,
}

impl KvCache {
    pub fn new(gpu: &Gpu, n_layers: usize, capacity: usize, kv_width: usize, dtype: DType) -> Result<KvCache> {
        let mut k = Vec::with_capacity(n_layers);
        let mut v = Vec::with_capacity(n_layers);
        for _ in 0..n_layers {
            k.push(Tensor::empty(gpu, &[capacity, kv_width], dtype)?);
            v.push(Tensor::empty(gpu, &[capacity, kv_width], dtype)?);
        }
        Ok(KvCache { k, v, capacity, tokens: Vec::new() })
    }

    /// Bytes the cache holds on the GPU.
    pub fn bytes(&self) -> u64 {
        self.k.iter().chain(&self.v).map(|t| t.byte_size()).sum()
    }

    /// How many leading tokens of `ids` are already cached. At least one token is always left
    /// to run, since the last position's logits are needed.
    pub fn reusable_prefix(&self, ids: &[u32]) -> usize {
        let same = self.tokens.iter().zip(ids).take_while(|(a, b)| a == b).count();
        same.min(ids.len().saturating_sub(1))
    }
}

impl KvCache {
    /// A cache for `slots` sequences decoded together: per layer, K and V of shape
    /// `(slots, capacity, n_kv_heads * head_dim)`, slot s holding sequence s. `capacity` is
    /// rounded up so that every slot starts on an aligned offset (a slot can then be bound
    /// alone: [`KvCache::slot`]).
    pub fn batched(gpu: &Gpu, n_layers: usize, slots: usize, capacity: usize, kv_width: usize, dtype: DType) -> Result<KvCache> {
        let align = gpu.info().binding_alignment;
        let mut rows = capacity.max(1);
        while !dtype.bytes_for(rows * kv_width).is_multiple_of(align) {
            rows += 1;
        }
        let mut k = Vec::with_capacity(n_layers);
        let mut v = Vec::with_capacity(n_layers);
        for _ in 0..n_layers {
            k.push(Tensor::empty(gpu, &[slots, rows, kv_width], dtype)?);
            v.push(Tensor::empty(gpu, &[slots, rows, kv_width], dtype)?);
        }
        Ok(KvCache { k, v, capacity: rows, tokens: Vec::new() })
    }

    /// Slot `s` of a batched cache as a one-sequence cache: views of the same buffers, shape
    /// `(capacity, kv_width)` per layer, holding `tokens`. A prompt prefilled through it lands
    /// in that slot.
    pub fn slot(&self, s: usize, tokens: Vec<u32>) -> Result<KvCache> {
        let view = |t: &Tensor| -> Result<Tensor> {
            let shape = t.shape();
            Ok(t.rows(s, 1)?.reshape(&shape[1..])?)
        };
        let k = self.k.iter().map(view).collect::<Result<Vec<_>>>()?;
        let v = self.v.iter().map(view).collect::<Result<Vec<_>>>()?;
        Ok(KvCache { k, v, capacity: self.capacity, tokens })
    }
}
