//! The load plan and pruning: flag parsing and rules (table-driven), the pruning masks against
//! direct CPU computations, and models with layers dropped or FFN channels removed against a
//! CPU forward pass of the smaller model. Calibration statistics are built by hand here.

use std::sync::Arc;

use super::*;
use shaderlm::checkpoint::Checkpoint;
use shaderlm::compress::calib::{CalibStats, InputStats, LayerStats};
use shaderlm::compress::edits::Kind;
use shaderlm::compress::plan::{
    glob_match, parse_plan_file, parse_prune, parse_rules, CompressOptions, LoadPlan, Prune, Rule, Score, Sparsity,
};
use shaderlm::compress::prune;
use shaderlm_engine::DType;

/// A small seeded generator (xorshift), values in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

#[test]
fn prune_specs_parse_and_bad_ones_name_the_bad_part() {
    let w = |score, sparsity| Prune::Weights { score, sparsity };
    let good = [
        ("magnitude:0.5", vec![w(Score::Magnitude, Sparsity::Unstructured(0.5))]),
        ("wanda:0.5", vec![w(Score::Wanda, Sparsity::Unstructured(0.5))]),
        ("magnitude:2:4", vec![w(Score::Magnitude, Sparsity::NM { n: 2, m: 4 })]),
        ("wanda:2:4", vec![w(Score::Wanda, Sparsity::NM { n: 2, m: 4 })]),
        ("wanda:4:8", vec![w(Score::Wanda, Sparsity::NM { n: 4, m: 8 })]),
        ("layers:2", vec![Prune::Layers(2)]),
        ("ffn:0.2", vec![Prune::Ffn(0.2)]),
        ("layers:2, wanda:2:4", vec![Prune::Layers(2), w(Score::Wanda, Sparsity::NM { n: 2, m: 4 })]),
        ("ffn:0.25,magnitude:0.3,layers:1", vec![Prune::Ffn(0.25), w(Score::Magnitude, Sparsity::Unstructured(0.3)), Prune::Layers(1)]),
    ];
    for (spec, want) in good {
        assert_eq!(parse_prune(spec).unwrap(), want, "{spec}");
    }
    let bad = [
        ("wanda:1.5", "wanda:1.5"),
        ("wanda:x", "\"x\""),
        ("magnitude:4:2", "4:2"),
        ("sparsegpt:0.5", "sparsegpt:0.5"),
        ("layers:-1", "\"-1\""),
        ("layers:0", "layers:0"),
        ("ffn:0", "ffn:0"),
        ("wanda:0.5,magnitude:2:4", "magnitude:2:4"),
        ("wanda:2:4:8", "wanda:2:4:8"),
    ];
    for (spec, names) in bad {
        let err = parse_prune(spec).err().unwrap_or_else(|| panic!("{spec} parsed"));
        assert!(err.to_string().contains(names), "{spec}: {err}");
        assert!(err.to_string().contains("--prune"), "{spec}: {err}");
    }
}

#[test]
fn rules_and_plan_files_parse_and_bad_ones_name_the_bad_part() {
    let rules = parse_rules("*.down_proj.weight=q8, model.layers.0.*=F16").unwrap();
    assert_eq!(
        rules,
        vec![
            Rule { pattern: "*.down_proj.weight".into(), dtype: WeightDType::Q8 },
            Rule { pattern: "model.layers.0.*".into(), dtype: WeightDType::F16 }
        ]
    );
    let file = "# attention in 8 bits\n*.self_attn.*=q8\n\n  model.layers.1.mlp.*=q4g128  # wide groups\n";
    let rules = parse_plan_file(file, "plan.txt").unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[1], Rule { pattern: "model.layers.1.mlp.*".into(), dtype: WeightDType::Q4G128 });
    for (text, names) in [("*.q_proj=q3", "q3"), ("*.q_proj", "PATTERN=DTYPE"), ("=q8", "empty")] {
        let err = parse_rules(text).err().unwrap();
        assert!(err.to_string().contains(names) && err.to_string().contains("--override"), "{text}: {err}");
    }
    let err = parse_plan_file("*=q8\n# fine\n*.o_proj=int2\n", "plan.txt").err().unwrap();
    assert!(err.to_string().contains("plan.txt line 3") && err.to_string().contains("int2"), "{err}");

    for (pattern, name, want) in [
        ("*.down_proj.weight", "model.layers.3.mlp.down_proj.weight", true),
        ("model.layers.1.*", "model.layers.1.self_attn.q_proj.weight", true),
        ("model.layers.1.*", "model.layers.12.self_attn.q_proj.weight", false),
        ("model.layers.1?.*", "model.layers.12.self_attn.q_proj.weight", true),
        ("*", "anything", true),
        ("*q_proj", "model.layers.0.self_attn.q_proj.weight", false),
        ("*q_proj*", "model.layers.0.self_attn.q_proj.weight", true),
    ] {
        assert_eq!(glob_match(pattern, name), want, "{pattern} on {name}");
    }
}

/// Per-tensor dtypes: --quant, then --keep-layers, then the rules in order (a later rule wins);
/// a packed dtype falls back to float where k is no whole number of groups.
#[test]
fn plan_rules_resolve_per_tensor() {
    let ckpt = Checkpoint::open(&stories()).unwrap();
    let cfg = ckpt.config(); // 5 layers, hidden 64, intermediate 172
    let opts = |keep, rules: &str| CompressOptions { keep_layers: keep, rules: parse_rules(rules).unwrap(), ..Default::default() };
    let name = |l: usize, s: &str| format!("model.layers.{l}.{s}.weight");
    // (quant, keep, rules, tensor, layer, k, dtype)
    let table = [
        (WeightDType::Q8, 0, "", name(2, "self_attn.q_proj"), 2, 64, DType::Q8),
        (WeightDType::Q8, 0, "", name(2, "mlp.down_proj"), 2, 172, DType::F16),
        (WeightDType::Q8, 1, "", name(0, "self_attn.q_proj"), 0, 64, DType::F16),
        (WeightDType::Q8, 1, "", name(4, "self_attn.o_proj"), 4, 64, DType::F16),
        (WeightDType::Q8, 1, "", name(3, "self_attn.o_proj"), 3, 64, DType::Q8),
        (WeightDType::Q8, 2, "", name(3, "self_attn.o_proj"), 3, 64, DType::F16),
        (WeightDType::F32, 1, "", name(0, "self_attn.o_proj"), 0, 64, DType::F32),
        (WeightDType::Q8, 1, "model.layers.0.*=q4", name(0, "mlp.gate_proj"), 0, 64, DType::Q4),
        (WeightDType::F16, 0, "*.o_proj.weight=q8,model.layers.2.*=q4", name(2, "self_attn.o_proj"), 2, 64, DType::Q4),
        (WeightDType::F16, 0, "model.layers.2.*=q4,*.o_proj.weight=q8", name(2, "self_attn.o_proj"), 2, 64, DType::Q8),
        (WeightDType::F16, 0, "*.o_proj.weight=q4g128", name(2, "self_attn.o_proj"), 2, 64, DType::F16),
    ];
    for (quant, keep, rules, tensor, layer, k, want) in table {
        let plan = LoadPlan::new(cfg, quant, &opts(keep, rules)).unwrap();
        assert_eq!(plan.linear_dtype(&tensor, k, layer, 5), want, "{quant:?} keep {keep} rules {rules:?}: {tensor}");
    }
    // Stacked tensors must share a dtype; a rule must match something.
    let err = LoadPlan::new(cfg, WeightDType::Q4, &opts(0, "*.k_proj.weight=q8")).err().unwrap();
    assert!(err.to_string().contains("k_proj") && err.to_string().contains("stacked"), "{err}");
    let err = LoadPlan::new(cfg, WeightDType::F16, &opts(0, "model.layers.1.mlp.up_proj.weight=q8")).err().unwrap();
    assert!(err.to_string().contains("up_proj") && err.to_string().contains("stacked"), "{err}");
    assert!(LoadPlan::new(cfg, WeightDType::F16, &opts(0, "*.mlp.*_proj.weight=q8")).is_ok());
    let err = LoadPlan::new(cfg, WeightDType::F16, &opts(0, "*.q_porj.weight=q8")).err().unwrap();
    assert!(err.to_string().contains("q_porj") && err.to_string().contains("matches no"), "{err}");
    // Methods that need activations, without calibration text.
    for spec in ["wanda:0.5", "layers:1", "ffn:0.2", "wanda:2:4"] {
        let options = CompressOptions { prune: parse_prune(spec).unwrap(), ..Default::default() };
        let err = LoadPlan::new(cfg, WeightDType::F16, &options).err().unwrap();
        assert!(err.to_string().contains(spec) && err.to_string().contains("--calib"), "{spec}: {err}");
    }
    let options = CompressOptions { prune: parse_prune("magnitude:2:4").unwrap(), ..Default::default() };
    assert!(LoadPlan::new(cfg, WeightDType::F16, &options).is_ok(), "magnitude needs no calibration");
    let options = CompressOptions { prune: parse_prune("layers:4").unwrap(), calib: Some("x.txt".into()), ..Default::default() };
    let err = LoadPlan::new(cfg, WeightDType::F16, &options).err().unwrap();
    assert!(err.to_string().contains("layers:4") && err.to_string().contains("5 layers"), "{err}");
}

/// Every group of M consecutive inputs keeps exactly N, and they are the group's N highest scores.
#[test]
fn nm_groups_keep_exactly_n() {
    let mut rng = Rng(7);
    for (n, m, rows, k) in [(2, 4, 7, 64), (4, 8, 3, 64), (2, 4, 1, 4), (1, 4, 5, 36)] {
        let w = rng.vec(rows * k);
        for score in [Score::Magnitude, Score::Wanda] {
            let norms: Vec<f32> = (0..k).map(|_| rng.next().abs() + 0.01).collect();
            let s = prune::scores(&w, k, score, Some(&norms)).unwrap();
            let keep = prune::mask(&s, k, Sparsity::NM { n, m }).unwrap();
            for (g, group) in keep.chunks(m).enumerate() {
                assert_eq!(group.iter().filter(|&&x| x).count(), n, "{n}:{m} {score:?}: group {g}");
                let scores = &s[g * m..(g + 1) * m];
                let lowest_kept = (0..m).filter(|&j| group[j]).map(|j| scores[j]).fold(f32::MAX, f32::min);
                let highest_pruned = (0..m).filter(|&j| !group[j]).map(|j| scores[j]).fold(f32::MIN, f32::max);
                assert!(lowest_kept >= highest_pruned, "{n}:{m} {score:?}: group {g} keeps a lower score");
            }
        }
    }
    // A tail shorter than M stays dense.
    let keep = prune::mask(&[1.0; 10], 10, Sparsity::NM { n: 4, m: 8 }).unwrap();
    assert_eq!(keep.iter().filter(|&&x| !x).count(), 4);
    assert!(keep[8] && keep[9]);
}

/// Wanda's mask on a small layer equals a direct computation: entry (i, j) is pruned iff
/// fewer than round(s * k) entries of row i have a lower |W| * ||x||, counting ties at lower
/// indices as lower.
#[test]
fn wanda_mask_equals_a_direct_cpu_computation() {
    let mut rng = Rng(11);
    let (rows, k) = (9, 33);
    let w = rng.vec(rows * k);
    // Activations: 20 tokens, a few channels much larger (what makes Wanda differ from magnitude).
    let x: Vec<Vec<f32>> = (0..20).map(|_| (0..k).map(|j| rng.next() * if j % 7 == 0 { 20.0 } else { 1.0 }).collect()).collect();
    let stats = InputStats {
        sum_sq: (0..k).map(|j| x.iter().map(|t| (t[j] as f64).powi(2)).sum()).collect(),
        sum_abs: vec![0.0; k],
        tokens: 20,
        sample: Vec::new(),
    };
    let norms = stats.l2_norms();
    let mut pruned = w.clone();
    prune::prune(&mut pruned, k, Score::Wanda, Sparsity::Unstructured(0.5), Some(&norms)).unwrap();
    let count = (0.5f64 * k as f64).round() as usize;
    for i in 0..rows {
        let score = |j: usize| w[i * k + j].abs() as f64 * x.iter().map(|t| (t[j] as f64).powi(2)).sum::<f64>().sqrt();
        for j in 0..k {
            let below = (0..k).filter(|&o| score(o) < score(j) || (score(o) == score(j) && o < j)).count();
            let want = if below < count { 0.0 } else { w[i * k + j] };
            assert_eq!(pruned[i * k + j], want, "row {i} column {j}");
        }
    }
    // And it is not the magnitude mask.
    let mut by_magnitude = w.clone();
    prune::prune(&mut by_magnitude, k, Score::Magnitude, Sparsity::Unstructured(0.5), None).unwrap();
    assert_ne!(by_magnitude, pruned);
    // Wanda needs norms, one per input.
    assert!(prune::scores(&w, k, Score::Wanda, None).is_err());
    assert!(prune::scores(&w, k, Score::Wanda, Some(&norms[1..])).is_err());
}

/// A weight large enough to be pruned on several threads gives the one-thread mask.
#[test]
fn large_weights_prune_in_row_blocks_like_one_block() {
    let mut rng = Rng(17);
    let (rows, k) = (1031, 1024);
    let w = rng.vec(rows * k);
    let norms: Vec<f32> = (0..k).map(|_| rng.next().abs() + 0.1).collect();
    for (score, sparsity) in [(Score::Wanda, Sparsity::NM { n: 2, m: 4 }), (Score::Magnitude, Sparsity::Unstructured(0.3))] {
        let keep = prune::mask(&prune::scores(&w, k, score, Some(&norms)).unwrap(), k, sparsity).unwrap();
        let mut want = w.clone();
        prune::apply_mask(&mut want, &keep);
        let mut got = w.clone();
        prune::prune(&mut got, k, score, sparsity, Some(&norms)).unwrap();
        assert!(got == want, "{score:?} {sparsity:?}");
    }
}

#[test]
fn magnitude_reaches_the_sparsity_exactly() {
    let mut rng = Rng(3);
    for (rows, k, s) in [(1, 64, 0.5), (7, 172, 0.5), (33, 64, 0.3), (5, 257, 0.9)] {
        let mut w = rng.vec(rows * k);
        let original = w.clone();
        prune::prune(&mut w, k, Score::Magnitude, Sparsity::Unstructured(s), None).unwrap();
        let per_row = ((s as f64) * k as f64).round() as usize;
        for (r, row) in w.chunks(k).enumerate() {
            assert_eq!(row.iter().filter(|&&v| v == 0.0).count(), per_row, "{rows}x{k} at {s}: row {r}");
            // The zeroed are the smallest: every kept |w| is at least every pruned one.
            let orig = &original[r * k..(r + 1) * k];
            let kept_min = (0..k).filter(|&j| row[j] != 0.0).map(|j| orig[j].abs()).fold(f32::MAX, f32::min);
            let pruned_max = (0..k).filter(|&j| row[j] == 0.0).map(|j| orig[j].abs()).fold(0.0, f32::max);
            assert!(kept_min >= pruned_max);
        }
    }
}

#[test]
fn layer_and_channel_rankings() {
    // Highest cosine first, never the first or last.
    assert_eq!(prune::layers_to_drop(&[0.99, 0.2, 0.95, 0.5, 0.99], 2).unwrap(), vec![2, 3]);
    assert_eq!(prune::layers_to_drop(&[0.1, 0.9, 0.95, 0.5, 0.99], 1).unwrap(), vec![2]);
    assert!(prune::layers_to_drop(&[0.1, 0.9, 0.95], 2).is_err());
    // Channel importance sqrt(sum a_j^2) * ||down[:, j]||.
    let down = [1.0, 2.0, 0.0, 3.0, 0.0, 1.0, 1.0, 1.0]; // (2, 4)
    let scores = prune::ffn_channel_scores(&down, 4, &[1.0, 1.0, 100.0, 0.25]).unwrap();
    // column norms^2: 1, 5, 1, 10
    let want = [1.0, 5f64.sqrt(), 10.0, 10f64.sqrt() * 0.5];
    for (g, w) in scores.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{scores:?}");
    }
    assert_eq!(prune::ffn_channels_to_keep(&scores, 2), vec![1, 2]);
    // Kept counts stay a multiple of what divided f.
    assert_eq!(prune::ffn_keep_count(172, 0.2), 136);
    assert_eq!(prune::ffn_keep_count(1536, 0.2), 1216);
    assert_eq!(prune::ffn_keep_count(64, 0.9), 32);
}

/// Hand-made statistics for stories260K (5 layers, hidden 64, intermediate 172).
fn stories_stats(cosines: [f64; 5], seed: u64) -> CalibStats {
    let mut rng = Rng(seed);
    let input = |rng: &mut Rng, k: usize| InputStats {
        sum_sq: (0..k).map(|_| (rng.next().abs() + 0.05) as f64 * 10.0).collect(),
        sum_abs: (0..k).map(|_| rng.next().abs() as f64 + 0.05).collect(),
        tokens: 10,
        sample: Vec::new(),
    };
    let layers = cosines
        .iter()
        .map(|&c| LayerStats {
            attn_in: input(&mut rng, 64),
            o_in: input(&mut rng, 64),
            ffn_in: input(&mut rng, 64),
            down_in: input(&mut rng, 172),
            block_cosine: c,
        })
        .collect();
    CalibStats { layers, tokens: 10 }
}

fn load_with(prune: &str, stats: Option<CalibStats>) -> Model {
    let compress = CompressOptions { prune: parse_prune(prune).unwrap(), stats: stats.map(Arc::new), ..Default::default() };
    let options = LoadOptions { dtype: WeightDType::F32, ctx: Some(64), prefill_chunk: 16, compress, ..Default::default() };
    Model::load(stories(), &options).unwrap()
}

fn worst(got: &[f32], want: &[Vec<f64>]) -> f64 {
    let vocab = want[0].len();
    want.iter().enumerate().flat_map(|(t, row)| row.iter().enumerate().map(move |(v, w)| (t * vocab + v, *w))).map(|(i, w)| (got[i] as f64 - w).abs()).fold(0.0, f64::max)
}

/// Two layers dropped (the two middle ones with the highest block cosine, 2 and 3; never the
/// last, whose cosine is highest) and 20% of FFN channels removed: the logits equal a CPU
/// forward over the smaller model built on the CPU.
#[test]
fn dropped_layers_and_ffn_channels_match_a_cpu_reference_of_the_smaller_model() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ckpt = Checkpoint::open(&stories()).unwrap();
    let prompt = ids(&reference()["prompt_1"]["ids"]);
    let stats = stories_stats([0.5, 0.6, 0.97, 0.95, 0.99], 5);

    let mut model = load_with("layers:2", Some(stats.clone()));
    assert_eq!(model.config.num_hidden_layers, 3);
    assert_eq!(model.summary.dropped_layers, vec![2, 3]);
    let got = model.logits(&prompt).unwrap();
    let mut cpu = cpu_llama::CpuLlama::load(&ckpt);
    cpu.edit(|cfg, w| {
        cfg.num_hidden_layers = 3;
        let renamed: Vec<(String, Vec<f64>)> = w
            .iter()
            .filter_map(|(name, v)| name.strip_prefix("model.layers.4.").map(|rest| (format!("model.layers.2.{rest}"), v.clone())))
            .collect();
        w.extend(renamed);
    });
    let want = cpu.logits(&prompt);
    let d = worst(&got, &want);
    assert!(d < 1e-3, "layers dropped: largest logit difference {d}");

    let bytes: u64 = model.summary.kinds.iter().map(|r| r.bytes).sum();
    assert_eq!(bytes, model.summary.weight_bytes, "layers dropped: planned bytes are the bytes loaded");

    let mut model = load_with("ffn:0.2", Some(stats.clone()));
    assert_eq!(model.config.intermediate_size, 136);
    let bytes: u64 = model.summary.kinds.iter().map(|r| r.bytes).sum();
    assert_eq!(bytes, model.summary.weight_bytes, "FFN channels removed: planned bytes are the bytes loaded");
    let got = model.logits(&prompt).unwrap();
    let mut cpu = cpu_llama::CpuLlama::load(&ckpt);
    cpu.edit(|cfg, w| {
        cfg.intermediate_size = 136;
        for l in 0..5 {
            let p = format!("model.layers.{l}.mlp");
            let down = w[&format!("{p}.down_proj.weight")].clone(); // (64, 172)
            // importance of channel j: sqrt(sum a_j^2) * ||down[:, j]||; keep the 136 highest
            let mut order: Vec<usize> = (0..172).collect();
            let score = |j: usize| stats.layers[l].down_in.sum_sq[j].sqrt() * (0..64).map(|r| down[r * 172 + j].powi(2)).sum::<f64>().sqrt();
            order.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
            let mut kept = order[..136].to_vec();
            kept.sort_unstable();
            for name in ["gate_proj", "up_proj"] {
                let full = &w[&format!("{p}.{name}.weight")];
                let rows: Vec<f64> = kept.iter().flat_map(|&j| full[j * 64..(j + 1) * 64].to_vec()).collect();
                w.insert(format!("{p}.{name}.weight"), rows);
            }
            let cols: Vec<f64> = (0..64).flat_map(|r| kept.iter().map(move |&j| (r, j))).map(|(r, j)| down[r * 172 + j]).collect();
            w.insert(format!("{p}.down_proj.weight"), cols);
        }
    });
    let want = cpu.logits(&prompt);
    let d = worst(&got, &want);
    assert!(d < 1e-3, "FFN channels removed: largest logit difference {d}");
    eprintln!("{}", model.summary);
}

/// Magnitude 50% on f32 weights: every linear kind reports exactly 50% zeros (k = 64 and 172
/// are even), measured on what was stored; the logits equal the CPU forward over the same
/// pruned weights; and the summary says the zeros are stored dense.
#[test]
fn magnitude_pruned_model_reports_its_sparsity_and_matches_the_cpu() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = load_with("magnitude:0.5", None);
    let kinds = &model.summary.kinds;
    for kind in [Kind::Qkv, Kind::O, Kind::GateUp, Kind::Down] {
        let row = kinds.iter().find(|r| r.kind == kind).unwrap();
        assert_eq!(row.sparsity(), Some(0.5), "{kind:?}");
    }
    let embed = kinds.iter().find(|r| r.kind == Kind::Embed).unwrap();
    assert!(embed.sparsity().unwrap() < 0.01, "embeddings are not pruned");
    let text = model.summary.to_string();
    assert!(text.contains("magnitude:0.5") && text.contains("stored dense"), "{text}");

    let ckpt = Checkpoint::open(&stories()).unwrap();
    let mut cpu = cpu_llama::CpuLlama::load(&ckpt);
    cpu.map_weights(|name, values| {
        if !name.contains("_proj") {
            return None;
        }
        let k = if name.contains("down_proj") { 172 } else { 64 };
        let mut w: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        prune::prune(&mut w, k, Score::Magnitude, Sparsity::Unstructured(0.5), None).unwrap();
        Some(w.into_iter().map(f64::from).collect())
    });
    let prompt = ids(&reference()["prompt_1"]["ids"]);
    let d = worst(&model.logits(&prompt).unwrap(), &cpu.logits(&prompt));
    assert!(d < 1e-3, "largest logit difference {d}");
}

/// --keep-layers 1 with q8: layers 0 and 4 keep f16 linears, the others are q8 (down_proj,
/// k = 172, is f16 everywhere); the summary lists both dtypes and the bytes add up.
#[test]
fn keep_layers_really_keeps_those_layers_float() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let compress = CompressOptions { keep_layers: 1, ..Default::default() };
    let options = LoadOptions { dtype: WeightDType::Q8, ctx: Some(64), prefill_chunk: 16, compress, ..Default::default() };
    let model = Model::load(stories(), &options).unwrap();
    for t in &model.summary.tensors {
        let Some(rest) = t.name.strip_prefix("model.layers.") else { continue };
        let layer: usize = rest.split('.').next().unwrap().parse().unwrap();
        if t.name.contains("norm") {
            assert_eq!(t.dtype, DType::F32, "{}", t.name);
        } else if layer == 0 || layer == 4 || t.name.contains("down_proj") {
            assert_eq!(t.dtype, DType::F16, "{}", t.name);
        } else {
            assert_eq!(t.dtype, DType::Q8, "{}", t.name);
        }
    }
    let qkv = model.summary.kinds.iter().find(|r| r.kind == Kind::Qkv).unwrap();
    assert_eq!(qkv.dtypes, vec![DType::F16, DType::Q8]);
    let total: u64 = model.summary.kinds.iter().map(|r| r.bytes).sum();
    assert_eq!(total, model.summary.weight_bytes, "planned bytes are the bytes loaded");
}

/// Wanda, layers and ffn without calibration text are refused by Model::load with a message
/// that says what to add; a bad plan too.
#[test]
fn load_refuses_wanda_without_calib_and_bad_plans() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let compress = CompressOptions { prune: parse_prune("wanda:2:4").unwrap(), ..Default::default() };
    let err = Model::load(stories(), &LoadOptions { compress, ..Default::default() }).err().unwrap();
    assert!(matches!(err, Error::Input(_)) && err.to_string().contains("--calib"), "{err}");
    let compress = CompressOptions { rules: parse_rules("*.v_proj.weight=q8").unwrap(), ..Default::default() };
    let err = Model::load(stories(), &LoadOptions { compress, ..Default::default() }).err().unwrap();
    assert!(err.to_string().contains("v_proj"), "{err}");
}

/// Wanda 2:4 (hand-made statistics) on q8 linears: the groups of four keep two, so q/k/v, o and
/// gate/up store at least half zeros (q8 keeps a pruned zero exact; a kept value may round to
/// zero too); down_proj (k = 172, f16) exactly half; the model still runs.
#[test]
fn wanda_two_four_on_q8_reaches_half_sparsity() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let compress = CompressOptions {
        prune: parse_prune("wanda:2:4").unwrap(),
        stats: Some(Arc::new(stories_stats([0.5; 5], 9))),
        ..Default::default()
    };
    let options = LoadOptions { dtype: WeightDType::Q8, ctx: Some(64), prefill_chunk: 16, compress, ..Default::default() };
    let mut model = Model::load(stories(), &options).unwrap();
    for kind in [Kind::Qkv, Kind::O, Kind::GateUp, Kind::Down] {
        let row = model.summary.kinds.iter().find(|r| r.kind == kind).unwrap();
        let s = row.sparsity().unwrap();
        if kind == Kind::Down {
            assert_eq!(s, 0.5, "{kind:?} ({:?})", row.dtypes);
        } else {
            assert_eq!(row.dtypes, vec![DType::Q8]);
            assert!((0.5..0.52).contains(&s), "{kind:?}: sparsity {s}");
        }
    }
    let logits = model.logits(&ids(&reference()["prompt_1"]["ids"])).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
}

/// The edits reach the right tensors: with AWQ scales and FFN channels kept (both made by
/// hand for layer 1 of stories260K), the f32 weights on the GPU are the checkpoint's with
/// input_layernorm / s_attn, q/k/v columns * s_attn, post_attention_layernorm / s_ffn, gate/up
/// rows selected and columns * s_ffn, up rows / s_down[kept], down columns selected and
/// * s_down[kept]; layer 0 is untouched.
#[test]
fn awq_scales_and_ffn_channels_reach_the_right_tensors() {
    use shaderlm::compress::awq::LayerScales;
    use shaderlm::compress::edits::Edits;
    use shaderlm::llama::Weights;
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gpu = shaderlm_engine::Gpu::new().unwrap();
    let ckpt = Checkpoint::open(&stories()).unwrap();
    let cfg = ckpt.config();
    let (h, f) = (64, 172);
    let mut rng = Rng(21);
    let mut positive = |n: usize| (0..n).map(|_| rng.next().abs() + 0.5).collect::<Vec<f32>>();
    let s_attn = positive(h);
    let s_ffn = positive(h);
    let s_down = positive(f);
    let kept: Vec<usize> = (0..f).filter(|j| j % 5 != 2).take(136).collect();
    let mut edits = Edits::none(cfg);
    edits.scales = vec![LayerScales::default(); 5];
    edits.scales[1] = LayerScales { attn_in: s_attn.clone(), ffn_in: s_ffn.clone(), down_in: s_down.clone() };
    edits.ffn_channels = (0..5).map(|_| Some(kept.clone())).collect();
    let plan = LoadPlan::new(cfg, WeightDType::F32, &CompressOptions::default()).unwrap();
    let (w, _) = Weights::load_planned(&gpu, &ckpt, &plan, &edits, 0..cfg.num_hidden_layers, |_, _| {}).unwrap();

    let read = |name: &str, shape: &[usize]| ckpt.tensor_f32(name, shape).unwrap();
    let p = "model.layers.1";
    let l = &w.layers[1];
    let check = |what: &str, got: Vec<f32>, want: Vec<f32>| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{what}[{i}]: {g} vs {w}");
        }
    };
    let norm = read(&format!("{p}.input_layernorm.weight"), &[h]);
    check("input_layernorm", l.input_layernorm.to_f32(&gpu).unwrap(), norm.iter().zip(&s_attn).map(|(g, s)| g / s).collect());
    let q = read(&format!("{p}.self_attn.q_proj.weight"), &[64, h]);
    check("q_proj", l.q_proj.to_f32(&gpu).unwrap(), q.chunks(h).flat_map(|r| r.iter().zip(&s_attn).map(|(v, s)| v * s)).collect());
    let norm = read(&format!("{p}.post_attention_layernorm.weight"), &[h]);
    check("post_attention_layernorm", l.post_attention_layernorm.to_f32(&gpu).unwrap(), norm.iter().zip(&s_ffn).map(|(g, s)| g / s).collect());
    let gate = read(&format!("{p}.mlp.gate_proj.weight"), &[f, h]);
    let want: Vec<f32> = kept.iter().flat_map(|&j| gate[j * h..(j + 1) * h].iter().zip(&s_ffn).map(|(v, s)| v * s)).collect();
    check("gate_proj", l.gate_proj.to_f32(&gpu).unwrap(), want);
    let up = read(&format!("{p}.mlp.up_proj.weight"), &[f, h]);
    let sd = &s_down;
    let want: Vec<f32> =
        kept.iter().flat_map(|&j| up[j * h..(j + 1) * h].iter().zip(&s_ffn).map(move |(v, s)| v * s / sd[j])).collect();
    check("up_proj", l.up_proj.to_f32(&gpu).unwrap(), want);
    let down = read(&format!("{p}.mlp.down_proj.weight"), &[h, f]);
    let want: Vec<f32> = (0..h).flat_map(|r| kept.iter().map(move |&j| (r, j))).map(|(r, j)| down[r * f + j] * s_down[j]).collect();
    check("down_proj", l.down_proj.to_f32(&gpu).unwrap(), want);
    // Layer 0: no scales, channels removed only.
    let q0 = read("model.layers.0.self_attn.q_proj.weight", &[64, h]);
    check("layer 0 q_proj", w.layers[0].q_proj.to_f32(&gpu).unwrap(), q0);
    assert_eq!(w.layers[0].down_proj.shape(), &[h, 136]);
}
