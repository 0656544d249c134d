//! CPU reference for softmax (not yet written).
