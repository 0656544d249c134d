//! CPU reference for kernels::rms_norm_matvec: reference::rms_norm, then reference::matvec.

/// `w . rms_norm(x, g, eps)` for `w` of `rows` rows of `x.len()`.
pub fn rms_norm_matvec(x: &[f32], g: &[f32], w: &[f32], rows: usize, eps: f32) -> Vec<f32> {
    let normed = super::rms_norm::rms_norm(x, g, eps);
    let mut y = vec![0.0; rows];
    super::matvec::matvec(w, &normed, &mut y);
    y
}
