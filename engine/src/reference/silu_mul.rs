//! CPU reference for silu_mul (not yet written).
