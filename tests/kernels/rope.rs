use crate::common::*;
use shaderlm_engine::kernels::rope::{self, Llama3Scaling};
use shaderlm_engine::{reference, DType, Error, Gpu, Tensor};

const LLAMA31: Llama3Scaling = Llama3Scaling {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192,
};

/// Angles are reduced exactly on the GPU, so the error left is f32 sin/cos and rounding: this
/// holds at position 100 000 too, where a plain f32 `p * inv_freq` is off by up to 4e-3 rad
/// (that version fails this tolerance from position ~4000 on).
const ATOL: f32 = 2e-6;
const RTOL: f32 = 1e-5;

/// Runs rope on random `x` `[rows, n_heads * head_dim]` at `pos` and compares with the reference.
fn check(gpu: &Gpu, rows: usize, n_heads: usize, head_dim: usize, freqs: &[f32], pos: u32) {
    let n = rows * n_heads * head_dim;
    let xs = Rng::new((n + pos as usize) as u64).vec(n, 1.0);
    let x = Tensor::from_f32(gpu, &[rows, n_heads * head_dim], DType::F32, &xs).unwrap();
    let f = Tensor::from_f32(gpu, &[freqs.len()], DType::F32, freqs).unwrap();
    let p = Tensor::from_u32(gpu, &[1], &[pos]).unwrap();
    run(gpu, &rope::rope(gpu, &x, &f, &p, n_heads, head_dim).unwrap());
    let mut want = xs.clone();
    reference::rope::rope(&mut want, freqs, pos, n_heads, head_dim);
    let rot_dim = 2 * freqs.len();
    let case = format!("rope rows={rows} heads={n_heads} head_dim={head_dim} rot_dim={rot_dim} pos={pos} [{}]", path(gpu));
    assert_close(&case, &x.to_f32(gpu).unwrap(), &want, ATOL, RTOL);
}

#[test]
fn rope_matches_reference() {
    for gpu in gpus() {
        for pos in [0, 1, 4095, 100_000, 131_071, 1 << 20] {
            check(gpu, 1, 1, 2, &rope::inv_freq(2, 10_000.0, None), pos);
            check(gpu, 7, 3, 8, &rope::inv_freq(8, 10_000.0, None), pos);
            check(gpu, 3, 4, 64, &rope::inv_freq(64, 500_000.0, Some(LLAMA31)), pos);
            check(gpu, 2, 2, 128, &rope::inv_freq(128, 1_000_000.0, None), pos);
        }
        // T = 33 rows of 9 heads of 64 (SmolLM2's shape) from position 1000.
        check(gpu, 33, 9, 64, &rope::inv_freq(64, 100_000.0, None), 1000);
    }
}

#[test]
fn rope_partial_rotary_leaves_the_tail_untouched() {
    for gpu in gpus() {
        // partial_rotary_factor 0.5: rot_dim 32 of head_dim 64; and an odd-sized tail (33 = 2*16 + 1).
        for (head_dim, rot_dim) in [(64, 32), (33, 32), (10, 2)] {
            for pos in [0, 100_000] {
                let freqs = rope::inv_freq(rot_dim, 10_000.0, None);
                check(gpu, 3, 5, head_dim, &freqs, pos);
                let xs = Rng::new(9).vec(5 * head_dim, 1.0);
                let x = Tensor::from_f32(gpu, &[1, 5 * head_dim], DType::F32, &xs).unwrap();
                let f = Tensor::from_f32(gpu, &[freqs.len()], DType::F32, &freqs).unwrap();
                let p = Tensor::from_u32(gpu, &[1], &[pos]).unwrap();
                run(gpu, &rope::rope(gpu, &x, &f, &p, 5, head_dim).unwrap());
                let got = x.to_f32(gpu).unwrap();
                for h in 0..5 {
                    let tail = h * head_dim + rot_dim..(h + 1) * head_dim;
                    assert_eq!(got[tail.clone()], xs[tail], "tail of head {h} (head_dim {head_dim}) [{}]", path(gpu));
                }
            }
        }
    }
}

#[test]
fn rope_replays_at_new_positions() {
    for gpu in gpus() {
        let (n_heads, head_dim) = (3, 16);
        let freqs = rope::inv_freq(head_dim, 10_000.0, None);
        let x = Tensor::empty(gpu, &[2, n_heads * head_dim], DType::F32).unwrap();
        let f = Tensor::from_f32(gpu, &[freqs.len()], DType::F32, &freqs).unwrap();
        let p = Tensor::from_u32(gpu, &[1], &[0]).unwrap();
        // Built once, recorded at every step: only the contents of x and pos change.
        let op = rope::rope(gpu, &x, &f, &p, n_heads, head_dim).unwrap();
        for pos in [17, 100_000, 3] {
            let xs = Rng::new(pos as u64).vec(2 * n_heads * head_dim, 1.0);
            x.write_f32(gpu, &xs).unwrap();
            p.write_u32(gpu, &[pos]).unwrap();
            run(gpu, &op);
            let mut want = xs.clone();
            reference::rope::rope(&mut want, &freqs, pos, n_heads, head_dim);
            assert_close(&format!("rope replay pos={pos} [{}]", path(gpu)), &x.to_f32(gpu).unwrap(), &want, ATOL, RTOL);
        }
    }
}

#[test]
fn inv_freq_matches_hand_computed_values() {
    // Plain: theta^(-2i/d).
    let plain = rope::inv_freq(64, 10_000.0, None);
    assert_eq!(plain.len(), 32);
    for (i, want) in [(0, 1.0), (1, 0.749_894_209_332_455_9), (20, 0.003_162_277_660_168_379_4)] {
        assert!((plain[i] as f64 / want - 1.0).abs() < 1e-6, "plain inv_freq[{i}] = {}, want {want}", plain[i]);
    }
    // Llama-3.1-8B: theta 500000, head_dim 128, factor 8, low 1, high 4, original 8192.
    // Wavelengths under 2048 are kept (i <= 28), over 8192 divided by 8 (i >= 35), blended between.
    let scaled = rope::inv_freq(128, 500_000.0, Some(LLAMA31));
    assert_eq!(scaled.len(), 64);
    let cases = [
        (0, 1.0),                   // kept
        (10, 0.128_687_373_432_651), // kept
        (28, 0.003_211_445_994_752_59), // kept: wavelength 1956
        (29, 0.002_166_570_763_503_36), // blended: wavelength 2402
        (32, 0.000_524_846_160_992_955), // blended: wavelength 4443
        (34, 0.000_178_507_812_767_996), // blended: wavelength 6695
        (35, 9.556_212_353_964_68e-5), // divided: wavelength 8219
        (50, 4.411_534_674_558_40e-6), // divided
        (63, 3.068_925_988_914_51e-7), // divided
    ];

    for (i, want) in cases {
        assert!((scaled[i] as f64 / want - 1.0).abs() < 1e-6, "llama3 inv_freq[{i}] = {}, want {want}", scaled[i]);
    }
}

#[test]
fn rope_rejects_mismatches() {
    let gpu = &gpus()[0];
    let x = Tensor::empty(gpu, &[2, 2 * 8], DType::F32).unwrap();
    let f = Tensor::empty(gpu, &[4], DType::F32).unwrap();
    let p = Tensor::from_u32(gpu, &[1], &[0]).unwrap();
    assert!(rope::rope(gpu, &x, &f, &p, 2, 8).is_ok());
    assert!(matches!(rope::rope(gpu, &x, &f, &p, 3, 8), Err(Error::Shape { .. })), "row length");
    let f5 = Tensor::empty(gpu, &[5], DType::F32).unwrap();
    assert!(matches!(rope::rope(gpu, &x, &f5, &p, 2, 8), Err(Error::Shape { .. })), "rot_dim > head_dim");
    let p2 = Tensor::from_u32(gpu, &[2], &[0, 1]).unwrap();
    assert!(matches!(rope::rope(gpu, &x, &f, &p2, 2, 8), Err(Error::Shape { .. })), "pos shape");
    let pf = Tensor::empty(gpu, &[1], DType::F32).unwrap();
    assert!(matches!(rope::rope(gpu, &x, &f, &pf, 2, 8), Err(Error::DType { .. })), "pos dtype");
    let fh = Tensor::empty(gpu, &[4], DType::F16).unwrap();
    assert!(matches!(rope::rope(gpu, &x, &fh, &p, 2, 8), Err(Error::DType { .. })), "inv_freq dtype");
}
