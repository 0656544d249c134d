//! Pruning, as pure functions on CPU data: masks for a row-major `(n, k)` f32 weight (output
//! rows, input columns), the layers to drop and the FFN channels to keep.
//!
//! - Unstructured: in each output row, the `round(sparsity * k)` entries with the lowest score
//!   are zeroed (so the sparsity is reached exactly, row by row).
//! - N:M: in every group of `m` consecutive inputs of a row, the `m - n` lowest are zeroed; a
//!   tail shorter than `m` (when `k % m != 0`) is left dense.
//! - Scores: magnitude `|W_ij|`, or Wanda `|W_ij| * ||x_j||_2` (the input channel's norm over
//!   the calibration tokens), compared within each row only.
//! - Ties go to the lower index: of two equal scores, the first is pruned first.
//!
//! Stored dense (unstructured, 4:8, or 2:4 until the compressed formats are switched on in
//! `plan::sparse_storage`), zeros are read like any other value: pruning then lowers quality
//! without making anything faster.

use super::plan::{Score, Sparsity};
use crate::{Error, Result};

/// The score of each entry of `w` (row-major, `k` columns): `|w|`, times `norms[j]` for Wanda.
pub fn scores(w: &[f32], k: usize, score: Score, norms: Option<&[f32]>) -> Result<Vec<f32>> {
    match (score, norms) {
        (Score::Magnitude, _) => Ok(w.iter().map(|v| v.abs()).collect()),
        (Score::Wanda, Some(norms)) if norms.len() == k => {
            Ok(w.chunks(k).flat_map(|row| row.iter().zip(norms).map(|(v, x)| v.abs() * x)).collect())
        }
        (Score::Wanda, Some(norms)) => {
            Err(Error::Input(format!("wanda: {} input norms for a weight with {k} inputs", norms.len())))
        }
        (Score::Wanda, None) => Err(Error::Input("wanda: no input norms (calibration statistics)".into())),
    }
}

/// Indices of the `count` lowest of `scores` (ties: the lower index first).
fn lowest(scores: &[f32], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order.truncate(count);
    order
}

/// Keep-mask (true = kept) of a row-major weight with `k` columns from its `scores`.
pub fn mask(scores: &[f32], k: usize, sparsity: Sparsity) -> Result<Vec<bool>> {
    if k == 0 || !scores.len().is_multiple_of(k) {
        return Err(Error::Input(format!("prune: {} scores do not make rows of {k}", scores.len())));
    }
    let mut keep = vec![true; scores.len()];
    match sparsity {
        Sparsity::Unstructured(f) => {
            let count = ((f as f64) * k as f64).round() as usize;
            for (r, row) in scores.chunks(k).enumerate() {
                for j in lowest(row, count.min(k)) {
                    keep[r * k + j] = false;
                }
            }
        }
        Sparsity::NM { n, m } => {
            if n == 0 || n >= m {
                return Err(Error::Input(format!("prune: N:M needs 0 < N < M, got {n}:{m}")));
            }
            // One small index buffer for every group (a large model has billions of groups).
            let mut order: Vec<usize> = Vec::with_capacity(m);
            for (g, group) in scores.chunks(k).flat_map(|row| row[..k - k % m].chunks(m)).enumerate() {
                order.clear();
                order.extend(0..m);
                order.sort_by(|&a, &b| group[a].total_cmp(&group[b]).then(a.cmp(&b)));
                let (row, first) = (g / (k / m), (g % (k / m)) * m);
                for &j in &order[..m - n] {
                    keep[row * k + first + j] = false;
                }
            }
        }
    }
    Ok(keep)
}

/// Zeroes the entries of `w` the mask does not keep.
pub fn apply_mask(w: &mut [f32], keep: &[bool]) {
    for (v, &k) in w.iter_mut().zip(keep) {
        if !k {
            *v = 0.0;
        }
    }
}

/// Prunes `w` (row-major, `k` columns) in place: scores, mask, zeroes. Rows are independent,
/// so a large weight is pruned in row blocks on every core.
pub fn prune(w: &mut [f32], k: usize, score: Score, sparsity: Sparsity, norms: Option<&[f32]>) -> Result<()> {
    if k == 0 || !w.len().is_multiple_of(k) {
        return Err(Error::Input(format!("prune: {} values do not make rows of {k}", w.len())));
    }
    let rows = w.len() / k;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if w.len() < 1 << 20 { 1 } else { cores.min(rows) };
    let prune_rows = |block: &mut [f32]| -> Result<()> {
        let keep = mask(&scores(block, k, score, norms)?, k, sparsity)?;
        apply_mask(block, &keep);
        Ok(())
    };
    if threads <= 1 {
        return prune_rows(w);
    }
    let block = rows.div_ceil(threads) * k;
    std::thread::scope(|s| {
        let handles: Vec<_> = w.chunks_mut(block).map(|b| s.spawn(move || prune_rows(b))).collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err(Error::Input("prune: a worker thread panicked".into()))))
    })
}

/// Fraction of entries that are exactly zero.
pub fn sparsity(values: &[f32]) -> f64 {
    values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len().max(1) as f64
}

/// The `n` layers to drop: those whose output is most like their input (highest
/// `block_cosine`), never the first or the last. Returned in increasing order.
pub fn layers_to_drop(block_cosine: &[f64], n: usize) -> Result<Vec<usize>> {
    let layers = block_cosine.len();
    if n + 2 > layers {
        return Err(Error::Input(format!("cannot drop {n} of {layers} layers (the first and last stay)")));
    }
    let mut middle: Vec<usize> = (1..layers - 1).collect();
    // Highest cosine first; ties: the later layer first (deeper layers tend to matter less).
    middle.sort_by(|&a, &b| block_cosine[b].total_cmp(&block_cosine[a]).then(b.cmp(&a)));
    let mut drop = middle[..n].to_vec();
    drop.sort_unstable();
    Ok(drop)
}

/// Importance of each FFN intermediate channel j of one layer: `||a_j||_2 * ||down[:, j]||_2`,
/// where `a_j` is the channel's activation (the input of down_proj) over the calibration tokens
/// (`down_in_sum_sq[j] = sum a_j^2`) and `down` is `(hidden, f)` row-major: how much the channel
/// can add to the layer's output.
pub fn ffn_channel_scores(down: &[f32], f: usize, down_in_sum_sq: &[f64]) -> Result<Vec<f64>> {
    if f == 0 || down_in_sum_sq.len() != f || !down.len().is_multiple_of(f) {
        return Err(Error::Input(format!(
            "ffn pruning: {} activation sums for a down_proj of {} values with {f} inputs",
            down_in_sum_sq.len(),
            down.len()
        )));
    }
    let mut col_sq = vec![0f64; f];
    for row in down.chunks(f) {
        for (c, v) in col_sq.iter_mut().zip(row) {
            *c += (*v as f64) * (*v as f64);
        }
    }
    Ok(col_sq.iter().zip(down_in_sum_sq).map(|(w, a)| (w * a).sqrt()).collect())
}

/// How many of `f` channels stay when `fraction` is removed: rounded to the nearest multiple of
/// the largest of 32, 8, 4 that divides `f` (so the quantization groups and N:M groups that fit
/// `f` still fit), at least one such multiple.
pub fn ffn_keep_count(f: usize, fraction: f32) -> usize {
    let align = [32, 8, 4].into_iter().find(|a| f.is_multiple_of(*a)).unwrap_or(1);
    let want = f as f64 * (1.0 - fraction as f64);
    let keep = ((want / align as f64).round() as usize * align).max(align);
    keep.min(f)
}

/// The `keep` channels with the highest scores, in increasing index order (ties: the lower
/// index is kept).
pub fn ffn_channels_to_keep(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(keep);
    order.sort_unstable();
    order
}

/// Rows `rows` (in order) of a row-major matrix with `k` columns.
pub fn select_rows(w: &[f32], k: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&r| w[r * k..(r + 1) * k].iter().copied()).collect()
}

/// Columns `cols` (in order) of a row-major matrix with `k` columns.
pub fn select_columns(w: &[f32], k: usize, cols: &[usize]) -> Vec<f32> {
    w.chunks(k).flat_map(|row| cols.iter().map(move |&c| row[c])).collect()
}
