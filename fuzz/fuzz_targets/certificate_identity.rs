#![no_main]
// The target's body is keyfort::fuzzing::certificate_identity, where the corpus replay test calls it too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyfort::fuzzing::certificate_identity(data));
