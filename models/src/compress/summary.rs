//! What loading did, for people: per tensor kind, the dtypes, GPU bytes, parameters and the
//! sparsity reached (zeros measured on what was stored); total GPU bytes; seconds; what the
//! plan removed; AWQ's per-layer error when it ran.

use std::fmt;

use shaderlm_engine::DType;

use super::awq::LayerReport;
use super::edits::{Kind, TensorRecord};

/// One row of the table: every tensor of one kind.
#[derive(Clone, Debug)]
pub struct KindRow {
    pub kind: Kind,
    pub dtypes: Vec<DType>,
    pub params: u64,
    pub bytes: u64,
    /// (zeros, parameters) over the tensors whose zeros were measured; None if none was.
    pub zeros: Option<(u64, u64)>,
}

impl KindRow {
    /// Fraction of zeros over the measured tensors.
    pub fn sparsity(&self) -> Option<f64> {
        self.zeros.map(|(z, n)| z as f64 / n.max(1) as f64)
    }
}

/// Groups `records` by kind, in table order.
pub fn kind_rows(records: &[TensorRecord]) -> Vec<KindRow> {
    let mut rows: Vec<KindRow> = Vec::new();
    let mut sorted: Vec<&TensorRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.kind);
    for r in sorted {
        if rows.last().is_none_or(|row| row.kind != r.kind) {
            rows.push(KindRow { kind: r.kind, dtypes: Vec::new(), params: 0, bytes: 0, zeros: None });
        }
        let Some(row) = rows.last_mut() else { continue };
        if !row.dtypes.contains(&r.dtype) {
            row.dtypes.push(r.dtype);
        }
        row.params += r.params;
        row.bytes += r.bytes;
        if let Some(z) = r.zeros {
            let (zs, n) = row.zeros.unwrap_or((0, 0));
            row.zeros = Some((zs + z, n + r.params));
        }
    }
    rows
}

/// What loading did.
#[derive(Clone, Debug, Default)]
pub struct LoadSummary {
    pub parameters: u64,
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub activation_bytes: u64,
    /// Whole load, calibration included.
    pub seconds: f64,
    /// Loading a dense copy and running the calibration pass over it.
    pub calibrate_seconds: f64,
    /// AWQ search and the pruning rankings.
    pub edit_seconds: f64,
    /// Reading, editing, quantizing and uploading the weights.
    pub weights_seconds: f64,
    /// Per tensor, what was stored.
    pub tensors: Vec<TensorRecord>,
    /// `tensors` grouped by kind.
    pub kinds: Vec<KindRow>,
    /// lm_head is the embedding table.
    pub tied: bool,
    /// The weight-pruning method as written (`wanda:2:4`) and whether its zeros are stored
    /// compressed (read fewer bytes) or dense (lower quality, no speed-up).
    pub pruning: Option<(String, bool)>,
    /// Checkpoint layers dropped.
    pub dropped_layers: Vec<usize>,
    /// FFN channels kept per layer, of how many.
    pub ffn_channels: Option<(usize, usize)>,
    /// AWQ's report per layer, when AWQ ran.
    pub awq: Vec<LayerReport>,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<14} {:<12} {:>10} {:>10} {:>9}", "tensors", "dtype", "params", "MiB", "sparsity")?;
        for row in &self.kinds {
            let dtypes = row.dtypes.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
            let sparsity = row.sparsity().map_or("-".to_string(), |s| format!("{:.1}%", 100.0 * s));
            writeln!(f, "{:<14} {:<12} {:>10} {:>10.2} {:>9}", row.kind.name(), dtypes, count(row.params), mib(row.bytes), sparsity)?;
        }
        if self.tied {
            writeln!(f, "{:<14} {:<12} {:>10} {:>10} {:>9}", "lm_head", "(= embed)", "-", "-", "-")?;
        }
        writeln!(
            f,
            "{:.1}M parameters; GPU {:.1} MiB: weights {:.1}, KV cache {:.1}, activations {:.1}",
            self.parameters as f64 / 1e6,
            mib(self.weight_bytes + self.kv_bytes + self.activation_bytes),
            mib(self.weight_bytes),
            mib(self.kv_bytes),
            mib(self.activation_bytes)
        )?;
        write!(f, "load {:.2} s", self.seconds)?;
        if self.calibrate_seconds > 0.0 {
            write!(f, " (calibrate {:.2} s, AWQ and rankings {:.2} s, ", self.calibrate_seconds, self.edit_seconds)?;
        } else {
            write!(f, " (")?;
        }
        write!(f, "read + quantize + upload {:.2} s)", self.weights_seconds)?;
        if let Some((method, compressed)) = &self.pruning {
            if *compressed {
                write!(f, "\npruned {method}: stored compressed (2:4), decode reads fewer bytes")?;
            } else {
                write!(f, "\npruned {method}: stored dense, zeros and all: it lowers quality without making anything faster")?;
            }
            let q4 = self.kinds.iter().any(|k| k.dtypes.iter().any(|d| matches!(d, DType::Q4 | DType::Q4G128)));
            if q4 && !*compressed {
                write!(f, "\n(dense q4 has no exact zero: a pruned value becomes the nearest point of its group's min + q * scale grid)")?;
            }
        }
        if !self.dropped_layers.is_empty() {
            write!(f, "\ndropped decoder layers {:?} (checkpoint numbering)", self.dropped_layers)?;
        }
        if let Some((kept, of)) = self.ffn_channels {
            write!(f, "\nFFN channels: kept {kept} of {of} in every layer")?;
        }
        if !self.awq.is_empty() {
            write!(f, "\nAWQ: relative output error on the calibration sample, round-to-nearest -> AWQ (alpha)")?;
            write!(f, "\n{:>5} {:>26} {:>26} {:>26}", "layer", "attn in (q/k/v)", "ffn in (gate/up)", "down in")?;
            for r in &self.awq {
                write!(f, "\n{:>5}", r.layer)?;
                for i in 0..3 {
                    // An input whose linears stayed float (k no whole number of groups) was not searched.
                    let skipped = r.rtn_error[i] == 0.0 && r.awq_error[i] == 0.0;
                    let cell = if skipped {
                        "-".to_string()
                    } else {
                        format!("{:.4} -> {:.4} ({:.2})", r.rtn_error[i], r.awq_error[i], r.alpha[i])
                    };
                    write!(f, " {cell:>26}")?;
                }
            }
        }
        Ok(())
    }
}
