//! The calibration pass and AWQ on stories260K: calibrate's per-channel statistics, sample rows and
//! block cosines equal a CPU computation from the f64 forward pass (cpu_llama's layer taps);
//! AWQ's rescaling leaves the float network unchanged; on a layer with a few large input channels
//! AWQ's error is below round-to-nearest's; the search never reports worse than RTN.
//!
//! stories260K: hidden 64 (q/k/v and gate/up inputs: two Q4 groups of 32, no whole group of 128),
//! intermediate 172 (down_proj's input: no whole group, stays float).

use super::cpu_llama::{CpuLlama, LayerTaps};
use super::*;
use shaderlm::checkpoint::Checkpoint;
use shaderlm::compress::awq::{self, divide_rows, scale_columns, search_linear};
use shaderlm::compress::calib::{calibrate, calibration_ids, CalibOptions, CalibStats, InputStats};
use shaderlm_engine::{DType, Gpu};

/// SplitMix64 (as tests/kernels/common.rs): seeded test data, never zeros.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

const STORY: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the \
    sunshine. One day, she saw a big, red ball in the park. She ran to it and kicked it high into the sky. \
    Her friend Tom came to play too, and they laughed all day long.";

/// `|got - want| <= atol + rtol * |want|` for every element, naming the first one that is not.
fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: got {g}, want {w}");
    }
}

/// The statistics the CPU forward pass gives for `rows` of one input (all chunks' rows in order).
fn cpu_input_stats(rows: &[&Vec<f64>], keep: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let k = rows[0].len();
    let (mut sq, mut abs) = (vec![0.0; k], vec![0.0; k]);
    for row in rows {
        for (c, v) in row.iter().enumerate() {
            sq[c] += v * v;
            abs[c] += v.abs();
        }
    }
    let sample = rows.iter().take(keep).flat_map(|r| r.iter().copied()).collect();
    (sq, abs, sample)
}

fn check_input(what: &str, got: &InputStats, rows: &[&Vec<f64>], keep: usize) {
    let (sq, abs, sample) = cpu_input_stats(rows, keep);
    assert_eq!(got.tokens, rows.len(), "{what}: tokens");
    // The GPU runs in f32: activations agree to ~1e-5 relative; sums over 32 rows to a bit more.
    let scale = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert_close(&format!("{what} sum_sq"), &got.sum_sq, &sq, 1e-5 * scale(&sq), 1e-4);
    assert_close(&format!("{what} sum_abs"), &got.sum_abs, &abs, 1e-5 * scale(&abs), 1e-4);
    let got_sample: Vec<f64> = got.sample.iter().map(|&v| v as f64).collect();
    assert_close(&format!("{what} sample"), &got_sample, &sample, 1e-4 * scale(&sample), 1e-4);
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Calibrates stories260K (f32 weights) over 33 tokens in chunks of 16: two chunks run, the last
/// single token is left out; every layer's statistics equal the CPU forward pass's, each chunk
/// run from position 0. The model still answers as before afterwards.
#[test]
fn calibrate_matches_the_cpu_forward_pass() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = load(&stories(), WeightDType::F32);
    let ids = model.tokenizer.encode(STORY, true).unwrap()[..33].to_vec();
    let opts = CalibOptions { chunk: 16, sample_rows: 20, progress: false };
    let stats = calibrate(&mut model, &ids, &opts).unwrap();
    assert_eq!(stats.tokens, 32, "the last one-token chunk is left out");
    assert_eq!(stats.layers.len(), model.config.num_hidden_layers);

    let cpu = CpuLlama::load(&Checkpoint::open(&stories()).unwrap());
    let taps: Vec<Vec<LayerTaps>> = ids[..32].chunks(16).map(|c| cpu.layer_taps(c)).collect();
    for (l, got) in stats.layers.iter().enumerate() {
        let rows = |pick: fn(&LayerTaps) -> &Vec<Vec<f64>>| -> Vec<&Vec<f64>> {
            taps.iter().flat_map(|chunk| pick(&chunk[l]).iter()).collect()
        };
        check_input(&format!("L{l} attn_in"), &got.attn_in, &rows(|t| &t.attn_in), 20);
        check_input(&format!("L{l} o_in"), &got.o_in, &rows(|t| &t.o_in), 20);
        check_input(&format!("L{l} ffn_in"), &got.ffn_in, &rows(|t| &t.ffn_in), 20);
        check_input(&format!("L{l} down_in"), &got.down_in, &rows(|t| &t.down_in), 20);
        let (before, after) = (rows(|t| &t.x_in), rows(|t| &t.x_out));
        let want = before.iter().zip(&after).map(|(a, b)| cosine(a, b)).sum::<f64>() / 32.0;
        assert!((got.block_cosine - want).abs() < 1e-5, "L{l} block_cosine {} vs {want}", got.block_cosine);
    }

    // The cache was overwritten with calibration text and forgotten: logits are the reference's.
    let r = reference();
    let prompt = super::ids(&r["prompt_1"]["ids"]);
    let logits = model.logits(&prompt).unwrap();
    let last = &logits[(prompt.len() - 1) * model.config.vocab_size..];
    let want = r["prompt_1"]["last_position_logits"].as_array().unwrap();
    let worst = last.iter().zip(want).map(|(a, b)| (*a as f64 - b.as_f64().unwrap()).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-3, "logits after calibrating differ by {worst}");
}

#[test]
fn calibrate_refuses_too_few_tokens() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = load(&stories(), WeightDType::F32);
    let opts = CalibOptions { chunk: 16, sample_rows: 4, progress: false };
    assert!(matches!(calibrate(&mut model, &[1], &opts), Err(Error::Input(_))));
    assert!(matches!(calibrate(&mut model, &[], &opts), Err(Error::Input(_))));
    let one = CalibOptions { chunk: 1, ..opts };
    assert!(matches!(calibrate(&mut model, &[1, 2, 3], &one), Err(Error::Input(_))));
}

/// calibration_ids: the text's plain ids (no BOS), cut at max_tokens whether or not the text is
/// tokenized from a prefix; a missing file is an error naming it.
#[test]
fn calibration_ids_tokenize_and_truncate() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let model = load(&stories(), WeightDType::F32);
    let dir = std::env::temp_dir().join(format!("shaderlm-calib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("calib.txt");
    let text = format!("{STORY}\n").repeat(20);
    std::fs::write(&path, &text).unwrap();
    let all = model.tokenizer.encode(&text, false).unwrap();
    assert_ne!(all[0], model.tokenizer.bos_id().unwrap(), "the text itself starts with no BOS");
    for max in [5, 100, all.len(), all.len() + 10] {
        let got = calibration_ids(&model, &path, max).unwrap();
        assert_eq!(got, all[..max.min(all.len())], "max_tokens {max}");
    }
    let missing = dir.join("missing.txt");
    let err = calibration_ids(&model, &missing, 10).unwrap_err().to_string();
    assert!(err.contains("missing.txt"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// RMSNorm of `x` times `g`, in f64.
fn rms_norm(x: &[f64], g: &[f64]) -> Vec<f64> {
    let r = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + 1e-5).sqrt();
    x.iter().zip(g).map(|(v, g)| v * r * g).collect()
}

/// `W x` for a row-major W with x.len() columns.
fn matvec(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks(x.len()).map(|row| row.iter().zip(x).map(|(a, b)| *a as f64 * b).sum()).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Scaling a linear's columns by s and dividing its input's producer by s leaves the float
/// output unchanged: the norm weight before q/k/v (and gate/up), up_proj's rows before down_proj.
#[test]
fn awq_rescaling_leaves_the_float_output_unchanged() {
    let mut rng = Rng::new(5);
    let (k, n, f) = (48, 40, 24);
    let x = f64s(&rng.vec(k, 2.0));
    let s: Vec<f32> = rng.vec(k, 1.0).iter().map(|v| 0.3 + 2.0 * v.abs()).collect();
    let (w, g) = (rng.vec(n * k, 0.5), rng.vec(k, 1.0));
    let want = matvec(&w, &rms_norm(&x, &f64s(&g)));
    let (mut w2, mut g2) = (w.clone(), g.clone());
    scale_columns(&mut w2, k, &s);
    divide_rows(&mut g2, 1, &s);
    let got = matvec(&w2, &rms_norm(&x, &f64s(&g2)));
    assert_close("norm -> linear", &got, &want, 1e-5, 1e-5);

    // silu(gate x) * (up x), then down: up's rows divided by s, down's columns multiplied.
    let s: Vec<f32> = rng.vec(f, 1.0).iter().map(|v| 0.3 + 2.0 * v.abs()).collect();
    let (gate, up, down) = (rng.vec(f * k, 0.5), rng.vec(f * k, 0.5), rng.vec(n * f, 0.5));
    let mlp = |up: &[f32], down: &[f32]| {
        let (gv, uv) = (matvec(&gate, &x), matvec(up, &x));
        let h: Vec<f64> = gv.iter().zip(&uv).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
        matvec(down, &h)
    };
    let want = mlp(&up, &down);
    let (mut up2, mut down2) = (up.clone(), down.clone());
    divide_rows(&mut up2, k, &s);
    scale_columns(&mut down2, f, &s);
    assert_close("up -> down", &mlp(&up2, &down2), &want, 1e-5, 1e-5);
}

/// Statistics of `rows` (m, k) as the calibration pass would give them, all rows kept.
fn stats_of(rows: &[f32], k: usize) -> InputStats {
    let mut stats = InputStats { sum_sq: vec![0.0; k], sum_abs: vec![0.0; k], tokens: rows.len() / k, sample: rows.to_vec() };
    for row in rows.chunks(k) {
        for (c, &v) in row.iter().enumerate() {
            stats.sum_sq[c] += (v as f64).powi(2);
            stats.sum_abs[c] += (v as f64).abs();
        }
    }
    stats
}

/// A random layer whose input has four channels 30x larger than the rest: AWQ finds a smaller
/// output error than round-to-nearest, for groups of 32 and of 128; a width that is no whole
/// number of groups is left float.
#[test]
fn awq_beats_round_to_nearest_on_a_layer_with_large_channels() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gpu = Gpu::new().unwrap();
    let mut rng = Rng::new(11);
    let (m, n, k) = (64, 96, 256);
    let mut x = rng.vec(m * k, 1.0);
    for row in x.chunks_mut(k) {
        for c in [3, 70, 130, 200] {
            row[c] *= 30.0;
        }
    }
    let w = rng.vec(n * k, 0.05);
    let stats = stats_of(&x, k);
    for dtype in [DType::Q4, DType::Q4G128] {
        let found = search_linear(&gpu, &w, k, &stats, dtype).unwrap();
        eprintln!("{dtype}: rtn {:.5} awq {:.5} alpha {}", found.rtn_error, found.awq_error, found.alpha);
        assert!(found.awq_error < 0.9 * found.rtn_error, "{dtype}: awq {} vs rtn {}", found.awq_error, found.rtn_error);
        assert!(found.alpha > 0.0);
        assert_eq!(found.scales.len(), k);
        assert!(found.scales.iter().all(|s| s.is_finite() && *s > 0.0));
    }
    // k = 200 is no whole number of groups of 32: nothing to search.
    let (x, w) = (rng.vec(8 * 200, 1.0), rng.vec(4 * 200, 1.0));
    let found = search_linear(&gpu, &w, 200, &stats_of(&x, 200), DType::Q4).unwrap();
    assert!(found.scales.is_empty() && found.rtn_error == 0.0 && found.awq_error == 0.0);
    // Statistics of another width are an error.
    assert!(matches!(search_linear(&gpu, &w, 200, &stats, DType::Q4), Err(Error::Input(_))));
}

/// The whole search on stories260K: one report and one set of scales per layer, AWQ never worse
/// than round-to-nearest; q/k/v and gate/up scaled (k = 64), down_proj float (k = 172); with groups
/// of 128 nothing is quantized. Wrong statistics or a float dtype are errors.
#[test]
fn search_on_stories260k_is_never_worse_than_round_to_nearest() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = load(&stories(), WeightDType::F32);
    let ids = model.tokenizer.encode(&STORY.repeat(3), false).unwrap();
    let opts = CalibOptions { chunk: 64, sample_rows: 64, progress: false };
    let stats = calibrate(&mut model, &ids, &opts).unwrap();
    let ckpt = Checkpoint::open(&stories()).unwrap();
    let (scales, reports) = awq::search(&model.gpu, &ckpt, &stats, DType::Q4, false).unwrap();
    awq::print_report(&reports);
    assert_eq!((scales.len(), reports.len()), (5, 5));
    for (l, (s, r)) in scales.iter().zip(&reports).enumerate() {
        assert_eq!(r.layer, l);
        for i in 0..3 {
            assert!(r.awq_error[i] <= r.rtn_error[i], "L{l} input {i}: awq {} rtn {}", r.awq_error[i], r.rtn_error[i]);
        }
        assert!(r.rtn_error[0] > 0.0 && r.rtn_error[1] > 0.0, "q/k/v and gate/up are quantized");
        assert_eq!((s.attn_in.len(), s.ffn_in.len(), s.down_in.len()), (64, 64, 0));
        assert_eq!(r.rtn_error[2], 0.0, "down_proj stays float");
        assert!(s.attn_in.iter().chain(&s.ffn_in).all(|v| v.is_finite() && *v > 0.0));
    }
    let (scales, _) = awq::search(&model.gpu, &ckpt, &stats, DType::Q4G128, false).unwrap();
    assert!(scales.iter().all(|s| s.attn_in.is_empty() && s.ffn_in.is_empty() && s.down_in.is_empty()));

    let short = CalibStats { layers: stats.layers[..2].to_vec(), tokens: stats.tokens };
    assert!(matches!(awq::search(&model.gpu, &ckpt, &short, DType::Q4, false), Err(Error::Input(_))));
    assert!(matches!(awq::search(&model.gpu, &ckpt, &stats, DType::F16, false), Err(Error::Input(_))));
}
