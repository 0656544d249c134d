//! CPU reference for kernels::swiglu: reference::silu_mul on the two halves of each row.

/// `silu(gate) * up` for each row `[gate (n) | up (n)]` of `gu`.
pub fn swiglu(gu: &[f32], n: usize) -> Vec<f32> {
    gu.chunks(2 * n).flat_map(|row| super::silu_mul::silu_mul(&row[..n], &row[n..])).collect()
}
