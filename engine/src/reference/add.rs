//! CPU references for kernels::add.

/// `x[i] += y[i]`.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a = (*a as f64 + *b as f64) as f32;
    }
}

/// `x[m, i] += bias[i]` for every row of length `bias.len()`.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_mut(bias.len()) {
        add(row, bias);
    }
}
