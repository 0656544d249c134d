// Tests for softmax: not yet written.
