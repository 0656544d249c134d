//! CPU reference for kernels::embedding.

/// Rows of `table` (`[vocab, dim]`, row-major) picked by `ids`; an id at or past `vocab` gives a
/// row of zeros.
pub fn embedding(table: &[f32], dim: usize, ids: &[u32]) -> Vec<f32> {
    let vocab = table.len() / dim;
    let mut out = Vec::with_capacity(ids.len() * dim);
    for &id in ids {
        let id = id as usize;
        if id < vocab {
            out.extend_from_slice(&table[id * dim..(id + 1) * dim]);
        } else {
            out.extend(std::iter::repeat_n(0.0, dim));
        }
    }
    out
}
