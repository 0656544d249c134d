//! CPU reference for kernels::rope.

/// Rotates `x` (`[T, n_heads * head_dim]`, row `t` at position `pos + t`) in place, Hugging Face
/// rotate_half layout on the first `2 * inv_freq.len()` elements of each head; angles and
/// rotations in f64.
pub fn rope(x: &mut [f32], inv_freq: &[f32], pos: u32, n_heads: usize, head_dim: usize) {
    let half = inv_freq.len();
    for (t, row) in x.chunks_mut(n_heads * head_dim).enumerate() {
        let p = pos as f64 + t as f64;
        for head in row.chunks_mut(head_dim) {
            for (i, &f) in inv_freq.iter().enumerate() {
                let (sin, cos) = (p * f as f64).sin_cos();
                let (a, b) = (head[i] as f64, head[i + half] as f64);
                head[i] = (a * cos - b * sin) as f32;
                head[i + half] = (b * cos + a * sin) as f32;
            }
        }
    }
}
