//! Shared test helpers: the GPUs to run on, a seeded random source, and element-wise checks.
#![allow(dead_code)]

use std::sync::OnceLock;

use shaderlm_engine::{Gpu, GpuOptions, Recorder, Tensor, Op};

/// The paths to test: the adapter with every fast path on, and (when the adapter has a fast
/// path at all) the same adapter with subgroups, f16 arithmetic and cooperative matrices off.
pub fn gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        let fast = Gpu::new().expect("open a GPU (install mesa-vulkan-drivers for lavapipe)");
        eprintln!("testing on {}", fast.info());
        let f = fast.info().features;
        let mut v = vec![fast];
        if f.subgroups || f.shader_f16 || f.cooperative_matrix {
            let portable = GpuOptions { subgroups: false, shader_f16: false, cooperative_matrix: false, ..Default::default() };
            v.push(Gpu::with_options(portable).expect("open the portable GPU"));
        }
        v
    })
}

/// A short name for the path a Gpu takes, for failure messages.
pub fn path(gpu: &Gpu) -> &'static str {
    let f = gpu.info().features;
    if f.subgroups || f.shader_f16 { "fast" } else { "portable" }
}

/// SplitMix64: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// `n` values uniform in [-scale, scale), never all zero.
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// Rounds values through f16, as an F16 tensor stores them (so references see the same inputs).
pub fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// NaN as stored in an output before a run: an element the kernel does not write fails.
pub const POISON: u32 = 0x7FC0_0000;

/// Records `op`, submits, and waits.
pub fn run(gpu: &Gpu, op: &Op) {
    let mut rec = Recorder::new(gpu);
    rec.run(op);
    rec.submit().expect("submit");
    gpu.wait().expect("wait");
}

/// Poisons `out`, runs `op`, and returns `out` as f32.
pub fn run_poisoned(gpu: &Gpu, op: &Op, out: &Tensor) -> Vec<f32> {
    out.fill_words(gpu, POISON).unwrap();
    run(gpu, op);
    out.to_f32(gpu).unwrap()
}

/// Every element within `atol + rtol * |want|`; NaN or a length mismatch fails. On failure, the
/// message names the case, the first bad index and how many are bad.
#[track_caller]
pub fn assert_close(case: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let mut bad = 0;
    let mut first = None;
    let mut worst = 0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        // Negated on purpose: a NaN error compares false and so counts as bad.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(err <= atol + rtol * w.abs()) {
            bad += 1;
            first.get_or_insert((i, g, w));
        }
        if err.is_finite() {
            worst = worst.max(err);
        }
    }
    if let Some((i, g, w)) = first {
        panic!("{case}: {bad} of {} elements off (first at {i}: got {g}, want {w}; tolerance {atol} + {rtol}*|want|; worst finite error {worst})", got.len());
    }
}

/// The adapter with storage bindings capped at 64 KiB (fast and portable), so that small packed
/// weights are bound in several row chunks.
pub fn small_binding_gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        let fast = GpuOptions { max_binding_bytes: Some(64 << 10), ..Default::default() };
        let portable = GpuOptions { subgroups: false, shader_f16: false, cooperative_matrix: false, ..fast.clone() };
        vec![Gpu::with_options(fast).unwrap(), Gpu::with_options(portable).unwrap()]
    })
}

/// The row chunks of a packed `[n, k]` weight `w` bound on `gpu`: more than one, contiguous,
/// each within the binding limit, its quants (or 2:4 values) and scales (or meta) starting at
/// its first row's bytes, aligned. Returns them.
#[track_caller]
pub fn assert_packed_chunks_tile(case: &str, gpu: &Gpu, w: &Tensor, n: usize, k: usize) -> Vec<(usize, Tensor)> {
    let (limit, align) = (gpu.info().max_binding_bytes, gpu.info().binding_alignment);
    let dtype = w.dtype();
    let chunks = w.row_chunks(gpu).unwrap();
    assert!(chunks.len() > 1, "{case}: split");
    let mut next = 0;
    for (first, c) in &chunks {
        assert_eq!(*first, next, "{case}: contiguous");
        assert!(dtype.quant_bytes(c.numel()) <= limit, "{case}: quants fit");
        assert_eq!(c.offset(), dtype.quant_bytes(first * k), "{case}: quants of the first row");
        assert_eq!(c.scales_offset(), dtype.scales_offset(n * k) + dtype.scale_bytes(first * k));
        assert_eq!((c.offset() % align, c.scales_offset() % align), (0, 0), "{case}: aligned");
        next += c.shape()[0];
    }
    assert_eq!(next, n, "{case}: every row");
    chunks
}
