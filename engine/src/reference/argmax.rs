//! CPU reference for argmax (not yet written).
