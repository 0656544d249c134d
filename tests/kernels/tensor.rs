//! Tensor: upload/download round trips, views (`rows`, `reshape`), errors, and weights split
//! into row chunks when they exceed one storage binding (matvec and matmul across chunks, at the
//! real 128 MiB lavapipe limit and at a lowered 64 KiB one).

use std::sync::OnceLock;

use crate::common::*;
use crate::matvec::{assert_close_to_scale, SUM_ATOL, SUM_RTOL};
use shaderlm_engine::kernels::{matmul::matmul, matvec::matvec};
use shaderlm_engine::{reference, DType, Error, Gpu, GpuOptions, Tensor};

#[test]
fn round_trips_f32_f16_u32() {
    for gpu in gpus() {
        for n in [1, 7, 33, 1000] {
            let mut rng = Rng::new(n as u64);
            let v = rng.vec(n, 3.0);
            let f32t = Tensor::from_f32(gpu, &[n], DType::F32, &v).unwrap();
            assert_eq!(f32t.to_f32(gpu).unwrap(), v, "f32 n={n}");
            // F16 stores the nearest half; odd n leaves the last word's high half unused.
            let f16t = Tensor::from_f32(gpu, &[n], DType::F16, &v).unwrap();
            assert_eq!(f16t.to_f32(gpu).unwrap(), round_f16(&v), "f16 n={n}");
            assert_eq!(f16t.byte_size(), 4 * n.div_ceil(2) as u64, "f16 n={n} bytes");
            let u: Vec<u32> = (0..n).map(|_| rng.next_u64() as u32).collect();
            let u32t = Tensor::from_u32(gpu, &[n], &u).unwrap();
            assert_eq!(u32t.to_u32(gpu).unwrap(), u, "u32 n={n}");
            // Raw words go in and come out untouched.
            let words: Vec<u32> = (0..n.div_ceil(2)).map(|_| rng.next_u64() as u32).collect();
            let raw = Tensor::from_words(gpu, &[n.div_ceil(2) * 2], DType::F16, &words).unwrap();
            assert_eq!(raw.to_words(gpu).unwrap(), words, "words n={n}");
        }
    }
}

#[test]
fn rows_views_read_and_write_the_parent() {
    let gpu = &gpus()[0];
    let (n, k) = (6, 3);
    let v: Vec<f32> = (0..n * k).map(|i| i as f32 + 0.5).collect();
    let t = Tensor::from_f32(gpu, &[n, k], DType::F32, &v).unwrap();
    let mid = t.rows(2, 3).unwrap();
    assert_eq!(mid.shape(), [3, k]);
    assert_eq!(mid.offset(), 4 * 2 * k as u64);
    assert!(mid.same_buffer(&t));
    assert_eq!(mid.to_f32(gpu).unwrap(), v[2 * k..5 * k]);
    mid.write_f32(gpu, &[-1.0; 9]).unwrap();
    let mut want = v.clone();
    want[2 * k..5 * k].fill(-1.0);
    assert_eq!(t.to_f32(gpu).unwrap(), want);
    assert_eq!(t.rows(0, 0).unwrap().numel(), 0);

    // F16 views must start on a whole word: an even element.
    let h = Tensor::from_f32(gpu, &[n, k], DType::F16, &v).unwrap();
    assert_eq!(h.rows(2, 4).unwrap().to_f32(gpu).unwrap(), round_f16(&v[2 * k..6 * k]));
    assert!(matches!(h.rows(1, 2), Err(Error::Shape { .. })), "odd f16 start");
    assert!(matches!(t.rows(4, 3), Err(Error::Shape { .. })), "past the end");
}

#[test]
fn reshape_keeps_storage() {
    let gpu = &gpus()[0];
    let v: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let t = Tensor::from_f32(gpu, &[3, 4], DType::F32, &v).unwrap();
    let r = t.reshape(&[2, 6]).unwrap();
    assert_eq!(r.shape(), [2, 6]);
    assert!(r.same_buffer(&t));
    assert_eq!(r.rows(1, 1).unwrap().to_f32(gpu).unwrap(), v[6..]);
    assert!(matches!(t.reshape(&[5, 2]), Err(Error::Shape { .. })));
    assert!(matches!(t.reshape(&[usize::MAX, 2]), Err(Error::Shape { .. })), "overflowing shape");
}

#[test]
fn tensor_errors_are_returned() {
    let gpu = &gpus()[0];
    let f = Tensor::empty(gpu, &[4], DType::F32).unwrap();
    let u = Tensor::empty(gpu, &[4], DType::U32).unwrap();
    assert!(matches!(f.write_f32(gpu, &[1.0; 3]), Err(Error::Shape { .. })), "short write");
    assert!(matches!(f.write_f32(gpu, &[1.0; 5]), Err(Error::Shape { .. })), "long write");
    assert!(matches!(u.write_u32(gpu, &[1; 5]), Err(Error::Shape { .. })), "long u32 write");
    assert!(matches!(f.write_words(gpu, &[0; 5]), Err(Error::Shape { .. })), "too many words");
    assert!(matches!(f.write_u32(gpu, &[1; 4]), Err(Error::DType { .. })), "u32 into f32");
    assert!(matches!(u.write_f32(gpu, &[1.0; 4]), Err(Error::DType { .. })), "f32 into u32");
    assert!(matches!(u.to_f32(gpu), Err(Error::DType { .. })), "u32 as f32");
    assert!(matches!(f.to_u32(gpu), Err(Error::DType { .. })), "f32 as u32");
    assert!(matches!(Tensor::from_f32(gpu, &[4], DType::U32, &[0.0; 4]), Err(Error::DType { .. })));
    assert!(matches!(Tensor::from_u32(gpu, &[3], &[1; 4]), Err(Error::Shape { .. })));
    let huge = [1usize << 40];
    assert!(matches!(Tensor::empty(gpu, &huge, DType::F32), Err(Error::TooLarge { .. })), "beyond max buffer");
    assert!(matches!(Tensor::empty(gpu, &[usize::MAX, 2], DType::F32), Err(Error::Shape { .. })), "overflow");
}

/// The adapter with storage bindings capped at 64 KiB (fast and portable), so that small
/// weights are split into several row chunks.
fn small_binding_gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        let cap = Some(64 << 10);
        let fast = GpuOptions { max_binding_bytes: cap, ..Default::default() };
        let portable = GpuOptions { subgroups: false, shader_f16: false, cooperative_matrix: false, ..fast.clone() };
        vec![Gpu::with_options(fast).unwrap(), Gpu::with_options(portable).unwrap()]
    })
}

#[test]
fn row_chunks_cover_every_row_within_the_limit() {
    for gpu in small_binding_gpus() {
        let limit = gpu.info().max_binding_bytes;
        assert_eq!(limit, 64 << 10);
        for (n, k, dtype) in [(333, 129, DType::F16), (400, 100, DType::F32), (10, 7, DType::F32)] {
            let w = Tensor::empty(gpu, &[n, k], dtype).unwrap();
            let chunks = w.row_chunks(gpu).unwrap();
            let mut next = 0;
            for (first, c) in &chunks {
                assert_eq!(*first, next, "chunks of [{n}, {k}] {dtype} are contiguous");
                assert!(c.byte_size() <= limit);
                assert_eq!(c.offset() % gpu.info().binding_alignment, 0);
                assert_eq!(c.offset(), dtype.bytes_for(first * k), "chunk offset is its first row");
                next += c.shape()[0];
            }
            assert_eq!(next, n, "chunks of [{n}, {k}] {dtype} cover every row");
            assert_eq!(chunks.len() > 1, w.byte_size() > limit);
        }
    }
}

/// matvec and matmul with weights split into row chunks, F32 and F16, rows of odd length (the
/// scalar matvec) and of whole 16-byte words (the vectorized one). Every output is checked.
#[test]
fn split_weights_match_reference() {
    for gpu in small_binding_gpus() {
        let limit = gpu.info().max_binding_bytes;
        for (n, k, dtype) in [
            (333, 129, DType::F16),
            (300, 136, DType::F16),
            (200, 129, DType::F32),
            (150, 132, DType::F32),
            (400, 100, DType::F32),
        ] {
            let case = format!("split [{n}, {k}] {dtype} [{}]", path(gpu));
            let (ws, xs) = crate::matvec::random_case(n, k, dtype, (n + k) as u64);
            let w = Tensor::from_f32(gpu, &[n, k], dtype, &ws).unwrap();
            let chunks = w.byte_size().div_ceil(limit) as usize;
            assert!(chunks > 1, "{case}: the weight must not fit one binding");

            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
            let op = matvec(gpu, &w, &x, &y).unwrap();
            assert!(op.labels().len() >= chunks, "{case}: one dispatch per chunk");
            let got = run_poisoned(gpu, &op, &y);
            let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
            reference::matvec::matvec(&ws, &xs, &mut want);
            reference::matvec::matvec_abs(&ws, &xs, &mut scale);
            assert_close_to_scale(&format!("matvec {case}"), &got, &want, &scale, SUM_RTOL, SUM_ATOL);

            let m = 5;
            let xm = Rng::new(7).vec(m * k, 1.0);
            let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &xm).unwrap();
            let y = Tensor::empty(gpu, &[m, n], DType::F32).unwrap();
            let op = matmul(gpu, &x, &w, &y).unwrap();
            assert!(op.labels().len() >= chunks, "{case}: one dispatch per chunk");
            let got = run_poisoned(gpu, &op, &y);
            // Where matmul takes the tensor cores, x is rounded to f16 (tests/kernels/matmul_coop.rs).
            let xm = crate::matmul_coop::x_as_matmul_sees(gpu, dtype, k, &xm);
            let rtol = crate::matmul_coop::matmul_rtol(gpu, dtype, k, SUM_RTOL);
            let (mut want, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
            reference::matmul::matmul(&xm, &ws, &mut want, (m, n, k));
            reference::matmul::matmul_abs(&xm, &ws, &mut scale, (m, n, k));
            assert_close_to_scale(&format!("matmul {case}"), &got, &want, &scale, rtol, SUM_ATOL);
        }
    }
}

/// An F16 weight of 8300 x 8192 (136 MB) crosses the adapter's real binding limit (128 MiB on
/// lavapipe; on a GPU with a larger limit it is one binding, and the test still checks it).
/// Random halves are drawn as bit patterns and decoded through a table, so the reference costs
/// one multiply-add per weight.
#[test]
fn matvec_f16_weight_past_the_binding_limit() {
    let (n, k) = (8300, 8192);
    let mut rng = Rng::new(8300);
    // Halves with a random sign and mantissa, magnitude in [2^-4, 2): finite, never zero.
    let mut half = || (rng.next_u64() as u32 & 0x83FF) | ((11 + rng.below(5)) << 10);
    let words: Vec<u32> = (0..n * k / 2).map(|_| half() | (half() << 16)).collect();
    let decode: Vec<f32> = (0..=u16::MAX).map(|h| half::f16::from_bits(h).to_f32()).collect();
    let xs = Rng::new(1).vec(k, 1.0);
    let (mut want, mut scale) = (vec![0.0f32; n], vec![0.0f32; n]);
    for row in 0..n {
        let (mut sum, mut abs) = (0f64, 0f64);
        for (i, &word) in words[row * k / 2..(row + 1) * k / 2].iter().enumerate() {
            for (j, h) in [word & 0xFFFF, word >> 16].into_iter().enumerate() {
                let term = decode[h as usize] as f64 * xs[2 * i + j] as f64;
                sum += term;
                abs += term.abs();
            }
        }
        want[row] = sum as f32;
        scale[row] = abs as f32;
    }
    for gpu in gpus() {
        let w = Tensor::from_words(gpu, &[n, k], DType::F16, &words).unwrap();
        let crosses = w.byte_size() > gpu.info().max_binding_bytes;
        let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
        let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
        let op = matvec(gpu, &w, &x, &y).unwrap();
        assert_eq!(op.labels().len() > 1, crosses, "one dispatch per chunk");
        let got = run_poisoned(gpu, &op, &y);
        let case = format!("matvec [{n}, {k}] f16, {} dispatches [{}]", op.labels().len(), path(gpu));
        assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
    }
}

/// An F16 view of odd length inside its buffer ends in the middle of a word whose other half
/// belongs to the next element: writing it must not clobber that element.
#[test]
fn f16_view_writes_leave_neighbours_alone() {
    let gpu = &gpus()[0];
    let v: Vec<f32> = (0..12).map(|i| i as f32 + 1.0).collect();
    let t = Tensor::from_f32(gpu, &[4, 3], DType::F16, &v).unwrap();
    let row2 = t.rows(2, 1).unwrap(); // elements 6..9: words 3 and 4, half of word 4 is row 3's
    match row2.write_f32(gpu, &[-1.0; 3]) {
        Ok(()) => {
            let mut want = v.clone();
            want[6..9].fill(-1.0);
            assert_eq!(t.to_f32(gpu).unwrap(), want);
        }
        Err(e) => assert!(matches!(e, Error::Shape { .. }), "{e}"),
    }
    assert_eq!(t.to_f32(gpu).unwrap()[9..], v[9..], "the next row is untouched");
    // A view that ends its buffer has nothing after it: an odd length is fine there.
    let last = t.rows(2, 2).unwrap();
    last.write_f32(gpu, &[5.0; 6]).unwrap();
    assert_eq!(t.to_f32(gpu).unwrap()[6..], [5.0; 6]);
    let odd_tail = Tensor::from_f32(gpu, &[3, 3], DType::F16, &v[..9]).unwrap().rows(2, 1).unwrap();
    odd_tail.write_f32(gpu, &[7.0; 3]).unwrap();
}
