// Tests for rms_norm: not yet written.
