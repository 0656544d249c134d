//! CPU reference for kernels::argmax.

/// Index of the largest element of each row of length `n`: ties to the lowest index, NaN never
/// chosen, a row of NaN only gives 0 (-0.0 and 0.0 tie).
pub fn argmax(x: &[f32], n: usize) -> Vec<u32> {
    x.chunks(n)
        .map(|row| {
            let mut best: Option<(usize, f32)> = None;
            for (i, &v) in row.iter().enumerate() {
                if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
            best.map_or(0, |(i, _)| i as u32)
        })
        .collect()
}
