//! Arbitrary bytes as a GGUF file: parse, read and dequantize every tensor, build the config and
//! the tokenizer. Errors are expected; a panic, a hang or an out-of-memory is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shaderlm::checkpoint::gguf::exercise(data);
});
