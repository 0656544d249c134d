//! rms_norm: see shaders/rms_norm.wgsl (not yet written).
