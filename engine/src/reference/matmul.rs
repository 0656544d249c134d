//! CPU reference for matmul (not yet written).
