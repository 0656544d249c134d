//! The load plan: what each weight becomes on the GPU, parsed from flags (or set through
//! [`CompressOptions`]) and resolved per tensor.
//!
//! - `--quant f16|q8|q4|q4g128`: every linear layer (q/k/v/o/gate/up/down). Embeddings, lm_head
//!   and norms stay float (norms f32), whatever the rules say.
//! - `--keep-layers N`: the first and last N decoder layers of the loaded model keep float linears.
//! - `--plan FILE` (one `PATTERN=DTYPE` a line, `#` comments) then `--override 'PATTERN=DTYPE,...'`:
//!   rules on the checkpoint's Hugging Face names (`*.down_proj.weight=q8`, `model.layers.0.*=f16`),
//!   applied in that order after the two above; a later rule wins. A rule that matches no linear
//!   weight is an error (a typo would otherwise do nothing).
//! - q/k/v and gate/up are stacked into one tensor each at load, so they must end up with one
//!   dtype: a plan that gives them different ones is refused, naming the tensors.
//! - `--prune SPEC[,SPEC]`: `magnitude:0.5`, `wanda:0.5`, `magnitude:2:4`, `wanda:2:4`,
//!   `wanda:4:8`, `layers:N`, `ffn:0.2`. Wanda, layers and ffn need calibration statistics
//!   (`--calib FILE`); with `--calib` and a 4-bit `--quant`, AWQ scales are searched and applied.

use std::path::PathBuf;
use std::sync::Arc;

use shaderlm_engine::DType;

use super::calib::CalibStats;
use crate::checkpoint::Config;
use crate::llama::WeightDType;
use crate::{Error, Result};

/// The compression part of `LoadOptions`: everything but the base dtype (`LoadOptions::dtype`,
/// which `--quant` sets).
#[derive(Clone, Debug)]
pub struct CompressOptions {
    /// The first and last `keep_layers` decoder layers keep float linear layers.
    pub keep_layers: usize,
    /// Per-tensor dtype rules, applied in order (a later rule wins).
    pub rules: Vec<Rule>,
    /// Pruning methods, at most one of each kind (weights, layers, ffn).
    pub prune: Vec<Prune>,
    /// Calibration text (e.g. ../shared/data/wikitext-2/valid.txt; never a test split).
    pub calib: Option<PathBuf>,
    /// Tokens of calibration text used.
    pub calib_tokens: usize,
    /// Statistics measured earlier (skip the calibration pass; a library user loading one model
    /// several ways calibrates once).
    pub stats: Option<Arc<CalibStats>>,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions { keep_layers: 0, rules: Vec::new(), prune: Vec::new(), calib: None, calib_tokens: 4096, stats: None }
    }
}

/// `PATTERN=DTYPE`: linear weights whose name matches the glob (`*` any run, `?` one character)
/// are stored as `dtype`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub pattern: String,
    pub dtype: WeightDType,
}

/// How a weight's entries are ranked for pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    /// |W_ij|
    Magnitude,
    /// |W_ij| * ||x_j||_2 over the calibration tokens (Wanda).
    Wanda,
}

/// Which entries of each linear weight are zeroed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sparsity {
    /// This fraction of each output row, the lowest scores.
    Unstructured(f32),
    /// In every group of `m` consecutive inputs, `m - n` are zeroed (2:4, 4:8).
    NM { n: usize, m: usize },
}

/// One `--prune` method.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prune {
    Weights { score: Score, sparsity: Sparsity },
    /// Drop this many decoder layers, those that change their input least.
    Layers(usize),
    /// Remove this fraction of every layer's FFN intermediate channels, the least important.
    Ffn(f32),
}

impl Prune {
    pub fn needs_calibration(&self) -> bool {
        !matches!(self, Prune::Weights { score: Score::Magnitude, .. })
    }
}

/// Parses a weight dtype name: `f32`, `f16`, `q8`, `q4`, `q4g128`.
pub fn parse_dtype(s: &str) -> Option<WeightDType> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "f32" => WeightDType::F32,
        "f16" => WeightDType::F16,
        "q8" => WeightDType::Q8,
        "q4" => WeightDType::Q4,
        "q4g128" => WeightDType::Q4G128,
        _ => return None,
    })
}

/// Parses one `PATTERN=DTYPE` rule; `what` names where it came from in errors.
pub fn parse_rule(s: &str, what: &str) -> Result<Rule> {
    let bad = |why: String| Error::Input(format!("{what}: {s:?}: {why}"));
    let (pattern, dtype) = s.rsplit_once('=').ok_or_else(|| bad("expected PATTERN=DTYPE".into()))?;
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return Err(bad("the pattern is empty".into()));
    }
    let dtype = parse_dtype(dtype).ok_or_else(|| bad(format!("unknown dtype {:?} (f32, f16, q8, q4, q4g128)", dtype.trim())))?;
    Ok(Rule { pattern: pattern.to_string(), dtype })
}

/// Parses `--override`'s comma-separated `PATTERN=DTYPE` list.
pub fn parse_rules(s: &str) -> Result<Vec<Rule>> {
    s.split(',').filter(|p| !p.trim().is_empty()).map(|p| parse_rule(p, "--override")).collect()
}

/// Parses a plan file's text: one `PATTERN=DTYPE` a line, `#` starts a comment; `path` names
/// the file in errors (with the line number).
pub fn parse_plan_file(text: &str, path: &str) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if !line.is_empty() {
            rules.push(parse_rule(line, &format!("{path} line {}", i + 1))?);
        }
    }
    Ok(rules)
}

/// Parses `--prune`'s comma-separated methods (see the module docs).
pub fn parse_prune(s: &str) -> Result<Vec<Prune>> {
    let mut out: Vec<Prune> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |why: &str| Error::Input(format!("--prune: {part:?}: {why}"));
        let fields: Vec<&str> = part.split(':').map(str::trim).collect();
        let fraction = |f: &str| -> Result<f32> {
            match f.parse::<f32>() {
                Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
                _ => Err(bad(&format!("{f:?} is not a fraction between 0 and 1"))),
            }
        };
        let count = |f: &str| f.parse::<usize>().map_err(|_| bad(&format!("{f:?} is not a whole number")));
        let prune = match fields.as_slice() {
            [method @ ("magnitude" | "wanda"), rest @ ..] => {
                let score = if *method == "wanda" { Score::Wanda } else { Score::Magnitude };
                let sparsity = match rest {
                    [f] => Sparsity::Unstructured(fraction(f)?),
                    [n, m] => {
                        let (n, m) = (count(n)?, count(m)?);
                        if n == 0 || n >= m {
                            return Err(bad(&format!("N:M needs 0 < N < M, got {n}:{m}")));
                        }
                        Sparsity::NM { n, m }
                    }
                    _ => return Err(bad(&format!("expected {method}:FRACTION or {method}:N:M"))),
                };
                Prune::Weights { score, sparsity }
            }
            ["layers", n] => match count(n)? {
                0 => return Err(bad("drop at least one layer")),
                n => Prune::Layers(n),
            },
            ["ffn", f] => Prune::Ffn(fraction(f)?),
            _ => return Err(bad("expected magnitude:F, wanda:F, magnitude:N:M, wanda:N:M, layers:N or ffn:F")),
        };
        if out.iter().any(|p| std::mem::discriminant(p) == std::mem::discriminant(&prune)) {
            return Err(bad("a second method of the same kind (give at most one weights, one layers and one ffn method)"));
        }
        out.push(prune);
    }
    Ok(out)
}

/// `*` matches any run of characters (dots included), `?` one character; the rest literally.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic backtracking over the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < s.len() {
        if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(st) = star {
            i = st + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// A decoder layer's linear weights, in checkpoint order.
pub const LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// The plan resolved against a checkpoint's config: checked, ready to answer per tensor.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// `--quant` (or `--dtype`): linear layers by default; its float dtype for embeddings,
    /// lm_head and the KV cache.
    pub dtype: WeightDType,
    pub keep_layers: usize,
    pub rules: Vec<Rule>,
    /// The weight-pruning method, if any.
    pub weights: Option<(Score, Sparsity)>,
    pub drop_layers: usize,
    pub ffn_fraction: Option<f32>,
    pub calib: Option<PathBuf>,
    pub calib_tokens: usize,
    /// Calibration text or statistics were given.
    pub calibrated: bool,
}

impl LoadPlan {
    /// Checks `options` against the checkpoint's config `cfg` (layer counts, rules that match
    /// nothing or split a stacked tensor, methods that need calibration text without it).
    pub fn new(cfg: &Config, dtype: WeightDType, options: &CompressOptions) -> Result<LoadPlan> {
        let mut plan = LoadPlan {
            dtype,
            keep_layers: options.keep_layers,
            rules: options.rules.clone(),
            weights: None,
            drop_layers: 0,
            ffn_fraction: None,
            calib: options.calib.clone(),
            calib_tokens: options.calib_tokens,
            calibrated: options.calib.is_some() || options.stats.is_some(),
        };
        for p in &options.prune {
            match *p {
                Prune::Weights { score, sparsity } => plan.weights = Some((score, sparsity)),
                Prune::Layers(n) => plan.drop_layers = n,
                Prune::Ffn(f) => plan.ffn_fraction = Some(f),
            }
        }
        if let Some(p) = options.prune.iter().find(|p| p.needs_calibration()) {
            if !plan.calibrated {
                return Err(Error::Input(format!(
                    "--prune {}: needs activations measured on calibration text; give --calib FILE \
                     (e.g. ../shared/data/wikitext-2/valid.txt)",
                    prune_name(p)
                )));
            }
        }
        let layers = cfg.num_hidden_layers;
        if plan.drop_layers > 0 && plan.drop_layers + 2 > layers {
            return Err(Error::Input(format!(
                "--prune layers:{}: the model has {layers} layers and the first and last are never dropped",
                plan.drop_layers
            )));
        }
        let kept = layers - plan.drop_layers;
        plan.check_rules(cfg, kept)?;
        Ok(plan)
    }

    /// Whether the plan uses calibration statistics (measured, or given in `CompressOptions::stats`).
    pub fn needs_stats(&self) -> bool {
        self.calibrated
            && (self.awq_dtype().is_some()
                || self.drop_layers > 0
                || self.ffn_fraction.is_some()
                || matches!(self.weights, Some((Score::Wanda, _))))
    }

    /// The 4-bit dtype AWQ searches scales for: when calibration text (or statistics) is given
    /// and `--quant` is 4-bit.
    pub fn awq_dtype(&self) -> Option<DType> {
        match self.dtype {
            WeightDType::Q4 if self.calibrated => Some(DType::Q4),
            WeightDType::Q4G128 if self.calibrated => Some(DType::Q4G128),
            _ => None,
        }
    }

    /// The float dtype of embeddings, lm_head and the KV cache.
    pub fn float_dtype(&self) -> DType {
        self.dtype.engine()
    }

    /// The dtype of linear weight `name` (a checkpoint name) with `k` inputs, in decoder layer
    /// `layer` of the `layers` the loaded model has: `--quant`, then `--keep-layers`, then the
    /// rules in order; a packed dtype falls back to float where `k` is no whole number of groups.
    pub fn linear_dtype(&self, name: &str, k: usize, layer: usize, layers: usize) -> DType {
        let mut d = self.dtype;
        if layer < self.keep_layers || layer + self.keep_layers >= layers {
            d = if d == WeightDType::F32 { WeightDType::F32 } else { WeightDType::F16 };
        }
        for rule in &self.rules {
            if glob_match(&rule.pattern, name) {
                d = rule.dtype;
            }
        }
        d.linear(k)
    }

    /// Every rule must match some linear weight, and q/k/v (and gate/up) must share a dtype in
    /// every layer.
    fn check_rules(&self, cfg: &Config, kept_layers: usize) -> Result<()> {
        let names: Vec<String> = (0..cfg.num_hidden_layers)
            .flat_map(|l| LINEARS.iter().map(move |s| format!("model.layers.{l}.{s}.weight")))
            .collect();
        if let Some(rule) = self.rules.iter().find(|r| !names.iter().any(|n| glob_match(&r.pattern, n))) {
            return Err(Error::Input(format!(
                "plan rule {}={:?} matches no linear weight (names look like model.layers.0.mlp.down_proj.weight)",
                rule.pattern, rule.dtype
            )));
        }
        // Layer positions for --keep-layers are those of the loaded model, which depend on the
        // layers dropped; q/k/v of one layer share a position, so any numbering checks stacking.
        let h = cfg.hidden_size;
        for l in 0..cfg.num_hidden_layers {
            let at = l.min(kept_layers.saturating_sub(1));
            for group in [&LINEARS[0..3], &LINEARS[4..6]] {
                let dts: Vec<(String, DType)> = group
                    .iter()
                    .map(|s| {
                        let name = format!("model.layers.{l}.{s}.weight");
                        let d = self.linear_dtype(&name, h, at, kept_layers);
                        (name, d)
                    })
                    .collect();
                if let Some((name, d)) = dts.iter().find(|(_, d)| *d != dts[0].1) {
                    return Err(Error::Input(format!(
                        "the plan stores {name} as {d} but {} as {}: they are stacked into one tensor at \
                         load and must share a dtype (give them the same rule)",
                        dts[0].0, dts[0].1
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A `--prune` method as the user writes it.
pub fn prune_name(p: &Prune) -> String {
    match *p {
        Prune::Weights { score, sparsity } => {
            let s = if score == Score::Wanda { "wanda" } else { "magnitude" };
            match sparsity {
                Sparsity::Unstructured(f) => format!("{s}:{f}"),
                Sparsity::NM { n, m } => format!("{s}:{n}:{m}"),
            }
        }
        Prune::Layers(n) => format!("layers:{n}"),
        Prune::Ffn(f) => format!("ffn:{f}"),
    }
}

/// Where 2:4-pruned weights of dense dtype `dtype` are stored compressed: the two kept values
/// of every group of four and their positions (`DType::S24F16`, `DType::S24Q4`), so decode reads
/// fewer bytes. `None` stores them dense (zeros included): every other dtype, and a row length
/// `k` that is not a whole number of the sparse format's groups.
pub fn sparse_storage(dtype: DType, k: usize) -> Option<DType> {
    let sparse = match dtype {
        DType::F16 => DType::S24F16,
        DType::Q4 => DType::S24Q4,
        _ => return None,
    };
    sparse.group().is_none_or(|g| k.is_multiple_of(g)).then_some(sparse)
}
