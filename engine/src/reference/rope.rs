//! CPU reference for rope (not yet written).
