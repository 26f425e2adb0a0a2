#![no_main]
// The target's body is keyfort::fuzzing::config, where the corpus replay test calls it too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyfort::fuzzing::config(data));
