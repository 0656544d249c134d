//! CPU reference for rms_norm (not yet written).
