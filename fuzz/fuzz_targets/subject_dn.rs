#![no_main]
// The target's body is keyfort::fuzzing::subject_dn, where the corpus replay test calls it too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyfort::fuzzing::subject_dn(data));
