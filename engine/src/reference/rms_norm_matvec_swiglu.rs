//! CPU reference for kernels::rms_norm_matvec_swiglu: reference::rms_norm, reference::matvec over
//! the stacked weight, then reference::swiglu.

/// `silu(a) * b` with `[a | b] = w . rms_norm(x, g, eps)`, `w` the `[2n, x.len()]` stacked weight.
pub fn rms_norm_matvec_swiglu(x: &[f32], g: &[f32], w: &[f32], n: usize, eps: f32) -> Vec<f32> {
    let gu = super::rms_norm_matvec::rms_norm_matvec(x, g, w, 2 * n, eps);
    super::swiglu::swiglu(&gu, n)
}
