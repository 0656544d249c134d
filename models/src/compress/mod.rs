//! Compression at load time: what to do to each weight (`plan`), the calibration pass that
//! measures activations on real text (`calib`), activation-aware 4-bit scaling (`awq`), pruning
//! (`prune`), the edits that turn a checkpoint's tensors into what goes on the GPU (`edits`), and
//! the table that reports what loading did (`summary`).
//!
//! Data flow: LoadPlan (flags) -> [calibrate a dense copy when the plan needs activations] ->
//! edits (AWQ scales, pruning masks, dropped layers and FFN channels) applied to each tensor as it
//! is read -> quantize / compress -> upload.

pub mod awq;
pub mod calib;
pub mod edits;
pub mod plan;
pub mod prune;
pub mod summary;
