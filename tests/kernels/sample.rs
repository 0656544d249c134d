//! The GPU sampler against reference::sample: greedy, the kept set of every filter, the
//! distribution (chi-square), reproducibility, the repetition penalty, set_params.
//!
//! Many steps run in one submission: for each step, copy its value into the `step` tensor,
//! record the op, copy `out` into that step's slot of a results tensor.

use crate::common::*;
use shaderlm_engine::kernels::sample::{SampleParams, Sampler};
use shaderlm_engine::reference::sample as reference;
use shaderlm_engine::{DType, Error, Gpu, Recorder, Tensor};

/// One stream of sampling: its tensors and the sampler over them.
struct Stream {
    logits: Tensor,
    out: Tensor,
    step: Tensor,
    history: Tensor,
    history_len: Tensor,
    sampler: Sampler,
}

impl Stream {
    fn new(gpu: &Gpu, logits: &[f32], ring: &[u32], len: u32, params: SampleParams) -> Stream {
        let n = logits.len();
        let logits = Tensor::from_f32(gpu, &[n], DType::F32, logits).unwrap();
        let out = Tensor::from_u32(gpu, &[1], &[POISON]).unwrap();
        let step = Tensor::from_u32(gpu, &[1], &[0]).unwrap();
        let history = Tensor::from_u32(gpu, &[ring.len()], ring).unwrap();
        let history_len = Tensor::from_u32(gpu, &[1], &[len]).unwrap();
        let sampler = Sampler::new(gpu, &logits, &out, &step, &history, &history_len, params).unwrap();
        Stream { logits, out, step, history, history_len, sampler }
    }

    /// Runs one sampling step per entry of `steps`, in one submission; returns the ids.
    fn run(&self, gpu: &Gpu, steps: &[u32]) -> Vec<u32> {
        let values = Tensor::from_u32(gpu, &[steps.len()], steps).unwrap();
        let ids = Tensor::from_u32(gpu, &[steps.len()], &vec![POISON; steps.len()]).unwrap();
        let mut rec = Recorder::new(gpu);
        for j in 0..steps.len() {
            rec.copy(&values.rows(j, 1).unwrap(), &self.step).unwrap();
            rec.run(self.sampler.op());
            rec.copy(&self.out, &ids.rows(j, 1).unwrap()).unwrap();
        }
        rec.submit().unwrap();
        ids.to_u32(gpu).unwrap()
    }
}

fn steps(count: usize, first: u32) -> Vec<u32> {
    (0..count as u32).map(|j| first + j).collect()
}

fn params(temperature: f32, top_k: u32, top_p: f32, min_p: f32, seed: u64) -> SampleParams {
    SampleParams { temperature, top_k, top_p, min_p, repeat_penalty: 1.0, seed }
}

#[test]
fn sample_greedy_is_argmax() {
    for gpu in gpus() {
        for n in [1, 7, 33, 1000, 49152] {
            let mut rng = Rng::new(n as u64);
            let logits = rng.vec(n, 4.0);
            let window: Vec<u32> = (0..5).map(|_| rng.below(n as u32)).collect();
            let cases = [
                (SampleParams::GREEDY, &[][..]),
                (SampleParams { temperature: 0.7, top_k: 1, ..params(1.0, 0, 1.0, 0.0, 3) }, &[][..]),
                (SampleParams { repeat_penalty: 1.3, ..SampleParams::GREEDY }, &window[..]),
            ];
            for (p, window) in cases {
                let ring = if window.is_empty() { vec![0] } else { window.to_vec() };
                let s = Stream::new(gpu, &logits, &ring, window.len() as u32, p);
                let got = s.run(gpu, &[5, 6]);
                let want = reference::sample(&logits, window, &p, 5);
                assert_eq!(got[0], want, "greedy n={n} {p:?} [{}]", path(gpu));
                // The second step saw the first id appended to the window.
                let mut ring2 = ring.clone();
                ring2[window.len() % ring.len()] = want;
                let window2 = reference::history_window(&ring2, window.len() as u32 + 1);
                assert_eq!(got[1], reference::sample(&logits, window2, &p, 6), "greedy step 2 n={n} {p:?} [{}]", path(gpu));
            }
        }
    }
}

#[test]
fn sample_top_k_one_is_argmax_at_any_temperature() {
    for gpu in gpus() {
        let mut rng = Rng::new(11);
        let logits = rng.vec(1000, 0.5);
        let z: Vec<f64> = logits.iter().map(|&l| l as f64).collect();
        for temperature in [0.3, 1.0, 5.0] {
            let s = Stream::new(gpu, &logits, &[0], 0, params(temperature, 1, 1.0, 0.0, 9));
            let got = s.run(gpu, &steps(8, 0));
            assert!(got.iter().all(|&id| id as usize == reference::argmax(&z)), "T={temperature} [{}]: {got:?}", path(gpu));
        }
    }
}

/// Runs `count` steps of `p` on `logits` (penalty off) and checks every id against the kept set
/// of the reference and against the reference's own draw (same noise); returns the ids.
fn check_steps(gpu: &Gpu, case: &str, logits: &[f32], p: SampleParams, count: usize) -> Vec<u32> {
    let s = Stream::new(gpu, logits, &[0], 0, p);
    let got = s.run(gpu, &steps(count, 100));
    let probs = reference::probabilities(logits, &[], &p);
    let mut differ = 0;
    for (j, &id) in got.iter().enumerate() {
        assert!((id as usize) < logits.len() && probs[id as usize] > 0.0, "{case} [{}]: step {j} drew {id}, outside the kept set", path(gpu));
        differ += (id != reference::sample(logits, &[], &p, 100 + j as u32)) as usize;
    }
    // The noise is the same; only scores within float rounding of each other may order differently.
    assert!(differ <= count / 50, "{case} [{}]: {differ} of {count} draws differ from the reference's", path(gpu));
    got
}

#[test]
fn sample_stays_in_the_kept_set() {
    for gpu in gpus() {
        for n in [7, 33, 1000] {
            let logits = Rng::new(n as u64 + 1).vec(n, 3.0);
            let cases = [
                ("temperature", params(0.8, 0, 1.0, 0.0, 1)),
                ("top_k", params(1.0, 3, 1.0, 0.0, 2)),
                ("top_k half", params(1.5, n as u32 / 2, 1.0, 0.0, 3)),
                ("top_p", params(1.0, 0, 0.5, 0.0, 4)),
                ("top_p 0", params(1.0, 0, 0.0, 0.0, 4)),
                ("min_p", params(1.2, 0, 1.0, 0.2, 5)),
                ("all", params(0.7, 10, 0.8, 0.05, 6)),
                ("all, top_p binds", params(2.0, 20, 0.3, 0.01, 7)),
            ];
            for (name, p) in cases {
                check_steps(gpu, &format!("{name} n={n}"), &logits, p, 30);
            }
        }
        let big = Rng::new(49152).vec(49152, 6.0);
        check_steps(gpu, "all n=49152", &big, params(0.7, 40, 0.9, 0.02, 8), 4);
    }
}

#[test]
fn sample_keeps_every_tie_at_the_top_k_threshold() {
    for gpu in gpus() {
        // 1000 logits on 3 levels: the 500th largest sits inside a block of ties, more than a
        // workgroup wide, so the search must end on a single key.
        let mut rng = Rng::new(77);
        let logits: Vec<f32> = (0..1000).map(|_| rng.below(3) as f32 * 0.5).collect();
        let p = params(1.0, 500, 1.0, 0.0, 12);
        let got = check_steps(gpu, "ties", &logits, p, 40);
        let mut sorted = logits.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kept = logits.iter().filter(|&&l| l >= sorted[499]).count();
        let tied = logits.iter().filter(|&&l| l == sorted[499]).count();
        assert!(tied > 256 && kept > 500, "the kept tie block is wider than a workgroup");
        assert!(got.iter().any(|&id| logits[id as usize] == sorted[499]), "ties at the threshold are drawn [{}]", path(gpu));
    }
}

/// Pearson's chi-square of `counts` against `probs`, pooling expected counts below 5;
/// returns (statistic, degrees of freedom).
fn chi_square(counts: &[u32], probs: &[f64]) -> (f64, usize) {
    let total: u32 = counts.iter().sum();
    let (mut stat, mut cells) = (0.0, 0);
    let (mut pooled_obs, mut pooled_exp) = (0.0, 0.0);
    for (&o, &q) in counts.iter().zip(probs) {
        let e = q * total as f64;
        if q == 0.0 {
            if o > 0 {
                return (f64::INFINITY, 1); // an impossible id was drawn
            }
        } else if e < 5.0 {
            pooled_obs += o as f64;
            pooled_exp += e;
        } else {
            stat += (o as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    if pooled_exp > 0.0 {
        stat += (pooled_obs - pooled_exp).powi(2) / pooled_exp;
        cells += 1;
    }
    (stat, cells - 1)
}

/// The chi-square value a correct sampler exceeds with probability about 1e-4
/// (Wilson-Hilferty approximation).
fn chi_square_bound(df: usize) -> f64 {
    let d = df as f64;
    let z = 3.72;
    d * (1.0 - 2.0 / (9.0 * d) + z * (2.0 / (9.0 * d)).sqrt()).powi(3)
}

#[test]
fn sample_distribution_matches_the_reference() {
    let draws = 2000;
    for gpu in gpus() {
        // Each case with a near miss the test must reject, to show it has the power to.
        let p7 = params(1.0, 0, 1.0, 0.0, 21);
        let p33 = params(0.9, 12, 0.7, 0.0, 22);
        let p33m = params(1.0, 0, 1.0, 0.1, 23);
        let cases = [
            ("n=7 temperature 1", Rng::new(3).vec(7, 2.0), p7, SampleParams { temperature: 1.4, ..p7 }),
            ("n=33 top_k top_p", Rng::new(4).vec(33, 2.0), p33, SampleParams { top_p: 0.8, ..p33 }),
            ("n=33 min_p", Rng::new(5).vec(33, 2.0), p33m, SampleParams { min_p: 0.15, ..p33m }),
        ];
        for (case, logits, p, wrong) in cases {
            let s = Stream::new(gpu, &logits, &[0], 0, p);
            let mut counts = vec![0u32; logits.len()];
            for id in s.run(gpu, &steps(draws, 1)) {
                counts[id as usize] += 1;
            }
            let probs = reference::probabilities(&logits, &[], &p);
            let (stat, df) = chi_square(&counts, &probs);
            let bound = chi_square_bound(df);
            eprintln!("{case} [{}]: chi-square {stat:.1} (df {df}, bound {bound:.1})", path(gpu));
            assert!(stat < bound, "{case} [{}]: chi-square {stat:.1} > {bound:.1} (df {df}); counts {counts:?}", path(gpu));
            let (wrong_stat, wrong_df) = chi_square(&counts, &reference::probabilities(&logits, &[], &wrong));
            eprintln!("{case}: against {wrong:?}: {wrong_stat:.1} (df {wrong_df})");
            assert!(wrong_stat > chi_square_bound(wrong_df), "{case}: a wrong distribution passes ({wrong_stat:.1})");
        }
    }
}

#[test]
fn sample_is_reproducible_from_its_seed() {
    for gpu in gpus() {
        let logits = Rng::new(8).vec(33, 1.0);
        let run = |seed| Stream::new(gpu, &logits, &[0], 0, params(1.0, 0, 0.9, 0.0, seed)).run(gpu, &steps(40, 7));
        let first = run(1);
        assert_eq!(first, run(1), "same seed, same steps [{}]", path(gpu));
        assert_ne!(first, run(2), "another seed [{}]", path(gpu));
        assert_ne!(first[..20], first[20..], "steps draw afresh [{}]", path(gpu));
        // The high half of the seed counts too.
        assert_ne!(first, run(1 | 1 << 40), "seed high bits [{}]", path(gpu));
    }
}

#[test]
fn sample_repeat_penalty_applies_once_per_distinct_id() {
    for gpu in gpus() {
        let p = SampleParams { repeat_penalty: 1.2, ..SampleParams::GREEDY };
        // (logits, ring, len, expected id)
        let cases: [(&[f32], &[u32], u32, u32); 8] = [
            (&[2.0, 1.8], &[0], 1, 1),          // 2 / 1.2 = 1.67 < 1.8: flips
            (&[2.0, 1.5], &[0, 0], 2, 0),       // once: 1.67 > 1.5 (twice would be 1.39)
            (&[-1.0, -1.1], &[0], 1, 1),        // -1 * 1.2 = -1.2 < -1.1: flips
            (&[2.0, 1.8], &[0], 0, 0),          // empty window
            (&[2.0, 1.8, 1.9], &[2, 0], 1, 0),  // window is entry 0 only: 1.9 / 1.2 = 1.58
            (&[2.0, 1.8, 1.9], &[2, 0], 2, 1),  // both entries: 1.67, 1.8, 1.58
            (&[2.0, 1.8, 1.9], &[2, 0], 5, 1),  // a wrapped ring: both entries
            (&[2.0, 1.8], &[7, 0], 2, 1),       // ids past the vocabulary are ignored
        ];
        for (logits, ring, len, want) in cases {
            let s = Stream::new(gpu, logits, ring, len, p);
            let got = s.run(gpu, &[0])[0];
            let window = reference::history_window(ring, len);
            assert_eq!(reference::sample(logits, window, &p, 0), want, "reference {logits:?} {ring:?} len {len}");
            assert_eq!(got, want, "{logits:?} {ring:?} len {len} [{}]", path(gpu));
            // The id was appended to the ring.
            let mut ring2 = ring.to_vec();
            ring2[len as usize % ring.len()] = want;
            assert_eq!(s.history.to_u32(gpu).unwrap(), ring2);
            assert_eq!(s.history_len.to_u32(gpu).unwrap(), vec![len + 1]);
        }
        // Sampling (not greedy) with the penalty stays in the reference's kept set as the
        // window grows with every appended id.
        let logits = Rng::new(9).vec(33, 3.0);
        let p = SampleParams { repeat_penalty: 1.5, ..params(0.8, 5, 0.9, 0.0, 31) };
        let ring = vec![3, 3, 17, 30];
        let s = Stream::new(gpu, &logits, &ring, 3, p);
        let got = s.run(gpu, &steps(20, 0));
        let mut ring = ring.clone();
        for (j, &id) in got.iter().enumerate() {
            let len = 3 + j as u32;
            let probs = reference::probabilities(&logits, reference::history_window(&ring, len), &p);
            assert!(probs[id as usize] > 0.0, "penalty step {j}: {id} outside the kept set [{}]", path(gpu));
            let cap = ring.len();
            ring[len as usize % cap] = id;
        }
    }
}

#[test]
fn sample_set_params_takes_effect_without_rebuilding() {
    for gpu in gpus() {
        let s = Stream::new(gpu, &[2.0, 1.8, -1.0], &[0], 1, SampleParams::GREEDY);
        assert_eq!(s.run(gpu, &[0]), vec![0]);
        s.sampler.set_params(gpu, SampleParams { repeat_penalty: 1.2, ..SampleParams::GREEDY }).unwrap();
        assert_eq!(s.run(gpu, &[0]), vec![1], "penalty on [{}]", path(gpu));
        // Plain sampling at a high temperature reaches the third token.
        s.sampler.set_params(gpu, params(50.0, 0, 1.0, 0.0, 4)).unwrap();
        assert!(s.run(gpu, &steps(30, 0)).contains(&2), "temperature 50 [{}]", path(gpu));
        s.sampler.set_params(gpu, params(50.0, 2, 1.0, 0.0, 4)).unwrap();
        assert!(!s.run(gpu, &steps(30, 0)).contains(&2), "top_k 2 [{}]", path(gpu));
        assert_eq!(s.logits.to_f32(gpu).unwrap(), vec![2.0, 1.8, -1.0], "logits left intact");
    }
}

#[test]
fn sample_rejects_bad_inputs() {
    let gpu = &gpus()[0];
    let f32s = |shape: &[usize]| Tensor::empty(gpu, shape, DType::F32).unwrap();
    let u32s = |shape: &[usize]| Tensor::empty(gpu, shape, DType::U32).unwrap();
    let (logits, out, step, history, len) = (f32s(&[10]), u32s(&[1]), u32s(&[1]), u32s(&[4]), u32s(&[1]));
    let p = SampleParams::GREEDY;
    let new = |l: &Tensor, o: &Tensor, s: &Tensor, h: &Tensor, n: &Tensor, p| Sampler::new(gpu, l, o, s, h, n, p);
    assert!(new(&logits, &out, &step, &history, &len, p).is_ok());
    assert!(new(&f32s(&[1, 10]), &out, &step, &history, &len, p).is_ok());
    assert!(matches!(new(&u32s(&[10]), &out, &step, &history, &len, p), Err(Error::DType { .. })));
    assert!(matches!(new(&logits, &f32s(&[1]), &step, &history, &len, p), Err(Error::DType { .. })));
    assert!(matches!(new(&f32s(&[2, 5]), &out, &step, &history, &len, p), Err(Error::Shape { .. })));
    assert!(matches!(new(&logits, &u32s(&[2]), &step, &history, &len, p), Err(Error::Shape { .. })));
    assert!(matches!(new(&logits, &out, &step, &u32s(&[0]), &len, p), Err(Error::Shape { .. })));
    assert!(matches!(new(&logits, &out, &step, &history, &u32s(&[2]), p), Err(Error::Shape { .. })));
    assert!(matches!(new(&logits, &out, &out, &history, &len, p), Err(Error::Shape { .. })), "out aliases step");
    for bad in [
        SampleParams { top_p: 1.5, ..p },
        SampleParams { min_p: -0.1, ..p },
        SampleParams { repeat_penalty: 0.0, ..p },
        SampleParams { temperature: f32::NAN, ..p },
    ] {
        assert!(matches!(new(&logits, &out, &step, &history, &len, bad), Err(Error::Shape { .. })), "{bad:?}");
        let s = new(&logits, &out, &step, &history, &len, p).unwrap();
        assert!(s.set_params(gpu, bad).is_err(), "{bad:?}");
    }
}

/// Not a check: GPU time of one sampling step per configuration, for a real GPU
/// (`cargo test --test kernels sample_timing -- --ignored --nocapture`).
#[test]
#[ignore]
fn sample_timing() {
    let gpu = &gpus()[0];
    for n in [49152, 151936] {
        // Logit-like rows: a broad body and a few strong candidates.
        let mut rng = Rng::new(n as u64);
        let mut logits = rng.vec(n, 6.0);
        for _ in 0..20 {
            logits[rng.below(n as u32) as usize] += 12.0;
        }
        let ring: Vec<u32> = (0..64).map(|_| rng.below(n as u32)).collect();
        let configs = [
            ("greedy", SampleParams::GREEDY),
            ("temperature 0.8", params(0.8, 0, 1.0, 0.0, 1)),
            ("top_p 0.9", params(0.8, 0, 0.9, 0.0, 1)),
            ("min_p 0.05", params(0.8, 0, 1.0, 0.05, 1)),
            ("top_k 40 top_p 0.95", params(0.8, 40, 0.95, 0.0, 1)),
            ("top_k 40 top_p 0.95 penalty 1.1", SampleParams { repeat_penalty: 1.1, ..params(0.8, 40, 0.95, 0.0, 1) }),
        ];
        for (name, p) in configs {
            let s = Stream::new(gpu, &logits, &ring, 64, p);
            let mut times = Vec::new();
            for step in 0..21 {
                s.step.write_u32(gpu, &[step]).unwrap();
                let mut rec = Recorder::new(gpu);
                rec.run(s.sampler.op());
                times.push(rec.submit_timed().unwrap()[0].seconds * 1e6);
            }
            times.sort_by(f64::total_cmp);
            eprintln!("sample n={n} {name:<34} median {:8.1} us  min {:8.1} us", times[10], times[0]);
        }
    }
}
