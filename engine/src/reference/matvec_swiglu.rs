//! CPU reference for kernels::matvec_swiglu: reference::matvec over the stacked weight, then
//! reference::swiglu.

/// `silu(W[i] . x) * (W[n + i] . x)` for `i < n`, with `w` the `[2n, x.len()]` stacked weight.
pub fn matvec_swiglu(w: &[f32], x: &[f32], n: usize) -> Vec<f32> {
    let mut gu = vec![0.0; 2 * n];
    super::matvec::matvec(w, x, &mut gu);
    super::swiglu::swiglu(&gu, n)
}
