// Tests for argmax: not yet written.
