//! matvec: see shaders/matvec.wgsl (not yet written).
