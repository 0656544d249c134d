// Tests for attention_decode: not yet written.
