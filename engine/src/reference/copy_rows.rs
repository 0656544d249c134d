//! CPU reference for kernels::copy_rows.

/// `dst[pos + t, :] = src[t, :]` for rows of `src` (row length `row_len`) that land inside
/// `dst`; rows at or past `dst`'s end are dropped. The caller rounds `src` through f16 when the
/// GPU's `dst` is f16.
pub fn copy_rows(src: &[f32], dst: &mut [f32], row_len: usize, pos: usize) {
    let capacity = dst.len() / row_len;
    for (t, row) in src.chunks(row_len).enumerate() {
        if pos + t < capacity {
            dst[(pos + t) * row_len..][..row_len].copy_from_slice(row);
        }
    }
}
