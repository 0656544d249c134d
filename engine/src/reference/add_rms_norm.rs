//! CPU reference for kernels::add_rms_norm: the unfused pair, reference::add then
//! reference::rms_norm.

/// `x += y`, then returns `rms_norm(x, weight, eps)` row by row (rows of `weight.len()`).
pub fn add_rms_norm(x: &mut [f32], y: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    super::add::add(x, y);
    super::rms_norm::rms_norm(x, weight, eps)
}
